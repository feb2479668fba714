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
import hashlib
import inspect
import json
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass

import duckdb
import pandas as pd

from customer_assets.common.data_version import Appended, appended_since, data_fingerprint  # noqa: F401 (re-exported)
from customer_assets.common.db import is_read_only, shared_state, table_exists, transaction

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
    line_cols, extra_cols, price_join = _optional_columns(optional, {
        "discount_line_share": "avg(CASE WHEN discount > 0 THEN 1.0 ELSE 0.0 END)",
        "store_visits": "count(DISTINCT (store_id, order_date)) FILTER (WHERE store_id IS NOT NULL)",
    })
    price_cte = ""
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

    return f"""
WITH tx AS (
    SELECT * FROM {source_table}
    WHERE order_date <= {snap} AND customer_id IS NOT NULL
),
orders AS (
    SELECT customer_id, order_id, min(order_date) AS order_date, sum(coalesce(line_total, 0)) AS order_value
    FROM tx GROUP BY customer_id, order_id
),
{_cust_cte(snap)}lines AS (
    SELECT customer_id, count(*) AS n_lines, count(DISTINCT product_id) AS unique_products{line_cols}
    FROM tx GROUP BY customer_id
),
returns AS (
    {returns_cte}
){price_cte}
{_final_select(snap, extra_cols, price_join)}"""


def _optional_columns(optional, line_exprs: dict) -> tuple:
    """(extra columns of the CTE lines, extra output columns, join of the CTE price) for the
    optional features; `line_exprs` computes discount_line_share / store_visits inside `lines`."""
    line_extra, select_extra, price_join = [], [], ""
    for name in ("discount_line_share", "store_visits"):
        if name in optional:
            line_extra.append(f"{line_exprs[name]} AS {name}")
            select_extra.append(f"CAST(coalesce(l.{name}, 0) AS DOUBLE) AS {name}")
    if "price_index" in optional:
        price_join = "LEFT JOIN price pr ON pr.customer_id = c.customer_id"
        select_extra.append("CAST(coalesce(pr.price_index, 1.0) AS DOUBLE) AS price_index")
    line_cols = "".join(f",\n           {x}" for x in line_extra)
    extra_cols = "".join(f",\n       {x}" for x in select_extra)
    return line_cols, extra_cols, price_join


def _cust_cte(snap: str) -> str:
    """Per-customer order aggregates from the CTE `orders` (customer_id, order_id, order_date, order_value)."""
    return f"""cust AS (
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
"""


