"""The compact-table feature path equals the line-scanning definition, and never serves stale data."""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd
import pytest

from customer_assets.customers import features as f
from customer_assets.ingestion.schema import write_cleaned

from test_customers_features import AFTER, BEFORE, CANCELS_AFTER, CANCELS_BEFORE, line, write_quarantine

RETAIL_SNAPSHOTS = ["2010-12-01", "2011-01-31", "2011-06-30", "2011-09-10", "2011-12-09"]


def assert_same(fast: pd.DataFrame, ref: pd.DataFrame):
    assert list(fast.columns) == list(ref.columns)
    assert fast["customer_id"].tolist() == ref["customer_id"].tolist()
    assert (fast["snapshot_date"] == ref["snapshot_date"]).all()
    for col in fast.columns[2:]:
        np.testing.assert_allclose(fast[col].to_numpy(), ref[col].to_numpy(), rtol=1e-9, atol=1e-9, err_msg=col)


@pytest.fixture(scope="module")
def retail_copy(retail_db, tmp_path_factory):
    """A writable copy of the session Online Retail warehouse (the fast path persists its base tables)."""
    path = tmp_path_factory.mktemp("retail_fast") / "w.duckdb"
    c = duckdb.connect(str(path))
    c.execute(f"ATTACH '{retail_db}' AS r (READ_ONLY)")
    for t in ("cleaned_transactions", "quarantined_transactions"):
        c.execute(f"CREATE TABLE {t} AS SELECT * FROM r.{t}")
    c.execute("DETACH r")
    yield c
    c.close()


@pytest.mark.parametrize("snap", RETAIL_SNAPSHOTS)
def test_online_retail_fast_equals_definition(retail_copy, snap):
    fast = retail_copy.execute(f.features_query(retail_copy, snap)).df()
    ref = retail_copy.execute(f.reference_features_query(retail_copy, snap)).df()
    assert "price_index" in fast.columns and len(fast) > 0
    assert_same(fast, ref)


def test_read_only_connection_uses_temp_tables(retail_db):
    c = duckdb.connect(str(retail_db), read_only=True)
    base = f.ensure_feature_base(c)
    assert base.prefix.startswith("temp.")
    assert_same(c.execute(f.fast_features_sql(base, "2011-06-30")).df(),
                c.execute(f.reference_features_query(c, "2011-06-30")).df())
    c.close()


def test_hand_made_edge_cases_with_optional_fields(con):
    """Orders spanning two days, repeated products, NULL product, discounts, stores, even price counts."""
    rows = BEFORE + AFTER + [
        line("D", "D1", "2021-05-01 23:50", "P1", 1, 4.0, discount=0.5, store_id="S1"),
        line("D", "D1", "2021-05-02 00:10", "P2", 3, 6.0, store_id="S2"),
        line("D", "D2", "2021-05-02 10:00", None, 1, 7.0, store_id="S1"),
        line("D", "D3", "2021-06-10 10:00", "P1", 2, 12.0, discount=1.0, store_id="S1"),
        line("D", "D4", "2021-06-10 11:00", "P1", 1, 11.0, store_id="S1"),
        line("E", "E1", "2021-06-29 10:00", "P4", 1, 3.0),
        line("E", "E2", "2021-07-29 10:00", "P4", 1, 3.0),
    ]
    write_cleaned(con, rows)
    write_quarantine(con, CANCELS_BEFORE + CANCELS_AFTER + [("D", "2021-05-02 09:00")])
    assert set(f.available_optional_features(con)) == set(f.OPTIONAL_FEATURES)
    for snap in ["2021-01-01", "2021-05-01", "2021-05-02", "2021-06-10", "2021-06-30", "2021-08-01"]:
        fast = con.execute(f.features_query(con, snap)).df()
        ref = con.execute(f.reference_features_query(con, snap)).df()
        assert_same(fast, ref)


