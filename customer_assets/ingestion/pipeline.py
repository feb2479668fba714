"""Ingestion: new source files -> raw_transactions (append) -> cleaned / quarantined (rebuild).

A file whose sha256 is already in ingested_files is not loaded again. raw_transactions only grows.
When new files arrive and the mapping is unchanged, only their rows are classified and appended
(a row repeating one already cleaned is a duplicate); when the mapping changed (or on the first
load), cleaned and quarantined are rebuilt from every raw row. Either way every raw row has
exactly one outcome.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Callable, Optional

import duckdb

from customer_assets.common.db import quote_ident, replace_table, table_exists
from customer_assets.ingestion.cleaning import clean
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
    notes      VARCHAR
)
"""
STATE_DDL = "CREATE TABLE IF NOT EXISTS ingestion_state (key VARCHAR PRIMARY KEY, value VARCHAR)"


@dataclass
class IngestSummary:
    files_seen: list = field(default_factory=list)
    loaded: list = field(default_factory=list)          # FileRead
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
    con.execute(STATE_DDL)
    summary = IngestSummary(files_seen=discover_files(source, landing_dir))
    known = {r[0] for r in con.execute("SELECT sha256 FROM ingested_files").fetchall()}

    staged: list[str] = []
    for i, path in enumerate(summary.files_seen):
        sha = file_sha256(path)
        if sha in known:
            summary.skipped_known.append(path)
            continue
        known.add(sha)
        table = f"__stage_{i}"
        log(f"reading {path}")
        info: FileRead = read_into_staging(con, path, sha, mapping, table)
        log(f"read {info.rows:,} rows from {path}" + (f" ({'; '.join(info.notes)})" if info.notes else ""))
        summary.loaded.append(info)
        staged.append(table)

    if staged:
        if len(staged) == 1 and not table_exists(con, "raw_transactions"):
            # First load of one file: the staging table becomes raw_transactions (no second copy).
            con.execute(f"ALTER TABLE {quote_ident(staged[0])} RENAME TO raw_transactions")
        else:
            parts = ([] if not table_exists(con, "raw_transactions") else ["SELECT * FROM raw_transactions"])
            parts += [f"SELECT * FROM {quote_ident(t)}" for t in staged]
            replace_table(con, "raw_transactions", " UNION ALL BY NAME ".join(parts))
        for t in staged:
            con.execute(f"DROP TABLE IF EXISTS {quote_ident(t)}")
        now = dt.datetime.now()
        con.executemany(
            "INSERT INTO ingested_files VALUES (?, ?, ?, ?, ?, ?)",
            [(f.path, f.sha256, f.rows, f.malformed, now, "; ".join(f.notes) or None) for f in summary.loaded],
        )

    if not table_exists(con, "raw_transactions") or con.execute("SELECT count(*) FROM raw_transactions").fetchone()[0] == 0:
        described = "; ".join(
            f"{f.path}: {', '.join(f.notes) or 'no rows'}" for f in summary.loaded
        ) or "no source files"
        raise IngestError(f"No transaction rows to analyse ({described}). Point CUSTOMER_ASSETS_SOURCE at a file with data.")

    mapping_hash = _mapping_hash(mapping)
    previous = con.execute("SELECT value FROM ingestion_state WHERE key = 'mapping_hash'").fetchone()
    have_clean = table_exists(con, "cleaned_transactions") and table_exists(con, "quarantined_transactions")
    same_mapping = previous is not None and previous[0] == mapping_hash
    if have_clean and same_mapping and staged:
        # The usual weekly case: classify only the new files' rows and append them.
        log(f"cleaning the {len(summary.loaded)} new file(s)")
        summary.reasons = clean(con, mapping, only_sha256=[f.sha256 for f in summary.loaded])
        summary.rebuilt = True
        summary.notes.append("incremental: only the new files' rows were classified")
    elif not (have_clean and same_mapping):
        log("cleaning raw_transactions")
        summary.reasons = clean(con, mapping)
        summary.rebuilt = True
        con.execute(
            "INSERT OR REPLACE INTO ingestion_state VALUES ('mapping_hash', ?)", [mapping_hash]
        )
    else:
        summary.reasons = dict(con.execute(
            "SELECT reason, count(*) FROM quarantined_transactions GROUP BY reason"
        ).fetchall())
        summary.notes.append("no new file and the mapping is unchanged: cleaned tables kept as they were")
    return summary


def _mapping_hash(m: Mapping) -> str:
    payload = json.dumps(
        {"columns": m.columns, "cancel": m.cancellation_prefix, "date": m.date_format, "codes": m.non_product_codes},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


# Money is summed exactly: each line rounded to 6 decimals as a DECIMAL, then added without
# floating-point error. (DOUBLE sums of 54M lines in different orders differ by a few cents, which
# would fail an exact check for no lost money at all.)
EXACT_MONEY = "coalesce(sum(CAST(round(line_total, 6) AS DECIMAL(38, 6))), 0)"


def reconciliation(con: duckdb.DuckDBPyConnection, mapping: Mapping) -> dict:
    """raw = cleaned + quarantined, in rows (by key, not just by count) and in money."""
    from customer_assets.ingestion.cleaning import parsed_select, raw_column_types

    raw_rows, raw_money = con.execute(
        f"SELECT count(*), {EXACT_MONEY} FROM "
        f"(SELECT {parsed_select(mapping, raw_column_types(con))} FROM raw_transactions)"
    ).fetchone()
    c_rows, c_money = con.execute(f"SELECT count(*), {EXACT_MONEY} FROM cleaned_transactions").fetchone()
    q_rows, q_money = con.execute(f"SELECT count(*), {EXACT_MONEY} FROM quarantined_transactions").fetchone()
    missing, doubled = con.execute(
        """WITH outcome AS (
               SELECT source_file, source_row FROM cleaned_transactions
               UNION ALL SELECT source_file, source_row FROM quarantined_transactions),
           counted AS (SELECT source_file, source_row, count(*) AS n FROM outcome GROUP BY ALL)
           SELECT
             (SELECT count(*) FROM raw_transactions r ANTI JOIN counted o
                USING (source_file, source_row)),
             (SELECT count(*) FROM counted WHERE n > 1)"""
    ).fetchone()
    money_diff = raw_money - c_money - q_money  # Decimal arithmetic: exact
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
    }
