"""Typed writes of the stage's tables (fixed column types, so an empty result is still a typed table)."""

from __future__ import annotations

from contextlib import contextmanager

import duckdb
import pandas as pd

from customer_assets.common.db import replace_table


def empty_sql(columns: dict) -> str:
    """A SELECT of no rows with the given {name: DuckDB type} columns."""
    return "SELECT " + ", ".join(f"CAST(NULL AS {t}) AS {c}" for c, t in columns.items()) + " WHERE false"


def write_typed(con: duckdb.DuckDBPyConnection, table: str, df: pd.DataFrame, columns: dict) -> int:
    """Atomically replace `table` with `df`'s `columns`, each cast to its type; returns the row count."""
    if df is None or df.empty:
        return replace_table(con, table, empty_sql(columns))
    view = f"__{table}_df"
    con.register(view, df[list(columns)])
    try:
        casts = ", ".join(f"CAST({c} AS {t}) AS {c}" for c, t in columns.items())
        return replace_table(con, table, f"SELECT {casts} FROM {view}")
    finally:
        con.unregister(view)


@contextmanager
def warehouse_connection(resource):
    """`resource.get_connection()` that also closes the connection when the body raises.

    dagster_duckdb's get_connection closes only on normal exit: after an exception (e.g. a
    dg.Failure for a bad inventory file) the read-write connection would stay open and lock the file."""
    with resource.get_connection() as con:
        try:
            yield con
        finally:
            con.close()
