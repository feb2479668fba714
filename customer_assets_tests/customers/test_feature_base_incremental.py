"""After an incremental ingest, the feature base is updated from the appended rows only, and gives
exactly the features of a rebuild and of the line-scanning definition."""

import json
import shutil
from pathlib import Path

import duckdb
import pytest

from customer_assets.customers import features as f
from customer_assets.ingestion.pipeline import ingest

from test_features_fast_path import assert_same

HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country,Store,Discount"
MAPPING = {
    "customer_id": "CustomerID", "order_id": "InvoiceNo", "order_datetime": "InvoiceDate",
    "product_id": "StockCode", "product_name": "Description", "quantity": "Quantity",
    "unit_price": "UnitPrice", "country": "Country", "store_id": "Store", "discount": "Discount",
    "cancellation_prefix": "C",
}
WEEK1 = [
    "1001,P1,Mug,2,2011-01-03 10:00:00,1.50,A,UK,S1,0",
    "1001,P2,Cup,1,2011-01-03 10:00:00,2.00,A,UK,S1,0.5",
    "1002,P2,Cup,4,2011-01-05 09:00:00,2.50,A,UK,S2,0",
    "1003,P1,Mug,1,2011-01-04 10:00:00,1.70,B,UK,S1,0",
    "1004,P4,Jug,3,2011-01-06 10:00:00,3.00,B,UK,S1,0",
    "1005,P1,Mug,1,2011-01-06 11:00:00,1.50,,UK,S1,0",  # no customer: quarantined
    "C1006,P1,Mug,-1,2011-01-06 12:00:00,1.50,B,UK,S1,0",  # a cancellation of B
]
WEEK2 = [
    "2001,P1,Mug,1,2011-01-10 10:00:00,1.50,C,FR,S3,0",        # a new customer
    "2002,P3,Tray,2,2011-01-10 10:00:00,4.00,A,UK,S1,0",       # a new product
    "2003,P1,Mug,5,2011-01-11 10:00:00,1.40,B,UK,S2,0.1",      # B buys an old product again
    "2004,P2,Cup,1,2011-01-02 10:00:00,2.20,A,UK,S3,0",        # late data: before A's first P2 (01-03)
    "2005,P4,Jug,1,2011-01-04 15:00:00,3.10,B,UK,S1,0",        # late data: B's first P4 moves 01-06 -> 01-04,
    "2005,P9,Tag,1,2011-01-04 15:00:00,0.90,B,UK,S1,0",        # on a day B already has a line at S1 (no 2nd visit)
    "2006,P1,Mug,1,2011-01-04 16:00:00,1.50,B,UK,S4,0",        # ... and a new store that same day (2nd visit)
    "C2007,P3,Tray,-1,2011-01-12 10:00:00,4.00,A,UK,S1,0",     # a cancellation (return_rate)
    "1002,P5,Bowl,1,2011-01-05 09:30:00,6.00,A,UK,S2,0",       # an old order gets one more line
]
ROOT = Path(__file__).resolve().parents[2]
RETAIL_PARQUET, RETAIL_MAPPING = ROOT / "data" / "online_retail.parquet", ROOT / "data" / "online_retail_mapping.json"
SNAPSHOTS = ["2011-01-02", "2011-01-03", "2011-01-04", "2011-01-05", "2011-01-06", "2011-01-10", "2011-01-12"]


def _load(con, folder, mapping, name, rows):
    (folder / name).write_text("\n".join([HEADER] + rows) + "\n")
    ingest(con, str(folder), str(mapping), None)


def _setup(tmp_path):
    folder = tmp_path / "files"
    folder.mkdir()
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps(MAPPING))
    path = tmp_path / "w.duckdb"
    return duckdb.connect(str(path)), path, folder, mapping


def _meta(con):
    return con.execute("SELECT built_by, appended_rows, build_id FROM feature_base.meta").fetchone()


