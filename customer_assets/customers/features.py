"""Customer features as of a snapshot date: one DuckDB query, shared by customers, churn and LTV.

`compute_customer_features(con, snapshot_date)` returns one row per customer with at least one
cleaned order on or before `snapshot_date`. Only transactions with `order_date <= snapshot_date`
are read (cleaned lines, and cancellation lines in quarantined_transactions for the return
rate), so the same call at a past snapshot sees exactly what was known on that day.

Columns: customer_id, snapshot_date, then FEATURE_COLUMNS (always present, never NULL, DOUBLE),
then the optional features whose source field is mapped (see `available_optional_features`).

Definitions (s = snapshot date, "order" = distinct order_id of the customer, dated by its
earliest line; windows are `s - N < order_date <= s`):

- recency_days: s - last order date.
- frequency: distinct orders.            monetary: sum of line_total.
- avg_order_value: monetary / frequency.  unique_products: distinct product_id (0 if unmapped).
- tenure_days: s - first order date.      active_days: distinct purchase dates.
- purchase_span_days: last - first order date.
- avg_interpurchase_days: purchase_span_days / (active_days - 1) (mean gap between purchase
  days); a customer with one purchase day has no observed gap yet, and gets tenure_days (the
  open gap so far, a lower bound of the first gap) so the feature is never NULL.
- orders_per_30d: 30 * frequency / max(tenure_days, 30) (tenure floored at 30 days so a
  first-week customer is not read as a daily buyer).
- orders_30d / orders_90d / orders_180d, spend_30d / spend_90d / spend_180d.
- spend_trend: (spend_90d - spend_prev_90d) / (spend_90d + spend_prev_90d), where
  spend_prev_90d is spend in (s-180, s-90]; in [-1, 1], 0 when both windows are empty.
- return_rate: cancellation lines of the customer in quarantined_transactions (reason
  'cancellation', order_date <= s) / cleaned lines; 0 when that table does not exist.

Optional (only when the source provides the field):
- price_index (product_id, quantity, unit_price): what the customer paid relative to the typical
  price, sum(line_total) / sum(quantity * median unit price of that product over all cleaned
  lines up to s). 1 = typical prices, 0.8 = paid 20% below the product's median price.
- discount_line_share (discount): share of the customer's lines with discount > 0. The share of
  discounted lines, not an amount: sources disagree on whether `discount` is money or a rate.
- store_visits (store_id): distinct (store_id, purchase date) pairs.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict

import duckdb
import pandas as pd

from customer_assets.common.db import table_exists

FEATURE_COLUMNS = [
    "recency_days",
    "frequency",
    "monetary",
    "avg_order_value",
    "unique_products",
    "tenure_days",
    "active_days",
    "avg_interpurchase_days",
    "purchase_span_days",
    "orders_per_30d",
    "orders_30d",
    "orders_90d",
    "orders_180d",
    "spend_30d",
    "spend_90d",
    "spend_180d",
    "spend_trend",
    "return_rate",
]

# optional feature -> the cleaned_transactions fields it needs
OPTIONAL_FEATURES = {
    "price_index": ("product_id", "quantity", "unit_price"),
    "discount_line_share": ("discount",),
    "store_visits": ("store_id",),
}


def _as_date(snapshot_date) -> dt.date:
    if isinstance(snapshot_date, dt.datetime):
        return snapshot_date.date()
    if isinstance(snapshot_date, dt.date):
        return snapshot_date
    if isinstance(snapshot_date, pd.Timestamp):
        return snapshot_date.date()
    if isinstance(snapshot_date, str):
        return dt.date.fromisoformat(snapshot_date[:10])
    raise TypeError(f"snapshot_date must be a date or 'YYYY-MM-DD', got {snapshot_date!r}")


def customer_features_sql(
    snapshot_date,
    *,
    optional: tuple | list = (),
    with_returns: bool = True,
    source_table: str = "cleaned_transactions",
) -> str:
    """The SELECT that computes the features at `snapshot_date`.

    `optional`: names from OPTIONAL_FEATURES to add (the caller checks the fields are mapped;
    `compute_customer_features` does). `with_returns`: read quarantined_transactions for the
    return rate (False when that table does not exist: return_rate is 0).
    """
    s = _as_date(snapshot_date)
    unknown = set(optional) - set(OPTIONAL_FEATURES)
    if unknown:
        raise ValueError(f"unknown optional features {sorted(unknown)}; known: {sorted(OPTIONAL_FEATURES)}")
    snap = f"DATE '{s.isoformat()}'"
    returns_cte = (
        f"""SELECT customer_id, count(*) AS n_return_lines
            FROM quarantined_transactions
            WHERE reason = 'cancellation' AND customer_id IS NOT NULL AND order_date <= {snap}
            GROUP BY customer_id"""
        if with_returns
        else "SELECT CAST(NULL AS VARCHAR) AS customer_id, CAST(0 AS BIGINT) AS n_return_lines WHERE false"
    )
    line_extra, select_extra, price_cte, price_join = [], [], "", ""
    if "discount_line_share" in optional:
        line_extra.append("avg(CASE WHEN discount > 0 THEN 1.0 ELSE 0.0 END) AS discount_line_share")
        select_extra.append("CAST(coalesce(l.discount_line_share, 0) AS DOUBLE) AS discount_line_share")
    if "store_visits" in optional:
        line_extra.append("count(DISTINCT (store_id, order_date)) FILTER (WHERE store_id IS NOT NULL) AS store_visits")
        select_extra.append("CAST(coalesce(l.store_visits, 0) AS DOUBLE) AS store_visits")
    if "price_index" in optional:
        price_cte = """,
