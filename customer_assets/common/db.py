"""Small DuckDB helpers shared by every stage.

Writes are atomic: a table is built under a temporary name and swapped in inside one
transaction, so a crash mid-asset leaves the last good table in place.
"""

from __future__ import annotations

import datetime as dt
import threading
from contextlib import contextmanager
from typing import Optional

import duckdb
import pandas as pd


def quote_ident(name: str) -> str:
    """Quote an identifier for DuckDB SQL. Column names from user files (spaces, quotes, SQL)
    are only ever used through this."""
    return '"' + str(name).replace('"', '""') + '"'


def table_exists(con: duckdb.DuckDBPyConnection, name: str, schema: str = "main") -> bool:
    """Looked up in the catalog (a missing table must not fall through to a replacement scan);
    `schema` for the bookkeeping schemas (feature_base, star_state, ingestion_log)."""
    return (
        con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ? AND table_schema = ?",
            [name, schema],
        ).fetchone()[0]
        > 0
    )


_STATE_LOCKS: dict = {}
_STATE_LOCKS_GUARD = threading.Lock()


def table_columns(con: duckdb.DuckDBPyConnection, name: str) -> list[str]:
    """The columns of main.`name` in order ([] when there is no such table)."""
    if not table_exists(con, name):
        return []
    return [
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = ? AND table_schema = 'main' ORDER BY ordinal_position",
            [name],
        ).fetchall()
    ]


@contextmanager
def shared_state(name: str):
    """Hold the process-wide lock of the shared bookkeeping state `name` (the feature base, the star
    intermediates, the model registry): steps that run at once in threads (executor.py) and would
    both build or update it otherwise collide in DuckDB ("write-write conflict"). The second one
    waits, then finds the state up to date. Re-entrant."""
    with _STATE_LOCKS_GUARD:
        lock = _STATE_LOCKS.setdefault(name, threading.RLock())
    with lock:
        yield


def is_read_only(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(con.execute(
        "SELECT readonly FROM duckdb_databases() WHERE database_name = current_database()").fetchone()[0])


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection):
    """Run the block in one transaction: committed at the end, rolled back if it raises.

    Inside a transaction the caller already opened, the block joins it (a second BEGIN would abort
    the caller's); in autocommit mode every statement gets a new transaction id, so two reads of
    txid_current() differ only when no transaction is open."""
    own = con.execute("SELECT txid_current()").fetchone()[0] != con.execute("SELECT txid_current()").fetchone()[0]
    if not own:
        yield
        return
    con.execute("BEGIN TRANSACTION")
    try:
        yield
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


@contextmanager
def instance_setting(con: duckdb.DuckDBPyConnection, name: str, value: Optional[str]):
    """DuckDB setting `name` at `value` (None: DuckDB's default) inside the block, the value found
    restored after. Settings of this kind are the DuckDB instance's, for every connection of the
    process. A DuckDB without the setting runs the block as it is."""
    try:
        before = con.execute(f"SELECT current_setting('{name}')").fetchone()[0]
        con.execute(f"RESET {name}" if value is None else f"SET {name} = '{value}'")
    except duckdb.Error:
        yield
        return
    try:
        yield
    finally:
        con.execute(f"SET {name} = '{before}'")


def fsst_disabled(con: duckdb.DuckDBPyConnection):
    """DuckDB writes strings without FSST compression inside the block (dictionary and the other
    methods stay): a speed setting only, the rows are the same. The setting is database-wide, for
    every connection of the process: ingestion uses it while it runs alone; the star's rebuild of
    its intermediates (warehouse/star.py) also uses it, while another step may write beside it (it
    can then write strings without FSST too: the same rows, a little larger). A DuckDB without the
    setting just writes as usual."""
    return instance_setting(con, "disabled_compression_methods", "fsst")


# DuckDB's row groups hold up to this many rows (the default; the warehouse is opened without ATTACH options)
ROW_GROUP_ROWS = 122_880


