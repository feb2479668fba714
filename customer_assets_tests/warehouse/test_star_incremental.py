"""The star tables after an incremental append equal STAR_SQL over every line (what a rebuild gives).

Online Retail is split into two files at 2011-11-01: the first is ingested and the tables built, then
the second lands (an incremental append) and the tables are updated from its lines only. The second
file also carries edge cases: a customer whose main country changes, a product whose most frequent
description changes, and new lines for an order that already existed (its counts must not double).
"""

import duckdb
import pandas as pd
import pytest

from customer_assets.ingestion.pipeline import ingest
from customer_assets.warehouse import star
from customer_assets_tests.conftest import RETAIL_MAPPING, RETAIL_PARQUET

TABLES = [n for n in star.STAR_SQL if n not in star.VIEWS]


def _reference(con, name):
    return con.execute(f"SELECT * FROM ({star.STAR_SQL[name]}) ORDER BY ALL").fetchall()


def _table(con, name):
    return con.execute(f"SELECT * FROM {name} ORDER BY ALL").fetchall()


def _split(tmp_path):
    df = pd.read_parquet(RETAIL_PARQUET)
    when = pd.to_datetime(df["InvoiceDate"])
    old, new = df[when < "2011-11-01"].copy(), df[when >= "2011-11-01"].copy()
    old_known = old.dropna(subset=["CustomerID"])
    old_known = old_known[(old_known["Quantity"] > 0) & (old_known["UnitPrice"] > 0)
                          & ~old_known["InvoiceNo"].astype(str).str.startswith("C")]
    # a customer with one order, from one country, orders twice from another country in the new file
    one = old_known.groupby("CustomerID")["InvoiceNo"].nunique()
    movers = [c for c in one[one == 1].index if c not in set(new["CustomerID"].dropna())]
    mover = old_known[old_known["CustomerID"] == movers[0]].iloc[0]
    other = "Norway" if mover["Country"] != "Norway" else "Iceland"
    extra = [dict(mover, InvoiceNo=f"99990{i}", Country=other, InvoiceDate="2011-11-15 10:00:00") for i in range(2)]
    # a product gets a new most frequent description
    counts = old_known["StockCode"].value_counts()
    code = [c for c in counts.index if c not in set(new["StockCode"])][0]
    n = int((old_known["StockCode"] == code).sum())
    base = old_known[old_known["StockCode"] == code].iloc[0]
    extra += [dict(base, InvoiceNo=f"99991{i}", Description="A NEW NAME", InvoiceDate="2011-11-16 10:00:00")
              for i in range(n + 1)]
    # an order of the first file gets new lines: a product it had (same order: no new order for the
    # product) and one it did not have
    order = old_known[old_known["InvoiceNo"] == old_known["InvoiceNo"].iloc[-1]]
    extra.append(dict(order.iloc[0], Quantity=5, InvoiceDate="2011-11-17 10:00:00"))
    extra.append(dict(order.iloc[0], StockCode=code, Description="A NEW NAME", InvoiceDate="2011-11-17 10:00:00"))
    new = pd.concat([new, pd.DataFrame(extra)[df.columns]], ignore_index=True)
    for part, frame in (("a", old), ("b", new)):
        frame.to_parquet(tmp_path / f"retail_{part}.parquet", index=False)
    return tmp_path / "retail_a.parquet", tmp_path / "retail_b.parquet", movers[0], code, order["InvoiceNo"].iloc[0]


@pytest.fixture(scope="module")
def two_loads(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("star_incremental")
    first, second, mover, code, order = _split(tmp)
    landing = tmp / "landing"
    landing.mkdir()
    con = duckdb.connect(str(tmp / "w.duckdb"))
    ingest(con, str(first), str(RETAIL_MAPPING), str(landing))
    first_how = {name: star.build_table(con, name) for name in TABLES}
    before = {name: _table(con, name) for name in TABLES}
    assert before == {name: _reference(con, name) for name in TABLES}  # the full build from the intermediates
    second.rename(landing / second.name)
    ingest(con, str(first), str(RETAIL_MAPPING), str(landing))
    how = {name: star.build_table(con, name) for name in TABLES}
    yield con, first_how, before, how, mover, code, order
    con.close()


def test_first_build_rebuilds_and_is_not_empty(two_loads):
    con, first_how, before, *_ = two_loads
    assert first_how["dim_customer"] == "rebuilt" and first_how["sales_trends"] == "rebuilt"
    assert all(before[name] for name in TABLES)  # (equal to STAR_SQL: asserted in the fixture)


@pytest.mark.parametrize("name", TABLES)
def test_incremental_update_equals_a_rebuild(two_loads, name):
    con, _, before, how, *_ = two_loads
    if name != "dim_date":
        assert how[name] in ("appended", "same")  # the incremental path ran (the first table did the work)
    assert _table(con, name) == _reference(con, name)
    assert _table(con, name) != before[name]


def test_the_intermediates_took_the_append_path_once(two_loads):
    con, _, _, how, *_ = two_loads
    assert how["dim_customer"] == "appended" and how["dim_product"] == "same"
    assert how["sales_trends"] == "appended"


def test_edge_cases_are_in_the_data(two_loads):
    con, _, _, _, mover, code, order = two_loads
    country = con.execute("SELECT country FROM dim_customer WHERE customer_id = ?", [str(int(mover))]).fetchone()[0]
    assert country in ("Norway", "Iceland")
    assert con.execute("SELECT product_name FROM dim_product WHERE product_id = ?", [code]).fetchone()[0] == "A NEW NAME"
    # the old order with new lines is still one order for its customer
    assert con.execute("SELECT count(*) FROM star_state.customer_orders WHERE order_id = ?", [order]).fetchone()[0] == 1


def test_sales_trends_keeps_its_order(two_loads):
    con = two_loads[0]
    rows = con.execute("SELECT grain, period_start FROM sales_trends").fetchall()
    assert rows == sorted(rows)


def test_an_update_means_a_rebuild_not_a_wrong_increment(tmp_path, retail_db):
    import shutil

    from customer_assets.common.db import replace_table

    shutil.copy(retail_db, tmp_path / "w.duckdb")
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    for name in TABLES:
        star.build_table(con, name)
    con.execute("UPDATE cleaned_transactions SET quantity = quantity + 1, line_total = line_total + unit_price "
                "WHERE order_id = (SELECT min(order_id) FROM cleaned_transactions)")
    how = {name: star.build_table(con, name) for name in TABLES}
    assert how["dim_customer"] == "rebuilt" and how["dim_product"] == "same" and how["sales_trends"] == "rebuilt"
    for name in TABLES:
        assert _table(con, name) == _reference(con, name)
    # a table replaced behind the state's back (e.g. by a test or by hand): rebuilt too
    replace_table(con, "cleaned_transactions", "SELECT * FROM cleaned_transactions WHERE country = 'France'")
    assert star.build_table(con, "revenue_by_region") == "rebuilt"
    assert _table(con, "revenue_by_region") == _reference(con, "revenue_by_region")
    assert star.build_table(con, "revenue_by_region") == "same"
    con.close()
