"""Ingestion: source files -> cleaned_transactions + quarantined_transactions.

Every source line lands in exactly one of the two tables; the source rows are not copied a third
time (at 54M lines a full "raw" copy cost as much as the cleaning itself). The record of what was
read is the source files themselves: ingested_files keeps each file's path, sha256, row count and
exact money total, and quarantined_transactions keeps each rejected row exactly as read (JSON).

A file whose sha256 is already in ingested_files is not loaded again. When new files arrive and the
mapping is unchanged, only their rows are classified and appended (a row repeating one already
cleaned is a duplicate). When the mapping changed (or on the first load), every file ever loaded is
read again (its sha256 verified) and both tables are rebuilt. Either way every source row has exactly
one outcome, which `reconciliation` proves row by row and in money.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Callable, Optional

import duckdb
import numpy as np

from customer_assets.common import data_version, source_files
from customer_assets.common.db import fsst_disabled, is_read_only, quote_ident, table_columns, table_exists
from customer_assets.ingestion.cleaning import clean, parsed_select, staged_column_types
from customer_assets.ingestion.mapping import Mapping, load_mapping
from customer_assets.ingestion.readers import (
    FileRead,
    IngestError,
    discover_files,
    file_sha256,
    read_into_staging,
)

INGESTED_FILES_DDL = """
CREATE TABLE IF NOT EXISTS ingested_files (
    path       VARCHAR,
    sha256     VARCHAR,
    rows       BIGINT,
    malformed  BIGINT,
    loaded_at  TIMESTAMP,
    notes      VARCHAR,
    money      DECIMAL(38, 6),
    last_order_date DATE  -- of the file's cleaned lines (common/source_files)
)
"""
STATE_DDL = "CREATE TABLE IF NOT EXISTS ingestion_state (key VARCHAR PRIMARY KEY, value VARCHAR)"
STAGED_VIEW = "__staged"

# Money is summed exactly: each line rounded to 6 decimals as a DECIMAL, then added without
# floating-point error. (DOUBLE sums of 54M lines in different orders differ by a few cents, which
# would fail an exact check for no lost money at all.)
EXACT_MONEY = "coalesce(sum(CAST(round(line_total, 6) AS DECIMAL(38, 6))), 0)"


@dataclass
class IngestSummary:
    files_seen: list = field(default_factory=list)
    loaded: list = field(default_factory=list)          # FileRead of the new files
    reread: list = field(default_factory=list)          # FileRead of known files read again for a rebuild
    skipped_known: list = field(default_factory=list)   # paths whose sha256 was already loaded
    reasons: dict = field(default_factory=dict)
    rebuilt: bool = False
    notes: list = field(default_factory=list)


def ingest(
    con: duckdb.DuckDBPyConnection,
    source: Optional[str],
    mapping_path: str,
    landing_dir: Optional[str],
    log: Callable[[str], None] = lambda _msg: None,
) -> IngestSummary:
    mapping = load_mapping(mapping_path)
    con.execute("SET enable_progress_bar = false")
    con.execute(INGESTED_FILES_DDL)
    # warehouses built before the money column existed
    con.execute("ALTER TABLE ingested_files ADD COLUMN IF NOT EXISTS money DECIMAL(38, 6)")
    had_last_dates = source_files.COLUMN in table_columns(con, "ingested_files")
    con.execute(f"ALTER TABLE ingested_files ADD COLUMN IF NOT EXISTS {source_files.COLUMN} DATE")
    con.execute(STATE_DDL)
    summary = IngestSummary(files_seen=discover_files(source, landing_dir))
    known = {r[0] for r in con.execute("SELECT sha256 FROM ingested_files").fetchall()}

    mapping_hash = _mapping_hash(mapping)
    previous = read_state(con, "mapping_hash")
    have_clean = table_exists(con, "cleaned_transactions") and table_exists(con, "quarantined_transactions")
    # A warehouse built by an earlier version has files without a recorded money total (and a
    # raw_transactions copy): rebuilding once from the files records it, so the check can pass.
    unrecorded = con.execute("SELECT count(*) FROM ingested_files WHERE money IS NULL").fetchone()[0]
    rebuild = not (have_clean and previous == mapping_hash) or unrecorded > 0
    if not had_last_dates and not rebuild:
        # a warehouse from before the column: one scan records every file's date (a rebuild does too)
        source_files.record_last_order_dates(con, _all_files(con))

    if not rebuild:
        # the state an append starts from: derived tables built from it update with the new rows only
        before, counts_before = data_version.data_fingerprint(con), data_version.row_counts(con)
    staged: list[str] = []
    if rebuild:
        # Every file loaded before is read again under the current mapping.
        for path, sha in con.execute("SELECT path, sha256 FROM ingested_files ORDER BY loaded_at, path").fetchall():
            table = f"__stage_{len(staged)}"
            _verify_known_file(path, sha)
            log(f"reading again (rebuild) {path}")
            summary.reread.append(read_into_staging(con, path, sha, mapping, table))
            staged.append(table)
    for path in summary.files_seen:
        sha = file_sha256(path)
        if sha in known:
            summary.skipped_known.append(path)
            continue
        known.add(sha)
        table = f"__stage_{len(staged)}"
        log(f"reading {path}")
        info: FileRead = read_into_staging(con, path, sha, mapping, table)
        log(f"read {info.rows:,} rows from {path}" + (f" ({'; '.join(info.notes)})" if info.notes else ""))
        summary.loaded.append(info)
        staged.append(table)

    total_rows = sum(f.rows for f in summary.loaded + summary.reread)
    if not summary.loaded and not rebuild:
        summary.reasons = dict(con.execute(
            "SELECT reason, count(*) FROM quarantined_transactions GROUP BY reason"
        ).fetchall())
        summary.notes.append("no new file and the mapping is unchanged: cleaned tables kept as they were")
        return summary
    if rebuild and total_rows == 0:
        described = "; ".join(
            f"{f.path}: {', '.join(f.notes) or 'no rows'}" for f in summary.loaded
        ) or "no source files"
        raise IngestError(f"No transaction rows to analyse ({described}). Point CUSTOMER_ASSETS_SOURCE at a file with data.")

    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {STAGED_VIEW} AS "
        + " UNION ALL BY NAME ".join(f"SELECT * FROM {quote_ident(t)}" for t in staged)
    )
    # What was read, per file: rows and exact money under this mapping (the reconciliation's "raw" side).
    money = dict(con.execute(
        f"SELECT source_sha256, {EXACT_MONEY} FROM "
        f"(SELECT {parsed_select(mapping, staged_column_types(con, STAGED_VIEW))} FROM {STAGED_VIEW}) "
        "GROUP BY source_sha256"
    ).fetchall())
    # Strings are written without FSST compression while ingestion writes and settles the rows (it
    # runs alone, so the database-wide setting touches no other step). Measured at 10.8M lines: the
    # writes took ~25% less CPU; the weekly append's settle checkpoint (N=20 + one week) averaged
    # 1.41 s wall with FSST (5 runs) and 1.19 s without (15 runs). The rows are the same.
    with fsst_disabled(con):
        if rebuild:
            log(f"cleaning {total_rows:,} rows from {len(staged)} file(s)")
            summary.reasons = clean(con, mapping, STAGED_VIEW)
            write_state(con, "mapping_hash", mapping_hash)
        else:
            # The usual weekly case: classify only the new files' rows and append them.
            log(f"cleaning the {len(summary.loaded)} new file(s)")
            summary.reasons = clean(con, mapping, STAGED_VIEW, incremental=True)
            summary.notes.append("incremental: only the new files' rows were classified")
        summary.rebuilt = True
        now = dt.datetime.now()
        for f in summary.reread:
            con.execute("UPDATE ingested_files SET money = ?, rows = ?, malformed = ? WHERE sha256 = ?",
                        [money.get(f.sha256, Decimal(0)), f.rows, f.malformed, f.sha256])
        if summary.loaded:
            con.executemany(
                "INSERT INTO ingested_files (path, sha256, rows, malformed, loaded_at, notes, money) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(f.path, f.sha256, f.rows, f.malformed, now, "; ".join(f.notes) or None, money.get(f.sha256, Decimal(0)))
                 for f in summary.loaded],
            )
        if rebuild:
            source_files.record_last_order_dates(con, _all_files(con))
        else:  # only the appended lines: the new files' own
            source_files.record_last_order_dates(con, {f.sha256: f.path for f in summary.loaded},
                                                 f"rowid >= {int(counts_before[0])}")
        if rebuild and table_exists(con, "raw_transactions"):
            # the copy of every source row that earlier versions kept (the files are the record now)
            con.execute("DROP TABLE raw_transactions")
            summary.notes.append("dropped raw_transactions, a copy kept by an earlier version")
        con.execute(f"DROP VIEW IF EXISTS {STAGED_VIEW}")
        for t in staged:
            kind = con.execute(
                "SELECT 'VIEW' FROM duckdb_views() WHERE view_name = ? AND temporary "
                "UNION ALL SELECT 'TABLE' FROM duckdb_tables() WHERE table_name = ? AND temporary", [t, t]
            ).fetchone()
            if kind:
                con.execute(f"DROP {kind[0]} {quote_ident(t)}")
        if rebuild:
            data_version.clear_log(con)
        else:
            data_version.record_append(con, before, counts_before, [f.path for f in summary.loaded])
    return summary


def _all_files(con: duckdb.DuckDBPyConnection) -> dict:
    return dict(con.execute("SELECT sha256, path FROM ingested_files WHERE path IS NOT NULL").fetchall())


def _verify_known_file(path: str, sha: str) -> None:
    if not os.path.isfile(path):
        raise IngestError(
            f"The column mapping changed, so every file loaded before must be read again, but {path} is gone. "
            "Put it back, restore the previous mapping, or start a new warehouse (CUSTOMER_ASSETS_WAREHOUSE)."
        )
    if file_sha256(path) != sha:
        raise IngestError(
            f"The column mapping changed, so every file loaded before must be read again, but {path} has changed "
            f"since it was loaded (sha256 {sha[:12]}...). Restore that file, restore the previous mapping, or start "
            "a new warehouse (CUSTOMER_ASSETS_WAREHOUSE)."
        )


def _mapping_hash(m: Mapping) -> str:
    payload = json.dumps(
        {"columns": m.columns, "cancel": m.cancellation_prefix, "date": m.date_format, "codes": m.non_product_codes},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def reconciliation(con: duckdb.DuckDBPyConnection) -> dict:
    """Rows read = cleaned + quarantined: every source row number of every file appears exactly once
    across the two tables, the row counts add up to what ingested_files recorded, and so does the
    money (exact DECIMAL sums).

    After a weekly append to data that passed this check before (the append log of
    common/data_version proves the earlier rows are untouched), only the appended rows are checked
    against the new files, and the totals are the verified totals plus theirs: the same verdict,
    without reading every earlier row again."""
    stored = read_state(con, "reconciled")
    state = json.loads(stored) if stored else None
    current = data_version.data_fingerprint(con)
    appended = data_version.appended_since(con, state["fingerprint"], current) if state else None
    if appended is not None:
        result = _reconcile_appended(con, state, appended)
    else:
        raw_rows, raw_money = con.execute(
            "SELECT coalesce(sum(rows), 0), coalesce(sum(money), 0) FROM ingested_files"
        ).fetchone()
        c_rows, c_money = con.execute(f"SELECT count(*), {EXACT_MONEY} FROM cleaned_transactions").fetchone()
        q_rows, q_money = con.execute(f"SELECT count(*), {EXACT_MONEY} FROM quarantined_transactions").fetchone()
        missing, doubled = _row_coverage(con)
        result = _verdict(raw_rows, raw_money, c_rows, c_money, q_rows, q_money, missing, doubled)
        result["rows_checked"] = "every row"
    if result["passed"] and not is_read_only(con):
        _save_reconciled_state(con, result, current)
    return result


def _verdict(raw_rows, raw_money, c_rows, c_money, q_rows, q_money, missing, doubled) -> dict:
    money_diff = Decimal(raw_money) - c_money - q_money  # Decimal arithmetic: exact
    return {
        "raw_rows": int(raw_rows),
        "cleaned_rows": int(c_rows),
        "quarantined_rows": int(q_rows),
        "raw_money": round(float(raw_money), 2),
        "cleaned_money": round(float(c_money), 2),
        "quarantined_money": round(float(q_money), 2),
        "money_difference": float(money_diff),
        "raw_rows_without_outcome": int(missing),
        "rows_with_two_outcomes": int(doubled),
        "passed": raw_rows == c_rows + q_rows and missing == 0 and doubled == 0 and money_diff == 0,
        # exact totals, for the next incremental check (not shown as metadata)
        "_exact": {"raw_money": str(raw_money), "cleaned_money": str(c_money), "quarantined_money": str(q_money)},
    }


def read_state(con, key: str) -> Optional[str]:
    """A value of the ingestion_state key-value table (mapping hash, last passed checks), or None."""
    if not table_exists(con, "ingestion_state"):
        return None
    row = con.execute("SELECT value FROM ingestion_state WHERE key = ?", [key]).fetchone()
    return row[0] if row else None


def write_state(con, key: str, value: str) -> None:
    con.execute(STATE_DDL)
    con.execute("INSERT OR REPLACE INTO ingestion_state VALUES (?, ?)", [key, value])


def _save_reconciled_state(con, result: dict, fingerprint: str) -> None:
    shas = [r[0] for r in con.execute("SELECT sha256 FROM ingested_files ORDER BY sha256").fetchall()]
    state = {"fingerprint": fingerprint, "sha256s": shas,
             "cleaned_rows": result["cleaned_rows"], "quarantined_rows": result["quarantined_rows"],
             "raw_rows": result["raw_rows"], **result["_exact"]}
    write_state(con, "reconciled", json.dumps(state))


def _reconcile_appended(con, state: dict, appended) -> dict:
    """The check over the rows appended since `state` (a passed reconciliation): they must be exactly
    the rows of the files loaded since, each source row once, with those files' money."""
    known = set(state["sha256s"])
    new_files = [(p, r, m) for p, r, m, sha in con.execute(
        "SELECT path, rows, money, sha256 FROM ingested_files").fetchall() if sha not in known]
    new_rows = sum(int(r) for _, r, _ in new_files)
    new_money = sum((Decimal(m) for _, _, m in new_files), Decimal(0))
    where = {t: appended.where(t) for t in data_version.TABLES}
    c_rows, c_money = con.execute(
        f"SELECT count(*), {EXACT_MONEY} FROM cleaned_transactions WHERE {where['cleaned_transactions']}").fetchone()
    q_rows, q_money = con.execute(
        f"SELECT count(*), {EXACT_MONEY} FROM quarantined_transactions WHERE {where['quarantined_transactions']}"
    ).fetchone()
    missing, doubled = _row_coverage(con, where, {p: int(r) for p, r, _ in new_files})
    result = _verdict(
        state["raw_rows"] + new_rows, Decimal(state["raw_money"]) + new_money,
        state["cleaned_rows"] + c_rows, Decimal(state["cleaned_money"]) + c_money,
        state["quarantined_rows"] + q_rows, Decimal(state["quarantined_money"]) + q_money,
        missing, doubled,
    )
    # the totals must also be the tables' row counts (cheap: no scan)
    counts = data_version.row_counts(con)
    result["passed"] = result["passed"] and counts == (result["cleaned_rows"], result["quarantined_rows"])
    result["rows_checked"] = f"the {c_rows + q_rows:,} rows appended from {len(new_files)} new file(s)"
    return result