def defer_vacuum(con: duckdb.DuckDBPyConnection) -> None:
    """Checkpoints leave the row groups of every table as they are (`max_vacuum_tasks = 0`) until a
    compaction (`vacuum_allowed`) merges them.

    Why: an append to a checkpointed table starts new row groups, and DuckDB's next checkpoint merges
    the table's tail whenever fewer row groups would hold it: it reads, re-compresses and writes the
    rows of the partly filled old row groups again. At N=20 each weekly append so rewrote ~305,000
    quarantined lines (about 1.2 s of CPU) in ingestion's settle checkpoint, and the appended
    intermediates (feature base, star) the same way in later steps' checkpoints. Deferred, a weekly
    append writes only its own rows, and ingestion compacts once the transactions carry
    `data_version.COMPACT_AFTER` surplus row groups (common/data_version.py). Deleted rows still go:
    a fully deleted row group is dropped at once, and the tombstones of partial deletes (the few
    upserted bookkeeping tables) are cleared at the next compaction, by DuckDB's usual rule.
    A connection that does not defer (not the pipeline's) merges at its next checkpoint; the next
    refresh then sees another layout and rebuilds from every row.

    The setting is the DuckDB instance's, for every connection of the process; the warehouse
    resource sets it on every connection it opens. A DuckDB without the setting just vacuums."""
    try:
        con.execute("SET max_vacuum_tasks = 0")
    except duckdb.Error:
        pass


def vacuum_allowed(con: duckdb.DuckDBPyConnection):
    """Checkpoints inside the block merge row groups as DuckDB does by default; the setting found
    is restored afterwards (ingestion compacts so while it runs alone)."""
    return instance_setting(con, "max_vacuum_tasks", None)


def replace_table(
    con: duckdb.DuckDBPyConnection,
    name: str,
    source,
    params: Optional[list] = None,
) -> int:
    """Atomically replace table `name` with `source` and return its row count.

    `source` is a SQL SELECT string (run with `params`), a pandas DataFrame, or a DuckDB relation.
    """
    tmp = f"{name}__building"
    con.execute(f"DROP TABLE IF EXISTS {quote_ident(tmp)}")
    if isinstance(source, str):
        con.execute(f"CREATE TABLE {quote_ident(tmp)} AS {source}", params or [])
    elif isinstance(source, pd.DataFrame):
        con.register("__replace_df", source)
        try:
            con.execute(f"CREATE TABLE {quote_ident(tmp)} AS SELECT * FROM __replace_df")
        finally:
            con.unregister("__replace_df")
    else:  # a DuckDB relation
        source.create(tmp)
    with transaction(con):
        con.execute(f"DROP TABLE IF EXISTS {quote_ident(name)}")
        con.execute(f"ALTER TABLE {quote_ident(tmp)} RENAME TO {quote_ident(name)}")
    return con.execute(f"SELECT count(*) FROM {quote_ident(name)}").fetchone()[0]


def empty_sql(columns: dict) -> str:
    """A SELECT of no rows with the given {name: DuckDB type} columns."""
    return "SELECT " + ", ".join(f"CAST(NULL AS {t}) AS {quote_ident(c)}" for c, t in columns.items()) + " WHERE false"


def write_typed(con: duckdb.DuckDBPyConnection, name: str, df: Optional[pd.DataFrame], types: dict) -> int:
    """Atomically replace `name` with `df`'s columns cast to `types` ({column: DuckDB type}).

    Fixed types keep an empty result a typed table, and an all-NULL pandas column from landing as
    INTEGER (which would break every later `= 'High'`). Columns missing from `df` become NULL."""
    if df is None or df.empty:
        return replace_table(con, name, empty_sql(types))
    frame = df.copy()
    for c in types:
        if c not in frame.columns:
            frame[c] = None
    view = f"__{name}_typed_df"
    casts = ", ".join(f"CAST({quote_ident(c)} AS {t}) AS {quote_ident(c)}" for c, t in types.items())
    con.register(view, frame[list(types)])
    try:
        return replace_table(con, name, f"SELECT {casts} FROM {quote_ident(view)}")
    finally:
        con.unregister(view)


def row_count(con: duckdb.DuckDBPyConnection, name: str) -> int:
    return con.execute(f"SELECT count(*) FROM {quote_ident(name)}").fetchone()[0]


def resolve_as_of(con: duckdb.DuckDBPyConnection, configured: Optional[dt.date]) -> dt.date:
    """The observation end: the configured date, else the latest cleaned transaction date.

    Features use transactions with order_date <= as_of (the as_of day is observed)."""
    if configured is not None:
        return configured
    latest = con.execute("SELECT max(order_date) FROM cleaned_transactions").fetchone()[0]
    if latest is None:
        raise ValueError("cleaned_transactions is empty: nothing to analyse (see quarantined_transactions)")
    return latest
