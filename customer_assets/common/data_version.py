"""Which transaction rows are new since a derived table was built.

Derived tables that are expensive to rebuild from every line (the customer feature base, the star
schema) store the `data_fingerprint` of the data they were built from. When it no longer matches,
they ask `appended_since(con, built_from)`:

- an `Appended` with the rowid ranges of the rows added since, when every change in between was an
  incremental append recorded by ingestion (the weekly case): the consumer updates itself from those
  rows only;
- None when the data changed in any other way (a rebuild after a mapping change, a manual UPDATE or
  DELETE, a table replaced by a test): the consumer rebuilds from everything.

Why rowids: an incremental ingest only INSERTs into cleaned_transactions and quarantined_transactions
(a duplicate of an old row is quarantined, the old row is never touched), and DuckDB gives appended
rows the rowids after the existing ones, so the new rows are exactly `rowid >= rows before`
(`rowid` filters are pushed into the scan: reading them costs what reading the new rows costs).
The fingerprints before and after each append make the chain safe: a consumer built from another
state, or any unrecorded change in between, breaks the chain and means a rebuild.

The log lives in schema `ingestion_log` (not in `main`, where every table is an asset).
"""

from __future__ import annotations

import hashlib
import threading
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Optional

import duckdb

from customer_assets.common.db import ROW_GROUP_ROWS, table_exists, vacuum_allowed

TABLES = ("cleaned_transactions", "quarantined_transactions")
LOG_SCHEMA = "ingestion_log"
LOG_TABLE = f"{LOG_SCHEMA}.appends"
LOG_KEEP = 200  # appends kept: a consumer older than that many weekly loads rebuilds
# Ingestion compacts the warehouse (a checkpoint that merges row groups, see common.db.defer_vacuum)
# once a transaction table has this many row groups more than its rows need. Each append leaves one
# partly filled row group per table, and a merge (DuckDB folds 2-3 neighbours at a time) still leaves
# a few, so at N=20 one weekly append in three or four pays for the merge (measured over 12 weeks:
# docs/ingestion.md) and the others write only their own rows.
COMPACT_AFTER = 8


def table_fingerprint(con: duckdb.DuckDBPyConnection, table: str):
    """Cheap identity of a table's content: row count + a digest of its storage layout.

    Checkpointed data is immutable in DuckDB: any change (insert, update, rebuild) writes new
    segments in blocks not in use by the current version, so the digest of (row group, segment,
    row counts, min/max stats, block id, offset) changes; deletes change the row count. Data not
    yet checkpointed (in the WAL / in memory, e.g. right after a small INSERT or UPDATE) has no
    stable layout: then a hash of every row is added (a scan).
    """
    if not table_exists(con, table):
        return None
    rows = con.execute(
        "SELECT row_group_id, column_id, column_path, segment_id, start, count, stats, has_updates, persistent, "
        f"block_id, block_offset FROM pragma_storage_info('{table}') ORDER BY ALL"
    ).fetchall()
    n = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    content = None
    if any(r[7] or not r[8] for r in rows):
        content = con.execute(f"SELECT sum(hash(t)), count(*) FROM {table} AS t").fetchone()
    return (n, hashlib.sha256(repr(rows).encode()).hexdigest(), content)


def data_fingerprint(con: duckdb.DuckDBPyConnection) -> str:
    """Fingerprint of the cleaned and quarantined transactions (what every derived table reads).

    During a run (`kept_for_run`) it is computed once per database and kept until ingestion
    writes the transactions (`forget_fingerprints`): a dozen steps ask for it, and each
    computation reads the storage layout of both tables (0.1-0.3 s at 10M lines)."""
    key = _database_key(con) if _KEPT["runs"] else None
    if key is not None:
        with _KEPT_LOCK:
            if key in _KEPT["values"]:
                return _KEPT["values"][key]
    fingerprint = _compute_fingerprint(con)
    if key is not None:
        with _KEPT_LOCK:
            if _KEPT["runs"]:
                _KEPT["values"][key] = fingerprint
    return fingerprint