def _final_select(snap: str, extra_cols: str, price_join: str) -> str:
    """The output row per customer from the CTEs cust, lines, returns (and price when joined)."""
    return f"""SELECT c.customer_id,
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


_OPTIONAL_FIELDS = ("product_id", "quantity", "unit_price", "discount", "store_id")


def _fields_present(con: duckdb.DuckDBPyConnection, source_table: str = "cleaned_transactions",
                    where: str = "true") -> dict:
    """field -> whether it has at least one non-NULL value (in the rows matching `where`)."""
    counts = con.execute(
        "SELECT " + ", ".join(f"count({f}) > 0" for f in _OPTIONAL_FIELDS) + f" FROM {source_table} WHERE {where}"
    ).fetchone()
    return dict(zip(_OPTIONAL_FIELDS, (bool(c) for c in counts)))


def _optional_from_fields(have: dict) -> list:
    return [name for name, fields in OPTIONAL_FEATURES.items() if all(have[f] for f in fields)]


def available_optional_features(con: duckdb.DuckDBPyConnection, source_table: str = "cleaned_transactions") -> list:
    """Optional features whose fields the source maps (at least one non-NULL value)."""
    return _optional_from_fields(_fields_present(con, source_table))


# --- compact base tables -------------------------------------------------------------------------
#
# `customer_features_sql` above is the definition: it scans every cleaned line up to the snapshot,
# several seconds per snapshot at 10M lines, and a run asks for ~10 snapshots. The fast path reads
# small tables built once per data version instead, all at day grain or finer, so filtering them on
# `order_date <= s` sees exactly the lines dated on or before s (no leakage by construction):
#
#   order_days    (customer_id, order_id, order_date, order_value)    ~ one row per order
#   customer_days (customer_id, order_date, n_lines, n_discount_lines[, n_stores][, priced_total],
#                 n_new_products)
#                 n_new_products: products the customer bought for the first time that day, so their
#                 sum up to s is count(DISTINCT product_id); n_stores: distinct stores that day, so
#                 the sum is count(DISTINCT (store_id, order_date)); priced_total: line_total of the
#                 day's lines with quantity > 0, a product and unit_price > 0 (price_index numerator)
#   return_days   (customer_id, order_date, n_return_lines)           cancellations (quarantine)
#   line_keys     (ckey, pkey, order_date[, quantity, unpriced_total]) every line with a product,
#                 integer keys: the only table at line grain (first purchases; price_index); narrow,
#                 so writing and scanning it is cheap
#   price_hist    (pkey, unit_price, order_date, n)                   unit-price histogram: the
#                 median per product up to s is read from it (quantile_cont, as DuckDB's median)
#   customers / products: the integer keys.   meta: the fingerprint and build id.
#
# They live in schema `feature_base` of the warehouse (not in `main`, where every table is an
# asset), or as TEMP tables on a read-only connection. When the fingerprint of cleaned_transactions /
# quarantined_transactions differs from the one they were built from, they are updated from the
# appended rows when ingestion only appended since (`_append_statements`), else rebuilt.

BASE_SCHEMA = "feature_base"


@dataclass(frozen=True)
class FeatureBase:
    prefix: str           # "feature_base." or "temp.main.feature_base_"
    build_id: str         # new for every build: the in-process cache key
    optional: tuple       # optional features available in this data version
    with_returns: bool


def _base_exists(con, prefix: str) -> bool:
    """Whether the meta table of the base at `prefix` exists (looked up in the catalog: a missing
    table must not fall through to a Python replacement scan)."""
    if prefix.startswith("temp."):
        return con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = 'temp' AND table_name = 'feature_base_meta'"
        ).fetchone()[0] > 0
    return table_exists(con, "meta", schema=BASE_SCHEMA)


def _base_prefix(con) -> str:
    return "temp.main.feature_base_" if is_read_only(con) else f"{BASE_SCHEMA}."


def _row_selects(p: str, src: str, returns_src: str, optional, int_quantity: bool) -> dict:
    """The SELECTs of the tables whose rows are computed from the lines of `src` (cancellations of
    `returns_src`) alone: the build runs them on every line, an update on the appended ones."""
    price_cols = ""
    if "price_index" in optional:
        price_cols = (f", {'CAST(t.quantity AS INTEGER)' if int_quantity else 't.quantity'} AS quantity, "
                      "CASE WHEN t.unit_price > 0 THEN NULL ELSE t.line_total END AS unpriced_total")
    return {
        "line_keys": f"""SELECT c.ckey, k.pkey, t.order_date{price_cols}
            FROM {src} t JOIN {p}customers c ON c.customer_id = t.customer_id
            JOIN {p}products k ON k.product_id = t.product_id""",
        "order_days": f"""SELECT customer_id, order_id, order_date, sum(coalesce(line_total, 0)) AS order_value
            FROM {src} WHERE customer_id IS NOT NULL
            GROUP BY customer_id, order_id, order_date""",
        "return_days": f"""SELECT customer_id, order_date, count(*) AS n_return_lines FROM {returns_src}
            WHERE reason = 'cancellation' AND customer_id IS NOT NULL
            GROUP BY customer_id, order_date""",
        "price_hist": f"""SELECT k.pkey, h.unit_price, h.order_date, h.n
                FROM (SELECT product_id, unit_price, order_date, count(*) AS n FROM {src}
                      WHERE customer_id IS NOT NULL AND product_id IS NOT NULL AND unit_price > 0
                      GROUP BY product_id, unit_price, order_date) h
                JOIN {p}products k ON k.product_id = h.product_id""",
    }


_PRICED_TOTAL = (", sum(line_total) FILTER (WHERE quantity > 0 AND product_id IS NOT NULL AND unit_price > 0)"
                 " AS priced_total")


def _build_statements(p: str, optional, with_returns: bool, int_quantity: bool = False) -> list:
    src = "cleaned_transactions"
    temp = "TEMP " if p.startswith("temp.") else ""
    stores = "store_visits" in optional
    sel = _row_selects(p, src, "quarantined_transactions", optional, int_quantity)
    priced_total = _PRICED_TOTAL if "price_index" in optional else ""
    stmts = [
        f"""CREATE OR REPLACE {temp}TABLE {p}customers AS
            SELECT customer_id, CAST(row_number() OVER (ORDER BY customer_id) AS INTEGER) AS ckey
            FROM (SELECT DISTINCT customer_id FROM {src} WHERE customer_id IS NOT NULL)""",
        f"""CREATE OR REPLACE {temp}TABLE {p}products AS
            SELECT product_id, CAST(row_number() OVER (ORDER BY product_id) AS INTEGER) AS pkey
            FROM (SELECT DISTINCT product_id FROM {src} WHERE product_id IS NOT NULL)""",
        # every line with a product, narrow and with integer keys: a projection, not an aggregate
        # (grouping by customer x product x day removes 2% of the rows and costs 3x the build time).
        # Writing it is most of its cost (N=20, 7.8M rows: ~0.35 CPU s per DOUBLE column), so it
        # carries only what its readers need: the first purchases read (ckey, pkey, order_date);
        # price_index adds quantity (INTEGER when every quantity is a whole number in range: the
        # same products with the median) and line_total only where unit_price is NULL or <= 0.
        # A line with unit_price > 0 prices its own product, so it always joins the medians: its
        # line_total is summed per day in customer_days (priced_total) instead.
        f"CREATE OR REPLACE {temp}TABLE {p}line_keys AS {sel['line_keys']}",
        f"CREATE OR REPLACE {temp}TABLE {p}order_days AS {sel['order_days']}",
        f"""CREATE OR REPLACE {temp}TABLE {p}customer_days AS
            WITH firsts AS (
                SELECT c.customer_id, f.order_date, f.n_new_products
                FROM (SELECT CAST(cp >> 32 AS INTEGER) AS ckey, order_date, count(*) AS n_new_products
                      -- one BIGINT key per (customer, product): 25% cheaper than grouping by two
                      FROM (SELECT (CAST(ckey AS BIGINT) << 32) + pkey AS cp, min(order_date) AS order_date
                            FROM {p}line_keys GROUP BY cp)
                      GROUP BY 1, order_date) f
                JOIN {p}customers c ON c.ckey = f.ckey
            ),
            days AS (
                SELECT customer_id, order_date, count(*) AS n_lines,
                       count(*) FILTER (WHERE discount > 0) AS n_discount_lines
                       {", count(DISTINCT store_id) AS n_stores" if stores else ""}
                       {priced_total}
                FROM {src} WHERE customer_id IS NOT NULL GROUP BY customer_id, order_date
            )
            SELECT d.*, coalesce(f.n_new_products, 0) AS n_new_products
            FROM days d LEFT JOIN firsts f
              ON f.customer_id = d.customer_id AND f.order_date IS NOT DISTINCT FROM d.order_date""",
        f"CREATE OR REPLACE {temp}TABLE {p}return_days AS {sel['return_days']}"
        if with_returns else
        f"""CREATE OR REPLACE {temp}TABLE {p}return_days AS
            SELECT CAST(NULL AS VARCHAR) AS customer_id, CAST(NULL AS DATE) AS order_date,
                   CAST(0 AS BIGINT) AS n_return_lines WHERE false""",
    ]
    if "price_index" in optional:
        stmts.append(f"CREATE OR REPLACE {temp}TABLE {p}price_hist AS {sel['price_hist']}")
    return stmts


def _whole_quantities(con, optional, where: str = "true") -> bool:
    """Whether line_keys can store quantity as INTEGER without changing a value: every non-NULL
    quantity is a whole number within INTEGER range (then INTEGER * DOUBLE = the DOUBLE product).
    `where`: only these rows (the appended ones, for an incremental update)."""
    if "price_index" not in optional:
        return False
    return bool(con.execute(
        "SELECT coalesce(bool_and(quantity = round(quantity) AND abs(quantity) < 2147483647), true) "
        f"FROM cleaned_transactions WHERE {where}").fetchone()[0])


def _append_statements(p: str, optional, with_returns: bool, int_quantity: bool, cleaned_start: int) -> list:
    """The statements that add the rows of the TEMP table __feature_base_delta (the lines appended to
    cleaned_transactions, rowid >= `cleaned_start`) and __feature_base_delta_returns (the appended
    cancellations) to the base tables, so that they give what `_build_statements` gives on all lines.

    fast_features_sql re-aggregates every table (sums, mins, counts of rows), so partial aggregates of
    the new lines are appended as extra rows, except for the two distinct counts of customer_days:
    - n_new_products: a (customer, product) pair first bought in the new lines counts +1 on its first
      new date; when the new lines predate the pair's first purchase in the old lines (late data), the
      first purchase moves: -1 on the old date, +1 on the new one (read from line_keys before the new
      lines are added to it);
    - n_stores: a store of a customer-day counts only if no old line of that customer-day has it.
    New customers and products get keys after the existing ones (keys are only joined on, never
    ordered by)."""
    d, r = "temp.main.__feature_base_delta", "temp.main.__feature_base_delta_returns"
    stores = "store_visits" in optional
    priced = "price_index" in optional
    sel = _row_selects(p, d, r, optional, int_quantity)
    cp = "(CAST(ckey AS BIGINT) << 32) + pkey"
    stmts = [
        f"""INSERT INTO {p}customers
            SELECT customer_id, CAST((SELECT coalesce(max(ckey), 0) FROM {p}customers)
                                     + row_number() OVER (ORDER BY customer_id) AS INTEGER)
            FROM (SELECT DISTINCT customer_id FROM {d} WHERE customer_id IS NOT NULL) n
            WHERE NOT EXISTS (SELECT 1 FROM {p}customers c WHERE c.customer_id = n.customer_id)""",
        f"""INSERT INTO {p}products
            SELECT product_id, CAST((SELECT coalesce(max(pkey), 0) FROM {p}products)
                                    + row_number() OVER (ORDER BY product_id) AS INTEGER)
            FROM (SELECT DISTINCT product_id FROM {d} WHERE product_id IS NOT NULL) n
            WHERE NOT EXISTS (SELECT 1 FROM {p}products k WHERE k.product_id = n.product_id)""",
        # the new lines with their keys (line_keys rows, and the pairs for n_new_products)
        f"CREATE OR REPLACE TEMP TABLE __feature_base_delta_keys AS {sel['line_keys']}",
        # first purchase moves of the pairs in the new lines, read from line_keys BEFORE they are added
        f"""CREATE OR REPLACE TEMP TABLE __feature_base_delta_firsts AS
            WITH new AS (SELECT {cp} AS cp, min(order_date) AS d_new
                         FROM temp.main.__feature_base_delta_keys GROUP BY cp),
                 old AS (SELECT cp, min(order_date) AS d_old
                         FROM (SELECT {cp} AS cp, order_date FROM {p}line_keys
                               WHERE ckey IN (SELECT DISTINCT CAST(cp >> 32 AS INTEGER) FROM new)) l
                         SEMI JOIN new USING (cp) GROUP BY cp),
                 moves AS (SELECT n.cp, n.d_new AS order_date, 1 AS n FROM new n LEFT JOIN old o USING (cp)
                           WHERE o.d_old IS NULL OR n.d_new < o.d_old
                           UNION ALL
                           SELECT n.cp, o.d_old, -1 FROM new n JOIN old o USING (cp) WHERE n.d_new < o.d_old)
            SELECT c.customer_id, m.order_date, CAST(sum(m.n) AS BIGINT) AS n_new_products
            FROM moves m JOIN {p}customers c ON c.ckey = CAST(m.cp >> 32 AS INTEGER)
            GROUP BY c.customer_id, m.order_date""",
        f"""INSERT INTO {p}line_keys SELECT * FROM temp.main.__feature_base_delta_keys""",
        f"INSERT INTO {p}order_days {sel['order_days']}",
    ]
    store_cte, store_join, store_col, store_zero = "", "", "", ""
    if stores:
        # stores of the new lines per customer-day that no old line (rowid < cleaned_start) of that
        # customer-day has; the old lines are read only on the new lines' dates
        store_cte = f""",
            new_stores AS (SELECT DISTINCT customer_id, order_date, store_id FROM {d}
                           WHERE customer_id IS NOT NULL AND store_id IS NOT NULL),
            old_stores AS (SELECT DISTINCT customer_id, order_date, store_id FROM cleaned_transactions
                           WHERE rowid < {int(cleaned_start)} AND customer_id IS NOT NULL AND store_id IS NOT NULL
                             AND order_date BETWEEN (SELECT min(order_date) FROM new_stores)
                                                AND (SELECT max(order_date) FROM new_stores)),
            store_counts AS (SELECT customer_id, order_date, count(*) AS n_stores
                             FROM (SELECT * FROM new_stores EXCEPT SELECT * FROM old_stores)
                             GROUP BY customer_id, order_date)"""
        store_join = ("LEFT JOIN store_counts s ON s.customer_id = d.customer_id "
                      "AND s.order_date IS NOT DISTINCT FROM d.order_date")
        store_col = ", coalesce(s.n_stores, 0) AS n_stores"
        store_zero = ", 0 AS n_stores"
    priced_col = _PRICED_TOTAL if priced else ""
    stmts.append(
        f"""INSERT INTO {p}customer_days
            WITH days AS (
                SELECT customer_id, order_date, count(*) AS n_lines,
                       count(*) FILTER (WHERE discount > 0) AS n_discount_lines{priced_col}
                FROM {d} WHERE customer_id IS NOT NULL GROUP BY customer_id, order_date
            ){store_cte}
            SELECT d.customer_id, d.order_date, d.n_lines, d.n_discount_lines{store_col}
                   {", d.priced_total" if priced else ""}, coalesce(f.n_new_products, 0) AS n_new_products
            FROM days d {store_join}
            LEFT JOIN temp.main.__feature_base_delta_firsts f
              ON f.customer_id = d.customer_id AND f.order_date IS NOT DISTINCT FROM d.order_date
            UNION ALL
            -- moved first purchases on days without new lines: a row that only carries the -1
            SELECT f.customer_id, f.order_date, 0, 0{store_zero}{", NULL" if priced else ""}, f.n_new_products
            FROM temp.main.__feature_base_delta_firsts f
            WHERE NOT EXISTS (SELECT 1 FROM days d WHERE d.customer_id = f.customer_id
                                                     AND d.order_date IS NOT DISTINCT FROM f.order_date)""")
    if with_returns:
        stmts.append(f"INSERT INTO {p}return_days {sel['return_days']}")
    if priced:
        stmts.append(f"INSERT INTO {p}price_hist {sel['price_hist']}")
    return stmts


_LAYOUT_VERSION = hashlib.sha256(
    "".join(inspect.getsource(fn) for fn in (_row_selects, _build_statements, _whole_quantities, _append_statements))
    .encode() + _PRICED_TOTAL.encode()).hexdigest()[:16]


def _read_meta(con, p: str):
    """The meta row as a dict, or None (no base, or a meta table of an older format)."""
    if not _base_exists(con, p):
        return None
    cur = con.execute(f"SELECT * FROM {p}meta")
    names = [c[0] for c in cur.description]
    row = cur.fetchone()
    if row is None:
        return None
    meta = dict(zip(names, row))
    if not {"fingerprint", "layout", "build_id", "optional", "with_returns", "fields", "int_quantity"} <= set(meta):
        return None
    return meta


def _write_meta(con, p: str, fingerprint: str, build_id: str, optional, with_returns: bool, fields: dict,
                int_quantity: bool, built_by: str, appended_rows: int = 0) -> None:
    con.execute(
        f"CREATE OR REPLACE {'TEMP ' if p.startswith('temp.') else ''}TABLE {p}meta AS "
        "SELECT ? AS fingerprint, ? AS layout, ? AS build_id, ? AS optional, ? AS with_returns, ? AS fields, "
        "? AS int_quantity, ? AS built_by, ? AS appended_rows, now() AS built_at",
        [fingerprint, _LAYOUT_VERSION, build_id, json.dumps(list(optional)), with_returns,
         json.dumps(fields, sort_keys=True), int_quantity, built_by, appended_rows],
    )


def _apply_appended(con, p: str, meta: dict, appended: Appended, fingerprint: str):
    """Update the base built from meta's data with the appended rows only; None when the new rows
    change what a rebuild would build (a field with its first values, so a new optional feature; a
    fractional quantity where line_keys stores INTEGER; quarantine appearing): then rebuild."""
    optional = tuple(json.loads(meta["optional"]))
    with_returns = bool(meta["with_returns"])
    int_quantity = bool(meta["int_quantity"])
    fields = json.loads(meta["fields"])
    if with_returns != table_exists(con, "quarantined_transactions"):
        return None
    new_rows = appended.where("cleaned_transactions")
    if fields != {**fields, **{k: v for k, v in _fields_present(con, where=new_rows).items() if v}}:
        return None
    if int_quantity and not _whole_quantities(con, optional, new_rows):
        return None
    build_id = uuid.uuid4().hex
    cols = "customer_id, order_id, order_date, product_id, quantity, unit_price, line_total, discount, store_id"
    with transaction(con):
        con.execute(f"CREATE OR REPLACE TEMP TABLE __feature_base_delta AS SELECT {cols} "
                    f"FROM cleaned_transactions WHERE {new_rows}")
        if with_returns:
            con.execute("CREATE OR REPLACE TEMP TABLE __feature_base_delta_returns AS "
                        "SELECT customer_id, order_date, reason FROM quarantined_transactions "
                        f"WHERE {appended.where('quarantined_transactions')}")
        for stmt in _append_statements(p, optional, with_returns, int_quantity, appended.cleaned[0]):
            con.execute(stmt)
        for t in ("delta", "delta_returns", "delta_keys", "delta_firsts"):
            con.execute(f"DROP TABLE IF EXISTS temp.main.__feature_base_{t}")
        _write_meta(con, p, fingerprint, build_id, optional, with_returns, fields, int_quantity, "append",
                    (appended.cleaned[1] - appended.cleaned[0]) + (appended.quarantined[1] - appended.quarantined[0]))
    return FeatureBase(p, build_id, optional, with_returns)


def ensure_feature_base(con: duckdb.DuckDBPyConnection) -> FeatureBase:
    """The compact base tables for the current data: reused when built from it, updated from the
    appended rows only when the data is the data they were built from plus incremental appends
    (`common.data_version.appended_since`), else (re)built. One step at a time in this process
    (steps run in threads, executor.py): a second caller finds the base up to date."""
    with shared_state("feature_base"):
        return _ensure_feature_base(con)


def _ensure_feature_base(con: duckdb.DuckDBPyConnection) -> FeatureBase:
    if not table_exists(con, "cleaned_transactions"):
        raise ValueError("cleaned_transactions does not exist: materialize the ingestion stage first")
    p = _base_prefix(con)
    fingerprint = data_fingerprint(con)
    # the layout version is stored too: a base built by an earlier version of the build (or update)
    # statements is rebuilt, not read with the wrong columns
    meta = _read_meta(con, p)
    if meta is not None and meta["layout"] == _LAYOUT_VERSION:
        if meta["fingerprint"] == fingerprint:
            return FeatureBase(p, meta["build_id"], tuple(json.loads(meta["optional"])), bool(meta["with_returns"]))
        appended = appended_since(con, meta["fingerprint"], fingerprint)
        if appended is not None:
            base = _apply_appended(con, p, meta, appended, fingerprint)
            if base is not None:
                return base
    fields = _fields_present(con)
    optional = tuple(_optional_from_fields(fields))
    with_returns = table_exists(con, "quarantined_transactions")
    int_quantity = _whole_quantities(con, optional)
    build_id = uuid.uuid4().hex
    if p.startswith(BASE_SCHEMA):
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {BASE_SCHEMA}")
    # all tables and the meta row in one transaction (the caller's, if one is open)
    with transaction(con):
        for stmt in _build_statements(p, optional, with_returns, int_quantity):
            con.execute(stmt)
        _write_meta(con, p, fingerprint, build_id, optional, with_returns, fields, int_quantity, "rebuild")
    return FeatureBase(p, build_id, optional, with_returns)


def fast_features_sql(base: FeatureBase, snapshot_date) -> str:
    """The same features as `customer_features_sql(snapshot_date, optional=base.optional,
    with_returns=base.with_returns)`, read from the compact base tables (see above)."""
    s = _as_date(snapshot_date)
    snap = f"DATE '{s.isoformat()}'"
    p = base.prefix
    line_cols, extra_cols, price_join = _optional_columns(base.optional, {
        "discount_line_share": "sum(n_discount_lines) / sum(n_lines)",
        "store_visits": "sum(n_stores)",
    })
    price_cte, priced = "", ""
    if "price_index" in base.optional:
        priced = ",\n           sum(priced_total) AS priced_total"
        # median = quantile_cont(0.5): the mean of the values at 0-based positions (n-1)//2 and n//2
        # of the sorted prices; the value at position i is the first price whose running count > i.
        price_cte = f""",