def test_fast_path_without_quarantine_or_prices(con):
    write_cleaned(con, [{k: v for k, v in r.items() if k not in ("product_id", "unit_price")} for r in BEFORE])
    fast = con.execute(f.features_query(con, "2021-06-30")).df()
    assert_same(fast, con.execute(f.reference_features_query(con, "2021-06-30")).df())
    assert "price_index" not in fast.columns and (fast["return_rate"] == 0).all()


def test_base_tables_rebuilt_after_each_kind_of_change(tmp_path):
    """Insert, update, delete, rebuild, quarantine change: each gives a new build (never stale), with
    and without a checkpoint in between; an unchanged warehouse reuses the build."""
    path = str(tmp_path / "w.duckdb")
    con = duckdb.connect(path)
    write_cleaned(con, BEFORE)
    write_quarantine(con, CANCELS_BEFORE)
    snap = dt.date(2021, 6, 30)

    def check():
        base = f.ensure_feature_base(con)
        assert_same(f.compute_customer_features(con, snap),
                    con.execute(f.reference_features_query(con, snap)).df())
        return base.build_id

    def changes(i):  # each one really changes the data, in both rounds
        return [
            f"INSERT INTO cleaned_transactions SELECT * REPLACE ('Z{i}' AS customer_id) FROM cleaned_transactions LIMIT 1",
            "UPDATE cleaned_transactions SET line_total = line_total + 1 WHERE order_id = 'A2'",
            f"UPDATE cleaned_transactions SET product_id = 'P9{i}' WHERE order_id = 'A2'",
            "DELETE FROM cleaned_transactions WHERE rowid = (SELECT min(rowid) FROM cleaned_transactions "
            "WHERE customer_id = 'A' AND order_id <> 'A2')",
            f"UPDATE quarantined_transactions SET customer_id = '{'AB'[i]}'",
            f"CREATE OR REPLACE TABLE cleaned_transactions AS SELECT * FROM cleaned_transactions "
            f"WHERE customer_id <> 'Z{i}'",
        ]

    seen = {check()}
    for i, checkpoint in enumerate((False, True)):
        for sql in changes(i):
            con.execute(sql)
            if checkpoint:
                con.execute("CHECKPOINT")
            build = check()
            assert build not in seen, sql
            seen.add(build)
            assert check() == build  # unchanged data: same build, cache hit
    con.close()
    # a new process (connection) sees the stored build and reuses it
    con = duckdb.connect(path)
    assert f.ensure_feature_base(con).build_id == build
    con.close()


def test_fingerprint_changes_on_checkpointed_rewrite_of_a_big_table(tmp_path):
    """Large enough to be stored in several row groups; one value changes, then a checkpoint."""
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("""CREATE TABLE cleaned_transactions AS
                   SELECT 'c' || (i % 5000) AS customer_id, 'o' || (i // 7) AS order_id,
                          TIMESTAMP '2011-01-01' + INTERVAL (i % 300) DAY AS order_datetime,
                          DATE '2011-01-01' + CAST(i % 300 AS INTEGER) AS order_date,
                          'p' || (i % 900) AS product_id, 1.0 AS quantity, 2.0 AS unit_price, 2.0 AS line_total
                   FROM range(400000) r(i)""")
    con.execute("CHECKPOINT")
    before = f.data_fingerprint(con)
    assert f.data_fingerprint(con) == before
    con.execute("UPDATE cleaned_transactions SET unit_price = 3.0 WHERE order_id = 'o1234'")
    con.execute("CHECKPOINT")
    assert f.data_fingerprint(con) != before
    con.close()


def test_build_inside_a_callers_transaction(con):
    write_cleaned(con, BEFORE)
    con.execute("BEGIN TRANSACTION")
    fast = con.execute(f.features_query(con, "2021-06-30")).df()
    con.execute("COMMIT")
    assert_same(fast, con.execute(f.reference_features_query(con, "2021-06-30")).df())