def _compute_fingerprint(con: duckdb.DuckDBPyConnection) -> str:
    parts = tuple(table_fingerprint(con, t) for t in TABLES)
    return hashlib.sha256(repr(parts).encode()).hexdigest()


# Run-scoped fingerprints: {"runs": runs in progress in this process, "values": {database path: fingerprint}}
_KEPT: dict = {"runs": 0, "values": {}}
_KEPT_LOCK = threading.Lock()


@contextmanager
def kept_for_run():
    """While a run executes (the warehouse resource holds this from its setup to its teardown), the
    transactions change only where ingestion writes them, and ingestion calls `forget_fingerprints`."""
    with _KEPT_LOCK:
        _KEPT["runs"] += 1
    try:
        yield
    finally:
        with _KEPT_LOCK:
            _KEPT["runs"] -= 1
            if not _KEPT["runs"]:
                _KEPT["values"].clear()
                _MEMO.clear()


def forget_fingerprints() -> None:
    with _KEPT_LOCK:
        _KEPT["values"].clear()
        _MEMO.clear()


# Run-scoped results of the transactions: {(database path, data fingerprint, key): value}
_MEMO: dict = {}


def memoized(con: duckdb.DuckDBPyConnection, key, compute):
    """`compute()` once per database and data fingerprint while a run executes (`kept_for_run`),
    for a result that depends on cleaned_transactions / quarantined_transactions alone and that
    more than one step asks for (the bundle steps count the orders and name the products over
    every line). Outside a run, `compute()` every time. The value is shared: do not modify it."""
    if not _KEPT["runs"]:
        return compute()
    database = _database_key(con)
    if database is None:
        return compute()
    k = (database, data_fingerprint(con), key)
    with _KEPT_LOCK:
        if k in _MEMO:
            return _MEMO[k]
    value = compute()
    with _KEPT_LOCK:
        if _KEPT["runs"]:
            _MEMO[k] = value
    return value


def _database_key(con: duckdb.DuckDBPyConnection) -> Optional[str]:
    """The database file of `con` (None in memory: nothing is kept)."""
    path = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchone()[0]
    return path or None


@dataclass(frozen=True)
class Appended:
    """Rows appended since a fingerprint: rowid in [start, end) of each table."""

    cleaned: tuple          # (start, end) rowids of cleaned_transactions
    quarantined: tuple      # (start, end) rowids of quarantined_transactions

    @property
    def empty(self) -> bool:
        return self.cleaned[0] == self.cleaned[1] and self.quarantined[0] == self.quarantined[1]

    def where(self, table: str) -> str:
        """SQL condition selecting the appended rows of `table`."""
        start, end = self.cleaned if table == "cleaned_transactions" else self.quarantined
        return f"(rowid >= {int(start)} AND rowid < {int(end)})"


def row_counts(con: duckdb.DuckDBPyConnection) -> tuple:
    return tuple(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] if table_exists(con, t) else 0
                 for t in TABLES)


def record_append(con: duckdb.DuckDBPyConnection, before: str, counts_before: tuple, files: list) -> str:
    """Log an append that took the data from fingerprint `before` (row counts `counts_before`) to
    the current state; returns the new fingerprint. Called by ingestion after an incremental load,
    outside any transaction: it checkpoints first, so the fingerprint recorded is the stable,
    layout-based one that later steps (new connections) compute too. That checkpoint compacts (merges
    row groups) only once the transactions carry COMPACT_AFTER surplus row groups."""
    forget_fingerprints()  # the transactions were just written
    after = _settled_fingerprint(con, compact=surplus_row_groups(con) >= COMPACT_AFTER)
    counts_after = row_counts(con)
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {LOG_SCHEMA}")
    con.execute(
        f"""CREATE TABLE IF NOT EXISTS {LOG_TABLE} (
            before VARCHAR, after VARCHAR,
            cleaned_start BIGINT, cleaned_end BIGINT, quarantined_start BIGINT, quarantined_end BIGINT,
            files VARCHAR, appended_at TIMESTAMP DEFAULT now())"""
    )
    con.execute(
        f"INSERT INTO {LOG_TABLE} (before, after, cleaned_start, cleaned_end, quarantined_start, quarantined_end, files) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [before, after, counts_before[0], counts_after[0], counts_before[1], counts_after[1], "\n".join(files)],
    )
    con.execute(
        f"DELETE FROM {LOG_TABLE} WHERE appended_at < (SELECT min(appended_at) FROM "
        f"(SELECT appended_at FROM {LOG_TABLE} ORDER BY appended_at DESC LIMIT {LOG_KEEP}))"
    )
    return after


