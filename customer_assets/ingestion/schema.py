"""The canonical transaction-line schema: the data contract every stage reads.

cleaned_transactions has exactly CLEANED_COLUMNS (unmapped optional fields are NULL columns, so
stage SQL stays uniform; use `field_available` to ask whether a source provided a field).
quarantined_transactions has QUARANTINE_COLUMNS: the same parsed values where they parse, the
reason code, a human-readable detail, and the original row as JSON.
"""

from __future__ import annotations

import pandas as pd

REQUIRED_FIELDS = ("customer_id", "order_id", "order_datetime")
OPTIONAL_FIELDS = (
    "product_id", "product_name", "quantity", "unit_price", "line_total", "order_total",
    "country", "store_id", "discount",
)
CANONICAL_FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS

# name -> DuckDB type
CLEANED_COLUMNS = {
    "source_file": "VARCHAR",
    "source_row": "BIGINT",       # 1-based data row number within the file (header excluded)
    "customer_id": "VARCHAR",
    "order_id": "VARCHAR",
    "order_datetime": "TIMESTAMP",
    "order_date": "DATE",
    "product_id": "VARCHAR",
    "product_name": "VARCHAR",
    "quantity": "DOUBLE",
    "unit_price": "DOUBLE",
    "line_total": "DOUBLE",       # quantity * unit_price, the mapped line_total, or the order_total
    "country": "VARCHAR",
    "store_id": "VARCHAR",
    "discount": "DOUBLE",
}

QUARANTINE_COLUMNS = {
    "source_file": "VARCHAR",
    "source_row": "BIGINT",
    "reason": "VARCHAR",
    "detail": "VARCHAR",
    **{k: v for k, v in CLEANED_COLUMNS.items() if k not in ("source_file", "source_row")},
    "raw_values": "VARCHAR",      # the original row as JSON {source column: text as read}
}

# Reason codes, in precedence order: a row gets the first that applies.
REASONS = (
    "malformed_row",          # the reader could not split the line (e.g. a truncated last line)
    "cancellation",           # order_id starts with the cancellation marker (e.g. "C")
    "missing_order_id",
    "unparseable_date",       # missing, unparseable, or outside 1970..2100
    "missing_customer",
    "non_product_code",       # POST, DOT, BANK CHARGES, ... (mapping option)
    "unparseable_number",     # quantity / price / total present but not a number
    "non_positive_quantity",
    "non_positive_price",     # unit price <= 0, or order/line total < 0
    "duplicate",              # an exact repeat of an earlier row (same canonical values)
)


def cleaned_frame(rows: list[dict]) -> pd.DataFrame:
    """A DataFrame with exactly the cleaned_transactions columns (for tests and fixtures).

    Missing keys become NULL; order_date is derived from order_datetime; line_total from
    quantity * unit_price when not given."""
    df = pd.DataFrame(rows)
    for c in CLEANED_COLUMNS:
        if c not in df.columns:
            df[c] = None
    df["order_datetime"] = pd.to_datetime(df["order_datetime"])
    df["order_date"] = df["order_datetime"].dt.date
    for c in ("quantity", "unit_price", "line_total", "discount"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    missing_total = df["line_total"].isna()
    df.loc[missing_total, "line_total"] = df.loc[missing_total, "quantity"] * df.loc[missing_total, "unit_price"]
    for c in ("customer_id", "order_id", "product_id", "product_name", "country", "store_id", "source_file"):
        df[c] = df[c].astype("string")
    if df["source_row"].isna().all():
        df["source_row"] = range(1, len(df) + 1)
    return df[list(CLEANED_COLUMNS)]


def write_cleaned(con, rows_or_df, table: str = "cleaned_transactions") -> None:
    """Create `table` with the canonical schema from rows (tests use this for hand-made data)."""
    df = rows_or_df if isinstance(rows_or_df, pd.DataFrame) else cleaned_frame(rows_or_df)
    casts = ", ".join(f"CAST({c} AS {t}) AS {c}" for c, t in CLEANED_COLUMNS.items())
    con.register("__cleaned_df", df)
    try:
        con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT {casts} FROM __cleaned_df")
    finally:
        con.unregister("__cleaned_df")


def empty_quarantine_sql() -> str:
    from customer_assets.common.db import empty_sql

    return empty_sql(QUARANTINE_COLUMNS)


def field_available(con, field: str, table: str = "cleaned_transactions") -> bool:
    """True when the source mapped `field` and at least one cleaned row has a value for it."""
    return con.execute(f"SELECT count({field}) > 0 FROM {table}").fetchone()[0]