def _rebuilt_features(path, tmp_path, snapshots):
    """Features from a fresh rebuild of the base on a copy of the warehouse."""
    copy = tmp_path / "rebuilt.duckdb"
    shutil.copy(path, copy)
    c = duckdb.connect(str(copy))
    c.execute("DROP SCHEMA feature_base CASCADE")
    base = f.ensure_feature_base(c)
    assert _meta(c)[0] == "rebuild"
    out = {s: c.execute(f.fast_features_sql(base, s)).df() for s in snapshots}
    c.close()
    return out


def test_incremental_update_equals_rebuild_and_definition(tmp_path):
    con, path, folder, mapping = _setup(tmp_path)
    _load(con, folder, mapping, "w1.csv", WEEK1)
    first = f.ensure_feature_base(con)
    assert set(first.optional) == {"price_index", "discount_line_share", "store_visits"}
    assert _meta(con)[0] == "rebuild"
    keys_before = dict(con.execute("SELECT customer_id, ckey FROM feature_base.customers").fetchall())
    before = {s: f.compute_customer_features(con, s) for s in SNAPSHOTS}

    _load(con, folder, mapping, "w2.csv", WEEK2)
    base = f.ensure_feature_base(con)
    built_by, appended_rows, build_id = _meta(con)
    # the update path ran: new build id (cache invalidated), old keys kept, only the new rows read
    assert (built_by, appended_rows) == ("append", len(WEEK2)) and build_id == base.build_id != first.build_id
    keys_after = dict(con.execute("SELECT customer_id, ckey FROM feature_base.customers").fetchall())
    assert {k: keys_after[k] for k in keys_before} == keys_before and set(keys_after) == {"A", "B", "C"}
    assert f.ensure_feature_base(con).build_id == base.build_id  # unchanged data: reused

    incremental = {s: f.compute_customer_features(con, s) for s in SNAPSHOTS}
    for s in SNAPSHOTS:
        assert_same(incremental[s], con.execute(f.reference_features_query(con, s)).df())
    con.close()
    rebuilt = _rebuilt_features(path, tmp_path, SNAPSHOTS)
    for s in SNAPSHOTS:
        assert_same(incremental[s], rebuilt[s])

    # the cases really are in the data (the features moved as each case says)
    def row(s, c):
        return incremental[s].set_index("customer_id").loc[c]

    assert "C" in incremental["2011-01-10"]["customer_id"].tolist()
    assert row("2011-01-12", "A")["unique_products"] == 4  # P1, P2, P3 (new), P5 (new)
    assert row("2011-01-02", "A")["unique_products"] == 1  # late P2 line: first purchase moved to 01-02
    assert before["2011-01-02"].empty
    assert row("2011-01-04", "B")["unique_products"] == 3 and \
        before["2011-01-04"].set_index("customer_id").loc["B", "unique_products"] == 1  # P4 moved to 01-04, P9 new
    assert row("2011-01-12", "B")["unique_products"] == 3  # P1 bought again: not new
    # B on 01-04: S1 (old and new lines) + S4 = 2 visits; 01-06 S1, 01-11 S2
    assert row("2011-01-12", "B")["store_visits"] == 4
    assert row("2011-01-12", "A")["return_rate"] > 0 == before["2011-01-06"].set_index("customer_id").loc["A", "return_rate"]


def test_new_rows_that_change_the_layout_mean_a_rebuild(tmp_path):
    """A fractional quantity where line_keys holds INTEGER, or a field with its first values (a new
    optional feature), cannot be appended: the base is rebuilt (and still equals the definition)."""
    con, _, folder, mapping = _setup(tmp_path)
    _load(con, folder, mapping, "w1.csv", [r.rsplit(",", 2)[0] + ",,0" for r in WEEK1])  # no store
    assert "store_visits" not in f.ensure_feature_base(con).optional
    assert con.execute("SELECT int_quantity FROM feature_base.meta").fetchone()[0]
    _load(con, folder, mapping, "w2.csv", ["2001,P1,Mug,1.5,2011-01-10 10:00:00,1.50,C,FR,,0"])
    f.ensure_feature_base(con)
    assert _meta(con)[0] == "rebuild"
    assert not con.execute("SELECT int_quantity FROM feature_base.meta").fetchone()[0]
    _load(con, folder, mapping, "w3.csv", ["3001,P1,Mug,1,2011-01-11 10:00:00,1.50,C,FR,S1,0"])
    base = f.ensure_feature_base(con)
    assert _meta(con)[0] == "rebuild" and "store_visits" in base.optional
    # with quantities already fractional (DOUBLE), more whole or fractional ones are appended
    _load(con, folder, mapping, "w4.csv", ["4001,P2,Cup,2.5,2011-01-12 10:00:00,2.00,A,UK,S2,0"])
    f.ensure_feature_base(con)
    assert _meta(con)[0] == "append"
    for s in ("2011-01-05", "2011-01-12"):
        assert_same(f.compute_customer_features(con, s), con.execute(f.reference_features_query(con, s)).df())
    con.close()


