"""The append log: derived tables learn exactly which rows an incremental ingest added, and get None
(rebuild) after any other change."""

import json

import duckdb
import pytest

from customer_assets.common.data_version import appended_since, data_fingerprint
from customer_assets.common.db import table_exists
from customer_assets.ingestion.pipeline import ingest
from retail_csv import HEADER, MAPPING

WEEK1 = ["1001,A1,Mug,2,2011-01-03 10:00:00,1.50,100,UK", "1001,A2,Cup,1,2011-01-03 10:00:00,2.00,100,UK",
         "1002,A1,Mug,1,2011-01-04 10:00:00,1.50,,UK"]
WEEK2 = ["1003,A1,Mug,3,2011-01-10 10:00:00,1.50,101,UK", "C1004,A1,Mug,-1,2011-01-11 10:00:00,1.50,100,UK"]
WEEK3 = ["1005,A3,Jug,1,2011-01-17 10:00:00,5.00,102,France"]


def _setup(tmp_path):
    folder = tmp_path / "files"
    folder.mkdir()
    m = tmp_path / "mapping.json"
    m.write_text(json.dumps(MAPPING))
    con = duckdb.connect(str(tmp_path / "w.duckdb"))

    def load(name, rows):
        (folder / name).write_text("\n".join([HEADER] + rows) + "\n")
        ingest(con, str(folder), str(m), None)
        return data_fingerprint(con)

    return con, load, m


def _rows(con, table, appended):
    return sorted(con.execute(f"SELECT source_file, source_row FROM {table} WHERE {appended.where(table)}").fetchall())


def test_appends_are_found_row_for_row_and_chain(tmp_path):
    con, load, _ = _setup(tmp_path)
    fp1 = load("w1.csv", WEEK1)
    assert appended_since(con, fp1).empty  # nothing changed

    fp2 = load("w2.csv", WEEK2)
    a = appended_since(con, fp1)
    w2 = str(tmp_path / "files" / "w2.csv")
    assert _rows(con, "cleaned_transactions", a) == [(w2, 1)]
    assert _rows(con, "quarantined_transactions", a) == [(w2, 2)]  # the cancellation

    load("w3.csv", WEEK3)
    # two appends in a row: one range from the first state
    both = appended_since(con, fp1)
    w3 = str(tmp_path / "files" / "w3.csv")
    assert _rows(con, "cleaned_transactions", both) == [(w2, 1), (w3, 1)]
    assert _rows(con, "cleaned_transactions", appended_since(con, fp2)) == [(w3, 1)]
    # a state the log never saw: rebuild
    assert appended_since(con, "not a fingerprint") is None


def test_any_other_change_means_rebuild(tmp_path):
    con, load, _ = _setup(tmp_path)
    fp1 = load("w1.csv", WEEK1)
    load("w2.csv", WEEK2)
    con.execute("UPDATE cleaned_transactions SET quantity = quantity + 1 WHERE source_row = 1")
    assert appended_since(con, fp1) is None

    # a mapping change rebuilds both tables and clears the log
    (tmp_path / "x").mkdir()
    con2, load2, m2 = _setup(tmp_path / "x")
    fp = load2("w1.csv", WEEK1)
    load2("w2.csv", WEEK2)
    assert appended_since(con2, fp) is not None
    m2.write_text(json.dumps({**MAPPING, "non_product_codes": ["POST"]}))
    ingest(con2, str(tmp_path / "x" / "files"), str(m2), None)
    assert appended_since(con2, fp) is None