def surplus_row_groups(con: duckdb.DuckDBPyConnection) -> int:
    """The most row groups a transaction table has beyond the fewest that would hold its rows
    (written and not yet checkpointed rows included): what deferred vacuums left behind."""
    surplus = 0
    for t in TABLES:
        if table_exists(con, t):
            groups, rows = con.execute(
                f"SELECT (SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('{t}')), "
                f"(SELECT count(*) FROM {t})").fetchone()
            surplus = max(surplus, groups - -(-rows // ROW_GROUP_ROWS))
    return surplus


def _settled_fingerprint(con: duckdb.DuckDBPyConnection, compact: bool = True, attempts: int = 4) -> str:
    """The fingerprint once checkpoints no longer change the layout; with `compact`, after
    checkpoints that merge row groups (DuckDB's default; the warehouse resource's connections
    otherwise defer that, see common.db.defer_vacuum).

    One CHECKPOINT after an append is not always the last word: when merging, the next one can
    merge the partly filled row groups the first one wrote (seen at N=20: the last row group of
    cleaned_transactions grew from 26,680 to 122,880 rows on the second checkpoint, which the
    connection's close would have done), and the fingerprint recorded must be the one later
    steps see."""
    with vacuum_allowed(con) if compact else nullcontext():
        con.execute("CHECKPOINT")
        fingerprint = _compute_fingerprint(con)
        for _ in range(attempts - 1):
            con.execute("CHECKPOINT")
            again = _compute_fingerprint(con)
            if again == fingerprint:
                break
            fingerprint = again
    return fingerprint


def clear_log(con: duckdb.DuckDBPyConnection) -> str:
    """Forget every recorded append (ingestion rebuilt the tables: no old state leads here by
    appends); returns the new fingerprint. Like `record_append` it settles the layout first: the
    steps after a rebuild record the fingerprint they build from, and a checkpoint later (another
    step's, or the connection's close) that still merged row groups would make the next run see
    other data and rebuild everything again (at N=20 every first weekly refresh rebuilt the star
    and the feature base so). A rebuild compacts: its tables are all new, so merging their row
    groups costs little, and the appends after it start from a compact layout."""
    forget_fingerprints()
    con.execute(f"DROP TABLE IF EXISTS {LOG_TABLE}")
    return _settled_fingerprint(con)


def appended_since(con: duckdb.DuckDBPyConnection, built_from: str, current: Optional[str] = None) -> Optional[Appended]:
    """The rows appended since the data had fingerprint `built_from`, or None when the current data
    is not `built_from` plus recorded appends (then rebuild). `current`: the current fingerprint,
    when the caller computed it already."""
    current = current if current is not None else data_fingerprint(con)
    counts = row_counts(con)
    if built_from == current:
        return Appended((counts[0], counts[0]), (counts[1], counts[1]))
    if not table_exists(con, "appends", schema=LOG_SCHEMA):
        return None
    steps = {
        r[0]: r[1:]
        for r in con.execute(
            f"SELECT before, after, cleaned_start, cleaned_end, quarantined_start, quarantined_end FROM {LOG_TABLE}"
        ).fetchall()
    }
    fp, first, last = built_from, None, None
    for _ in range(len(steps)):
        step = steps.get(fp)
        if step is None:
            return None
        first = first or step
        last = step
        fp = step[0]
        if fp == current:
            # contiguous appends: from the first one's start to the last one's end
            if (last[2], last[4]) != counts:
                return None
            return Appended((first[1], last[2]), (first[3], last[4]))
    return None