hist AS (
    SELECT pkey, unit_price, sum(n) AS n FROM {p}price_hist WHERE order_date <= {snap} GROUP BY pkey, unit_price
),
cum AS (
    SELECT pkey, unit_price,
           sum(n) OVER (PARTITION BY pkey ORDER BY unit_price ROWS UNBOUNDED PRECEDING) AS running,
           sum(n) OVER (PARTITION BY pkey) AS total
    FROM hist
),
product_price AS (
    SELECT pkey, lo + (hi - lo) * 0.5 AS median_price
    FROM (SELECT pkey,
                 min(unit_price) FILTER (WHERE running > (total - 1) // 2) AS lo,
                 min(unit_price) FILTER (WHERE running > total // 2) AS hi
          FROM cum GROUP BY pkey)
),
price_by_key AS (
    SELECT d.ckey, sum(d.quantity * pp.median_price) AS denominator, sum(d.unpriced_total) AS unpriced_total
    FROM {p}line_keys d JOIN product_price pp ON pp.pkey = d.pkey
    WHERE d.order_date <= {snap} AND d.quantity > 0
    GROUP BY d.ckey
),
-- numerator: sum(line_total) of the lines joined above = priced_total (lines with unit_price > 0,
-- summed per day in customer_days) + unpriced_total (the other lines, kept in line_keys); NULL
-- only when both are NULL, as sum() over the lines
price AS (
    SELECT k.customer_id,
           CASE WHEN l.priced_total IS NULL AND b.unpriced_total IS NULL THEN NULL
                ELSE coalesce(l.priced_total, 0) + coalesce(b.unpriced_total, 0) END
           / nullif(b.denominator, 0) AS price_index
    FROM price_by_key b JOIN {p}customers k ON k.ckey = b.ckey
    JOIN lines l ON l.customer_id = k.customer_id
)"""
    return f"""
WITH orders AS (
    SELECT customer_id, order_id, min(order_date) AS order_date, sum(order_value) AS order_value
    FROM {p}order_days WHERE order_date <= {snap} GROUP BY customer_id, order_id
),
{_cust_cte(snap)}lines AS (
    SELECT customer_id, sum(n_lines) AS n_lines, sum(n_new_products) AS unique_products{line_cols}{priced}
    FROM {p}customer_days WHERE order_date <= {snap} GROUP BY customer_id
),
returns AS (
    SELECT customer_id, sum(n_return_lines) AS n_return_lines
    FROM {p}return_days WHERE order_date <= {snap} GROUP BY customer_id
){price_cte}
{_final_select(snap, extra_cols, price_join)}"""


def features_query(con: duckdb.DuckDBPyConnection, snapshot_date) -> str:
    """The features at `snapshot_date` for this warehouse (its optional features and return rate),
    as a SELECT over the compact base tables, which this builds first when absent or stale."""
    return fast_features_sql(ensure_feature_base(con), snapshot_date)


def reference_features_query(con: duckdb.DuckDBPyConnection, snapshot_date) -> str:
    """`customer_features_sql` (the definition, scanning every line) with this warehouse's options."""
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
    snapshots of the same data within one run.
    """
    return _cached_features(con, snapshot_date)[0].copy()


def write_customer_features(con: duckdb.DuckDBPyConnection, table: str, snapshot_date):
    """Replace `table` with the features at `snapshot_date` (the rows and column types of
    `fast_features_sql`, i.e. `CREATE TABLE AS` the query) from the in-process cache: a run computes
    the snapshot once for this table and the steps that read the frame (churn scoring, LTV, drift).
    Returns (frame, base): the frame is the cached one, not a copy (read it, do not modify it)."""
    from customer_assets.common.db import quote_ident, replace_table

    df, types, base = _cached_features(con, snapshot_date)
    # back to the query's types: DATE comes back from pandas as TIMESTAMP otherwise (NULL and NaN of
    # a DOUBLE column both read back as NULL; the features are never NULL)
    rel = con.from_df(df).project(", ".join(f"CAST({quote_ident(c)} AS {t}) AS {quote_ident(c)}"
                                            for c, t in types.items()))
    replace_table(con, table, rel)
    return df, base


_FEATURE_CACHE: "OrderedDict" = OrderedDict()   # key -> (frame, {column: DuckDB type}); never modified
_FEATURE_CACHE_SIZE = 16
# steps run several at a time in threads of one process (executor.py): every access to the cache holds this
_FEATURE_CACHE_LOCK = threading.Lock()


def _cached_features(con: duckdb.DuckDBPyConnection, snapshot_date) -> tuple:
    """(frame, {column: DuckDB type}, base) of the features at `snapshot_date`; the frame is the
    cached object itself (callers copy it before handing it out)."""
    base = ensure_feature_base(con)
    query = fast_features_sql(base, snapshot_date)
    key = _cache_key(con, base, query)
    if key is not None:
        with _FEATURE_CACHE_LOCK:
            hit = _FEATURE_CACHE.get(key)
            if hit is not None:
                _FEATURE_CACHE.move_to_end(key)
                return (*hit, base)
    cur = con.execute(query)
    types = {d[0]: str(d[1]) for d in cur.description}
    df = cur.df()
    if key is not None:
        with _FEATURE_CACHE_LOCK:
            _FEATURE_CACHE[key] = (df, types)
            _FEATURE_CACHE.move_to_end(key)
            while len(_FEATURE_CACHE) > _FEATURE_CACHE_SIZE:
                _FEATURE_CACHE.popitem(last=False)
    return df, types, base


def _cache_key(con: duckdb.DuckDBPyConnection, base: FeatureBase, query: str):
    """(database file, build id of the base tables, query), or None when not cacheable.

    The build id is new whenever the base tables are rebuilt, i.e. whenever the data fingerprint
    (`data_fingerprint`, checked by `ensure_feature_base` on every call) changed."""
    path = con.execute(
        "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchone()[0]
    if not path:  # in-memory databases are not cached
        return None
    return (path, base.build_id, query)