def test_the_fingerprint_logged_is_the_one_the_next_connection_sees(tmp_path):
    """Online Retail in two files, each ingest and each lookup on its own connection, as the steps
    of a run: the fingerprint logged after the append must be the one the next connection computes
    (an uncheckpointed append, or a checkpoint that changes the layout again - seen at N=20, where
    the second checkpoint merged the appended row groups - would miss the log: every refresh would
    rebuild)."""
    from customer_assets_tests.conftest import RETAIL_MAPPING, RETAIL_PARQUET

    landing = tmp_path / "landing"
    landing.mkdir()
    src = duckdb.connect()
    for name, cond in (("a.parquet", "<"), ("b.parquet", ">=")):
        src.execute(f"COPY (SELECT * FROM '{RETAIL_PARQUET}' WHERE InvoiceDate {cond} '2011-05-01') "
                    f"TO '{tmp_path / name}' (FORMAT parquet)")
    db = str(tmp_path / "w.duckdb")

    def run(fn):
        con = duckdb.connect(db)
        try:
            return fn(con)
        finally:
            con.close()

    (tmp_path / "a.parquet").rename(landing / "a.parquet")
    run(lambda c: ingest(c, None, str(RETAIL_MAPPING), str(landing)))
    fp1 = run(data_fingerprint)
    (tmp_path / "b.parquet").rename(landing / "b.parquet")
    run(lambda c: ingest(c, None, str(RETAIL_MAPPING), str(landing)))
    appended = run(lambda c: appended_since(c, fp1))
    assert appended is not None
    b_rows = run(lambda c: c.execute(
        "SELECT count(*) FROM cleaned_transactions WHERE source_file LIKE '%b.parquet'").fetchone()[0])
    assert b_rows > 200_000 and appended.cleaned[1] - appended.cleaned[0] == b_rows


def test_during_a_run_the_fingerprint_is_kept_until_ingestion_writes(tmp_path):
    from customer_assets.common.data_version import forget_fingerprints, kept_for_run

    con, load, m = _setup(tmp_path)
    with kept_for_run():
        fp1 = load("w1.csv", WEEK1)  # a rebuild: ingestion forgets what was kept
        assert data_fingerprint(con) == fp1
        # a write that is not ingestion's is not seen while the run lasts (only ingestion writes
        # the transactions during a run) ...
        con.execute("UPDATE cleaned_transactions SET quantity = quantity + 1")
        assert data_fingerprint(con) == fp1
        forget_fingerprints()
        changed = data_fingerprint(con)
        assert changed != fp1
        # ... and an incremental ingest is seen at once
        fp2 = load("w2.csv", WEEK2)
        assert fp2 != changed
        assert data_fingerprint(con) == fp2
    # outside a run every call looks at the tables
    con.execute("UPDATE cleaned_transactions SET quantity = quantity + 1")
    assert data_fingerprint(con) != fp2


@pytest.mark.slow
def test_after_a_rebuild_the_fingerprint_seen_in_the_run_is_the_one_the_next_run_sees(tmp_path):
    """A full build records the fingerprint its steps see (kept for the run) in the star and the
    feature base. If a later checkpoint (another step's, or the close) still changes the layout,
    the next run sees other data and rebuilds everything instead of adding the week. Online Retail
    twice (1.08M lines: written by several threads, whose partly filled row groups a checkpoint
    merges; at N=1 it does not happen) - this failed until ingestion settled the layout after a
    rebuild as it does after an append."""
    from bench.generate import replicate
    from customer_assets.common.data_version import _compute_fingerprint, kept_for_run
    from customer_assets_tests.conftest import RETAIL_MAPPING

    landing = tmp_path / "landing"
    landing.mkdir()
    replicate(2, landing)
    db = str(tmp_path / "w.duckdb")
    con = duckdb.connect(db)
    with kept_for_run():
        ingest(con, None, str(RETAIL_MAPPING), str(landing))
        seen = data_fingerprint(con)  # what the run's steps record
        con.execute("CREATE TABLE written_by_another_step AS SELECT range AS x FROM range(10)")
        con.execute("CHECKPOINT")
    con.close()
    con = duckdb.connect(db)
    assert _compute_fingerprint(con) == seen


def _week(k: int) -> list:
    """Two lines (one kept, one quarantined) of a week of its own."""
    day = f"2011-02-{k + 1:02d} 10:00:00"
    return [f"2{k:03d},A1,Mug,1,{day},1.50,{100 + k},UK", f"3{k:03d},A2,Cup,1,{day},2.00,,UK"]


def _warehouse(tmp_path):
    """`run(fn)`: fn on a new connection that defers vacuum as the warehouse resource's do, closed
    after (the database closes with it, and checkpoints: as at the end of a run); `load(name, rows)`:
    ingest one more file so and return the fingerprint logged."""
    from customer_assets.common.db import defer_vacuum

    folder = tmp_path / "files"
    folder.mkdir()
    m = tmp_path / "mapping.json"
    m.write_text(json.dumps(MAPPING))
    db = str(tmp_path / "w.duckdb")

    def run(fn):
        con = duckdb.connect(db)
        try:
            defer_vacuum(con)
            return fn(con)
        finally:
            con.close()

    def load(name, rows):
        (folder / name).write_text("\n".join([HEADER] + rows) + "\n")
        run(lambda c: ingest(c, str(folder), str(m), None))
        return run(lambda c: c.execute(
            "SELECT after FROM ingestion_log.appends ORDER BY appended_at DESC LIMIT 1").fetchone()[0]
            if table_exists(c, "appends", schema="ingestion_log") else data_fingerprint(c))

    return db, run, load


