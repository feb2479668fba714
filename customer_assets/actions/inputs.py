"""Reading optional upstream tables: a missing table or column is a note, never a crash."""

from __future__ import annotations

from typing import Optional

import duckdb
import pandas as pd

from customer_assets.common.db import quote_ident, replace_table, table_exists


def table_columns(con: duckdb.DuckDBPyConnection, name: str) -> list[str]:
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


def read_optional(con: duckdb.DuckDBPyConnection, name: str, sql_tail: str = "") -> Optional[pd.DataFrame]:
    """`SELECT * FROM name <sql_tail>` as a DataFrame, or None when the table does not exist.

    Only for customer-level or summary tables (never transaction-level ones)."""
    if not table_exists(con, name):
        return None
    return con.execute(f"SELECT * FROM {quote_ident(name)} {sql_tail}").df()


def write_typed(con: duckdb.DuckDBPyConnection, name: str, df: pd.DataFrame, types: dict) -> int:
    """replace_table with explicit column types (an all-NULL pandas column would otherwise land as
    INTEGER and break every later `= 'High'`)."""
    frame = df.copy()
    for c in types:
        if c not in frame.columns:
            frame[c] = None
    casts = ", ".join(f"CAST({quote_ident(c)} AS {t}) AS {quote_ident(c)}" for c, t in types.items())
    con.register("__typed_df", frame[list(types)])
    try:
        return replace_table(con, name, f"SELECT {casts} FROM __typed_df")
    finally:
        con.unregister("__typed_df")