def test_other_layout_version_is_rebuilt_not_updated(tmp_path):
    con, _, folder, mapping = _setup(tmp_path)
    _load(con, folder, mapping, "w1.csv", WEEK1)
    f.ensure_feature_base(con)
    con.execute("UPDATE feature_base.meta SET layout = 'older'")
    _load(con, folder, mapping, "w2.csv", WEEK2)
    f.ensure_feature_base(con)
    assert _meta(con)[0] == "rebuild"
    # a base whose meta table has the format before the layout was stored separately: rebuilt too
    con.execute("CREATE OR REPLACE TABLE feature_base.meta AS SELECT 'x:y' AS fingerprint, 'b' AS build_id, "
                "'[]' AS optional, true AS with_returns, now() AS built_at")
    assert f.ensure_feature_base(con).build_id != "b" and _meta(con)[0] == "rebuild"
    con.close()


@pytest.fixture(scope="module")
def retail_two_loads(tmp_path_factory):
    """Online Retail ingested in two loads: everything before 2011-10-01 except a random 2% (late
    data), then the rest; the base is built after the first load and updated after the second."""
    tmp = tmp_path_factory.mktemp("retail_two_loads")
    folder = tmp / "files"
    folder.mkdir()
    c = duckdb.connect(str(tmp / "w.duckdb"))
    date_col = json.loads(RETAIL_MAPPING.read_text())["order_datetime"]
    src = str(RETAIL_PARQUET)
    late = "hash(row_number() OVER ()) % 50 = 0"
    c.execute(f"""COPY (SELECT * EXCLUDE (late) FROM (SELECT *, {late} AS late FROM read_parquet('{src}'))
                  WHERE CAST("{date_col}" AS TIMESTAMP) < TIMESTAMP '2011-10-01' AND NOT late)
                  TO '{folder / "a.parquet"}' (FORMAT parquet)""")
    ingest(c, str(folder), str(RETAIL_MAPPING), None)
    f.ensure_feature_base(c)
    c.execute(f"""COPY (SELECT * EXCLUDE (late) FROM (SELECT *, {late} AS late FROM read_parquet('{src}'))
                  WHERE NOT (CAST("{date_col}" AS TIMESTAMP) < TIMESTAMP '2011-10-01' AND NOT late))
                  TO '{folder / "b.parquet"}' (FORMAT parquet)""")
    ingest(c, str(folder), str(RETAIL_MAPPING), None)
    f.ensure_feature_base(c)
    yield c, tmp
    c.close()


def test_online_retail_second_load_updates_the_base(retail_two_loads):
    c, tmp = retail_two_loads
    built_by, appended_rows, _ = _meta(c)
    assert built_by == "append" and appended_rows > 100_000
    snaps = ["2010-12-05", "2011-06-30", "2011-10-15", "2011-12-09"]
    incremental = {s: c.execute(f.features_query(c, s)).df() for s in snaps}
    for s in snaps:
        assert "price_index" in incremental[s].columns and len(incremental[s]) > 0
        assert_same(incremental[s], c.execute(f.reference_features_query(c, s)).df())
    c.execute("CHECKPOINT")
    rebuilt = _rebuilt_features(tmp / "w.duckdb", tmp, snaps)
    for s in snaps:
        assert_same(incremental[s], rebuilt[s])