def _a_step_writes(con, k: int) -> str:
    """What a later step does to the database: write a table of its own and checkpoint; then the
    fingerprint it sees."""
    con.execute(f"CREATE OR REPLACE TABLE written_by_a_step AS SELECT {k} AS k")
    con.execute("CHECKPOINT")
    return data_fingerprint(con)


def test_with_vacuum_deferred_an_append_keeps_its_row_groups_until_ingestion_compacts(tmp_path):
    """The warehouse's connections defer DuckDB's row-group merging (common.db.defer_vacuum): each
    append adds row groups of its own, the fingerprint logged stays the one the next step (another
    connection that writes and checkpoints) sees, and once the surplus reaches COMPACT_AFTER the
    append's settle checkpoint merges them; the chain of appends stays intact throughout."""
    from customer_assets.common.data_version import COMPACT_AFTER, surplus_row_groups

    db, run, load = _warehouse(tmp_path)
    first = load("w00.csv", WEEK1)  # a rebuild: compacted
    assert run(surplus_row_groups) == 0
    surplus = []
    for k in range(1, COMPACT_AFTER + 1):
        fp = load(f"w{k:02d}.csv", _week(k))
        surplus.append(run(surplus_row_groups))
        assert run(lambda c: _a_step_writes(c, k)) == fp
    # one more row group per append (each table gets a row per week), merged on the append that
    # brings the surplus to COMPACT_AFTER
    assert surplus == list(range(1, COMPACT_AFTER)) + [0]
    appended = run(lambda c: appended_since(c, first))
    assert appended is not None
    for table in ("cleaned_transactions", "quarantined_transactions"):
        assert len(run(lambda c: _rows(c, table, appended))) == COMPACT_AFTER
    assert run(lambda c: c.execute("SELECT current_setting('max_vacuum_tasks')").fetchone()[0]) == 0


def test_a_write_that_merges_row_groups_outside_the_warehouse_connections_means_rebuild(tmp_path):
    """A connection that does not defer vacuum (not the pipeline's) merges the appends' row groups
    on its next checkpoint: the layout is not the logged one, so the consumers rebuild. Correct,
    only slower; documented in common.db.defer_vacuum."""
    from customer_assets.common.data_version import surplus_row_groups

    db, run, load = _warehouse(tmp_path)
    first = load("w00.csv", WEEK1)
    load("w01.csv", _week(1))
    load("w02.csv", _week(2))
    assert run(surplus_row_groups) == 2
    other = duckdb.connect(db)  # DuckDB's default: merging
    other.execute("CREATE TABLE mine AS SELECT 1 AS x")
    other.execute("CHECKPOINT")
    assert surplus_row_groups(other) == 0
    assert appended_since(other, first) is None


def test_memoized_computes_once_per_data_version_while_a_run_executes(tmp_path):
    """data_version.memoized (the bundle steps' order count and product names): once per data
    version in a run, again after ingestion appends, every time outside a run."""
    from customer_assets.common.data_version import kept_for_run, memoized

    con, load, _ = _setup(tmp_path)
    load("w1.csv", WEEK1)
    calls = []

    def cleaned_rows():
        calls.append(1)
        return con.execute("SELECT count(*) FROM cleaned_transactions").fetchone()[0]

    assert memoized(con, "n", cleaned_rows) == memoized(con, "n", cleaned_rows) == 2
    assert len(calls) == 2  # outside a run: every time
    calls.clear()
    with kept_for_run():
        assert memoized(con, "n", cleaned_rows) == memoized(con, "n", cleaned_rows) == 2
        assert len(calls) == 1
        assert memoized(con, "other key", cleaned_rows) == 2 and len(calls) == 2
        load("w2.csv", WEEK2)  # ingestion appends one more kept line: a new data version
        assert memoized(con, "n", cleaned_rows) == 3 and len(calls) == 3
    with kept_for_run():  # a new run starts from nothing
        assert memoized(con, "n", cleaned_rows) == 3 and len(calls) == 4