product_price AS (
    SELECT product_id, median(unit_price) AS median_price
    FROM tx WHERE product_id IS NOT NULL AND unit_price > 0
    GROUP BY product_id
),
price AS (
    SELECT t.customer_id,
           sum(t.line_total) / nullif(sum(t.quantity * p.median_price), 0) AS price_index
    FROM tx t JOIN product_price p USING (product_id)
    WHERE t.quantity > 0
    GROUP BY t.customer_id
)"""
        price_join = "LEFT JOIN price pr ON pr.customer_id = c.customer_id"
        select_extra.append("CAST(coalesce(pr.price_index, 1.0) AS DOUBLE) AS price_index")
    line_cols = "".join(f",\n           {x}" for x in line_extra)
    extra_cols = "".join(f",\n       {x}" for x in select_extra)

    return f"""
WITH tx AS (
    SELECT * FROM {source_table}
    WHERE order_date <= {snap} AND customer_id IS NOT NULL
),
orders AS (
    SELECT customer_id, order_id, min(order_date) AS order_date, sum(coalesce(line_total, 0)) AS order_value
    FROM tx GROUP BY customer_id, order_id
),
cust AS (
    SELECT customer_id,
           count(*) AS frequency,
           sum(order_value) AS monetary,
           min(order_date) AS first_date,
           max(order_date) AS last_date,
           count(DISTINCT order_date) AS active_days,
           count(*) FILTER (WHERE order_date > {snap} - 30) AS orders_30d,
           count(*) FILTER (WHERE order_date > {snap} - 90) AS orders_90d,
           count(*) FILTER (WHERE order_date > {snap} - 180) AS orders_180d,
           coalesce(sum(order_value) FILTER (WHERE order_date > {snap} - 30), 0) AS spend_30d,
           coalesce(sum(order_value) FILTER (WHERE order_date > {snap} - 90), 0) AS spend_90d,
           coalesce(sum(order_value) FILTER (WHERE order_date > {snap} - 180), 0) AS spend_180d,
           coalesce(sum(order_value) FILTER (WHERE order_date > {snap} - 180 AND order_date <= {snap} - 90), 0)
               AS spend_prev_90d
    FROM orders GROUP BY customer_id
),
lines AS (
    SELECT customer_id, count(*) AS n_lines, count(DISTINCT product_id) AS unique_products{line_cols}
    FROM tx GROUP BY customer_id
),
returns AS (
    {returns_cte}
){price_cte}
SELECT c.customer_id,
       {snap} AS snapshot_date,
       CAST(date_diff('day', c.last_date, {snap}) AS DOUBLE) AS recency_days,
       CAST(c.frequency AS DOUBLE) AS frequency,
       CAST(c.monetary AS DOUBLE) AS monetary,
       CAST(c.monetary / c.frequency AS DOUBLE) AS avg_order_value,
       CAST(l.unique_products AS DOUBLE) AS unique_products,
       CAST(date_diff('day', c.first_date, {snap}) AS DOUBLE) AS tenure_days,
       CAST(c.active_days AS DOUBLE) AS active_days,
       CAST(CASE WHEN c.active_days > 1
                 THEN date_diff('day', c.first_date, c.last_date) / (c.active_days - 1)
                 ELSE date_diff('day', c.first_date, {snap}) END AS DOUBLE) AS avg_interpurchase_days,
       CAST(date_diff('day', c.first_date, c.last_date) AS DOUBLE) AS purchase_span_days,
       CAST(30.0 * c.frequency / greatest(date_diff('day', c.first_date, {snap}), 30) AS DOUBLE) AS orders_per_30d,
       CAST(c.orders_30d AS DOUBLE) AS orders_30d,
       CAST(c.orders_90d AS DOUBLE) AS orders_90d,
       CAST(c.orders_180d AS DOUBLE) AS orders_180d,
       CAST(c.spend_30d AS DOUBLE) AS spend_30d,
       CAST(c.spend_90d AS DOUBLE) AS spend_90d,
       CAST(c.spend_180d AS DOUBLE) AS spend_180d,
       CAST(coalesce((c.spend_90d - c.spend_prev_90d) / nullif(c.spend_90d + c.spend_prev_90d, 0), 0)
            AS DOUBLE) AS spend_trend,
       CAST(coalesce(r.n_return_lines, 0) / l.n_lines AS DOUBLE) AS return_rate{extra_cols}