COVERAGE_CHUNK_ROWS = 8_000_000  # source rows checked per query: bounds the memory of the check


def _row_coverage(con: duckdb.DuckDBPyConnection, where: Optional[dict] = None,
                  expected: Optional[dict] = None) -> tuple[int, int]:
    """(source rows without an outcome, source rows with more than one), exactly.

    Each source file (or Excel sheet) numbers its rows 1..n. Per file, the row numbers found in the
    two tables are counted with numpy (a bincount over a chunk of row numbers: far cheaper than a SQL
    group-by over 54M (file, row) keys); n is what ingested_files recorded for that file. A file with
    no row at all in either table counts all of its rows as missing.

    `where` ({table: SQL condition}) and `expected` ({path: rows}) restrict the check to some rows
    and the files they must come from (the incremental check); a row from any other file counts as
    a row with two outcomes (its file's rows were all accounted for already)."""
    cond = {t: f"({(where or {}).get(t, 'true')})" for t in data_version.TABLES}
    if expected is None:
        expected = {}
        for path, rows in con.execute("SELECT path, rows FROM ingested_files").fetchall():
            expected[path] = int(rows)
    found = con.execute(
        f"""SELECT source_file, max(source_row), count(*) FROM (
               SELECT source_file, source_row FROM cleaned_transactions WHERE {cond['cleaned_transactions']}
               UNION ALL SELECT source_file, source_row FROM quarantined_transactions
               WHERE {cond['quarantined_transactions']})
           GROUP BY source_file"""
    ).fetchall()
    missing = doubled = 0
    sheet_rows: dict = {}
    for source_file, max_row, n_found in found:
        # Excel sheets are "path#sheet" and number their rows per sheet; the file's total is the sum.
        path = source_file if source_file in expected else source_file.rsplit("#", 1)[0]
        if path not in expected:
            doubled += int(n_found)  # a row of a file not expected here
            continue
        n = int(max_row or 0)
        sheet_rows[path] = sheet_rows.get(path, 0) + n
        for lo in range(1, n + 1, COVERAGE_CHUNK_ROWS):
            hi = min(n, lo + COVERAGE_CHUNK_ROWS - 1)
            rows = con.execute(
                f"""SELECT source_row FROM cleaned_transactions
                    WHERE source_file = $f AND source_row BETWEEN $lo AND $hi AND {cond['cleaned_transactions']}
                    UNION ALL
                    SELECT source_row FROM quarantined_transactions
                    WHERE source_file = $f AND source_row BETWEEN $lo AND $hi AND {cond['quarantined_transactions']}""",
                {"f": source_file, "lo": lo, "hi": hi},
            ).fetchnumpy()["source_row"]
            counts = np.bincount(np.asarray(rows, dtype=np.int64) - lo, minlength=hi - lo + 1)
            missing += int((counts == 0).sum())
            doubled += int((counts > 1).sum())
    # rows numbered below 1 would escape the chunks: count them as doubled outcomes of nothing
    doubled += con.execute(
        f"SELECT (SELECT count(*) FROM cleaned_transactions WHERE source_row < 1 AND {cond['cleaned_transactions']}) "
        f"+ (SELECT count(*) FROM quarantined_transactions WHERE source_row < 1 AND {cond['quarantined_transactions']})"
    ).fetchone()[0]
    for path, rows in expected.items():
        # rows at the end of a file (beyond the highest row number found) that have no outcome
        missing += max(0, rows - sheet_rows.get(path, 0))
    return missing, doubled
