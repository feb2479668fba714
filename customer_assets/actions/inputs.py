"""Reading optional upstream tables: a missing table or column is a note, never a crash."""

from __future__ import annotations

from typing import Optional

import duckdb
import pandas as pd

from customer_assets.common.db import quote_ident, replace_table, table_exists, write_typed  # noqa: F401


def read_optional(con: duckdb.DuckDBPyConnection, name: str, sql_tail: str = "") -> Optional[pd.DataFrame]:
    """`SELECT * FROM name <sql_tail>` as a DataFrame, or None when the table does not exist.

    Only for customer-level or summary tables (never transaction-level ones)."""
    if not table_exists(con, name):
        return None
    return con.execute(f"SELECT * FROM {quote_ident(name)} {sql_tail}").df()