FROM cust c
JOIN lines l ON l.customer_id = c.customer_id
LEFT JOIN returns r ON r.customer_id = c.customer_id
{price_join}
ORDER BY c.customer_id
"""


def available_optional_features(con: duckdb.DuckDBPyConnection, source_table: str = "cleaned_transactions") -> list:
    """Optional features whose fields the source maps (at least one non-NULL value)."""
    counts = con.execute(
        "SELECT " + ", ".join(f"count({f}) > 0" for f in ("product_id", "quantity", "unit_price", "discount", "store_id"))
        + f" FROM {source_table}"
    ).fetchone()
    have = dict(zip(("product_id", "quantity", "unit_price", "discount", "store_id"), counts))
    return [name for name, fields in OPTIONAL_FEATURES.items() if all(have[f] for f in fields)]


def features_query(con: duckdb.DuckDBPyConnection, snapshot_date) -> str:
    """`customer_features_sql` with the optional features and return rate this warehouse supports."""
    if not table_exists(con, "cleaned_transactions"):
        raise ValueError("cleaned_transactions does not exist: materialize the ingestion stage first")
    return customer_features_sql(
        snapshot_date,
        optional=available_optional_features(con),
        with_returns=table_exists(con, "quarantined_transactions"),
    )


def compute_customer_features(con: duckdb.DuckDBPyConnection, snapshot_date) -> pd.DataFrame:
    """One row per customer with >= 1 cleaned order on or before `snapshot_date`.

    Columns: customer_id, snapshot_date, FEATURE_COLUMNS, then available optional features.
    Results are cached in-process (see `_cache_key`): churn, LTV, drift and scoring ask for the same
    snapshots of the same data within one run, and each query scans every transaction line.
    """
    query = features_query(con, snapshot_date)
    key = _cache_key(con, query)
    if key is not None and key in _FEATURE_CACHE:
        _FEATURE_CACHE.move_to_end(key)
        return _FEATURE_CACHE[key].copy()
    df = con.execute(query).df()
    if key is not None:
        _FEATURE_CACHE[key] = df.copy()
        while len(_FEATURE_CACHE) > _FEATURE_CACHE_SIZE:
            _FEATURE_CACHE.popitem(last=False)
    return df


_FEATURE_CACHE: "OrderedDict" = OrderedDict()
_FEATURE_CACHE_SIZE = 16


def _cache_key(con: duckdb.DuckDBPyConnection, query: str):
    """(database file, fingerprint of the input tables, query), or None when not cacheable.

    The fingerprint (row count, money total and latest date of cleaned_transactions, row count of
    quarantined_transactions) changes whenever the data does, at the cost of one cheap scan."""
    path = con.execute(
        "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchone()[0]
    if not path:  # in-memory databases are not cached
        return None
    fingerprint = con.execute(
        "SELECT count(*), sum(line_total), max(order_datetime) FROM cleaned_transactions"
    ).fetchone()
    quarantined = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'quarantined_transactions'"
    ).fetchone()[0]
    q_rows = con.execute("SELECT count(*) FROM quarantined_transactions").fetchone()[0] if quarantined else None
    return (path, fingerprint, q_rows, query)
