"""After a weekly append, the reconciliation checks only the appended rows against the new files and
gives the same verdict and totals as checking every row."""

import json

import duckdb

from customer_assets.ingestion import pipeline
from customer_assets.ingestion.pipeline import ingest, reconciliation
from retail_csv import HEADER, MAPPING

WEEK1 = ["1001,A1,Mug,2,2011-01-03 10:00:00,1.50,100,UK", "1001,A2,Cup,1,2011-01-03 10:00:00,2.00,100,UK",
         "1002,A1,Mug,1,2011-01-04 10:00:00,1.50,,UK", "1001,A1,Mug,2,2011-01-03 10:00:00,1.50,100,UK"]
WEEK2 = ["1003,A1,Mug,3,2011-01-10 10:00:00,1.50,101,UK", "C1004,A1,Mug,-1,2011-01-11 10:00:00,1.50,100,UK",
         "1001,A1,Mug,2,2011-01-03 10:00:00,1.50,100,UK", "1005,A9,Vase,1,2011-01-12 10:00:00,0.333333,102,UK"]


def _two_loads(tmp_path):
    folder = tmp_path / "files"
    folder.mkdir()
    m = tmp_path / "mapping.json"
    m.write_text(json.dumps(MAPPING))
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    (folder / "w1.csv").write_text("\n".join([HEADER] + WEEK1) + "\n")
    ingest(con, str(folder), str(m), None)
    first = reconciliation(con)
    (folder / "w2.csv").write_text("\n".join([HEADER] + WEEK2) + "\n")
    ingest(con, str(folder), str(m), None)
    return con, first


def test_incremental_check_equals_the_full_one(tmp_path):
    con, first = _two_loads(tmp_path)
    assert first["passed"] and first["rows_checked"] == "every row"
    inc = reconciliation(con)
    assert inc["passed"], inc
    assert inc["rows_checked"].startswith("the 4 rows appended from 1 new file")
    # the same totals as reading every row again
    con.execute("DELETE FROM ingestion_state WHERE key = 'reconciled'")  # no passed check to build on
    full = reconciliation(con)
    assert full["rows_checked"] == "every row"
    drop = ("rows_checked", "_exact")
    assert {k: v for k, v in inc.items() if k not in drop} == {k: v for k, v in full.items() if k not in drop}
    assert inc["raw_rows"] == 8 and inc["money_difference"] == 0


def test_incremental_check_can_fail(tmp_path):
    con, _ = _two_loads(tmp_path)
    state = json.loads(con.execute("SELECT value FROM ingestion_state WHERE key = 'reconciled'").fetchone()[0])
    # recorded money one penny off: the totals no longer add up
    bad = {**state, "raw_money": str(float(state["raw_money"]) + 0.01)}
    res = pipeline._reconcile_appended(con, bad, pipeline.data_version.appended_since(con, state["fingerprint"]))
    assert not res["passed"] and res["money_difference"] != 0
    # a first-week row among the appended ones would be a row of a file not loaded since: doubled
    forgot = {**state, "sha256s": []}
    res = pipeline._reconcile_appended(con, forgot, pipeline.data_version.appended_since(con, state["fingerprint"]))
    assert not res["passed"] and res["raw_rows_without_outcome"] == 4


def test_any_other_change_gets_the_full_check(tmp_path):
    con, _ = _two_loads(tmp_path)
    con.execute("DELETE FROM quarantined_transactions WHERE rowid = (SELECT max(rowid) FROM quarantined_transactions)")
    res = reconciliation(con)
    assert res["rows_checked"] == "every row" and not res["passed"] and res["raw_rows_without_outcome"] == 1


def test_quality_checks_only_the_appended_rows_and_still_finds_a_violation(tmp_path):
    from customer_assets.ingestion.quality import run_quality

    con, _ = _two_loads(tmp_path)  # the first load's quality was never checked: everything is
    full = run_quality(con)
    assert full["passed"] and full["scope"] == "every row" and full["rows_checked"] == full["rows"]
    folder = tmp_path / "files"
    (folder / "w3.csv").write_text("\n".join([HEADER, "10 06,A1,Mug,1,2011-01-13 10:00:00,1.50,103,UK",
                                              "1007,A2,Cup,1,2011-01-13 11:00:00,2.00,103,UK"]) + "\n")
    ingest(con, str(folder), str(tmp_path / "mapping.json"), None)
    inc = run_quality(con)
    assert inc["rows_checked"] == 2 and inc["scope"].startswith("the 2 rows appended")
    assert not inc["passed"]  # "10 06" is not a well-formed order id
    bad = inc["table"].set_index("expectation").loc["order_id well formed"]
    assert bad["full_table_violations"] == 1


def test_ingestion_writes_and_settles_strings_without_fsst_and_resets_the_setting(tmp_path):
    """FSST is a speed setting of ingestion alone (common.db.fsst_disabled): the weekly append's
    rows are written and checkpointed without it, and the database-wide setting is reset after."""
    from conftest import RETAIL_MAPPING, RETAIL_PARQUET

    folder = tmp_path / "files"
    folder.mkdir()
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    # two real slices of Online Retail: 60,000 lines, then the next 30,000 as a new file
    for name, offset, n in (("a.parquet", 0, 60_000), ("b.parquet", 60_000, 30_000)):
        con.execute(f"COPY (SELECT * FROM read_parquet('{RETAIL_PARQUET}') LIMIT {n} OFFSET {offset}) "
                    f"TO '{folder / name}' (FORMAT parquet)")
        ingest(con, str(folder / name) if name == "a.parquet" else str(folder), str(RETAIL_MAPPING), None)
    assert con.execute("SELECT count(*) FROM ingested_files").fetchone()[0] == 2
    assert con.execute("SELECT current_setting('disabled_compression_methods')").fetchone()[0] in ("", None)
    methods = {r[0] for r in con.execute(
        "SELECT compression FROM pragma_storage_info('cleaned_transactions') UNION "
        "SELECT compression FROM pragma_storage_info('quarantined_transactions')").fetchall()}
    assert "FSST" not in methods
    # with the setting reset, the next write may use FSST again (the same JSON raw rows compress so)
    con.execute("CREATE TABLE again AS SELECT * FROM quarantined_transactions")
    con.execute("CHECKPOINT")
    assert "FSST" in {r[0] for r in con.execute("SELECT compression FROM pragma_storage_info('again')").fetchall()}
