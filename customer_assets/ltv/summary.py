"""The per-customer summary the probabilistic CLV models need, in DuckDB SQL.

Definitions (the ones of Fader, Hardie & Lee 2005 and of
`lifetimes.utils.summary_data_from_transaction_data(..., freq="D")`, with recency and T then
divided by 7 so the time unit is the week):

- a purchase is a customer's purchase DAY (all orders of one day are one purchase; its value is
  the day's summed line_total), observed when `order_date <= end`.
- frequency: number of purchase days after the first one (repeat purchases).
- recency: weeks from the first to the last purchase day (0 for one-time buyers).
- T: weeks from the first purchase day to `end`.
- monetary_value: mean value of the repeat purchase days (the first day excluded); 0 when there
  is no repeat purchase.

`holdout_sql` gives what each customer did in the window `end < order_date <= holdout_end`:
purchase days and revenue, for evaluating predictions made at `end`.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd

from customer_assets.common.db import quote_ident

SUMMARY_COLUMNS = ["customer_id", "frequency", "recency", "T", "monetary_value", "first_purchase", "historical_spend"]


def _date_literal(d) -> str:
    if isinstance(d, (dt.datetime, pd.Timestamp)):
        d = d.date()
    elif isinstance(d, str):
        d = dt.date.fromisoformat(d[:10])
    return f"DATE '{d.isoformat()}'"


def summary_sql(end, source_table: str = "cleaned_transactions") -> str:
    """One row per customer with >= 1 purchase on or before `end` (see module docstring).

    Extra columns: first_purchase (date) and historical_spend (all value up to `end`, first day
    included)."""
    e = _date_literal(end)
    return _summary_of_days(e, f"""
    SELECT customer_id, order_date AS day, sum(coalesce(line_total, 0)) AS value
    FROM {quote_ident(source_table)}
    WHERE customer_id IS NOT NULL AND order_date <= {e}
    GROUP BY customer_id, order_date""")


def summary_from_order_days_sql(end, order_days: str) -> str:
    """`summary_sql` read from the feature base's order_days table (customers.features: one row per
    customer, order and day with the order's summed line_total; customers without an id are not in
    it), instead of every line: at N=20 a few hundred thousand rows instead of 8 million. The
    values are the line sums added up in another order, so money can differ in the last bits."""
    e = _date_literal(end)
    return _summary_of_days(e, f"""
    SELECT customer_id, order_date AS day, sum(order_value) AS value
    FROM {order_days}
    WHERE order_date <= {e}
    GROUP BY customer_id, order_date""")


def _summary_of_days(e: str, days: str) -> str:
    """The summary at date literal `e` from `days`: a SELECT of (customer_id, day, value), one row
    per customer and purchase day up to `e`."""
    return f"""
WITH days AS ({days}
),
firsts AS (  -- a join to the first days: cheaper than min(day) OVER (PARTITION BY customer_id)
    SELECT customer_id, min(day) AS first_day FROM days GROUP BY customer_id
)
SELECT customer_id,
       CAST(count(*) - 1 AS DOUBLE) AS frequency,
       date_diff('day', min(day), max(day)) / 7.0 AS recency,
       date_diff('day', min(day), {e}) / 7.0 AS "T",
       CAST(coalesce(avg(value) FILTER (WHERE day > first_day), 0) AS DOUBLE) AS monetary_value,
       min(day) AS first_purchase,
       CAST(sum(value) AS DOUBLE) AS historical_spend
FROM days JOIN firsts USING (customer_id)
GROUP BY customer_id
ORDER BY customer_id
"""


def compute_summary(con: duckdb.DuckDBPyConnection, end, source_table: str = "cleaned_transactions") -> pd.DataFrame:
    return con.execute(summary_sql(end, source_table)).df()


def summary_from_feature_base(con: duckdb.DuckDBPyConnection, end) -> pd.DataFrame:
    """`compute_summary(con, end)` of cleaned_transactions, read from the feature base (built or
    brought up to date first, as for the customer features)."""
    from customer_assets.customers.features import ensure_feature_base

    base = ensure_feature_base(con)
    return con.execute(summary_from_order_days_sql(end, f"{base.prefix}order_days")).df()


def holdout_sql(end, holdout_end, source_table: str = "cleaned_transactions") -> str:
    """Purchase days and revenue per customer in `end < order_date <= holdout_end`
    (only customers with a purchase in that window)."""
    e, h = _date_literal(end), _date_literal(holdout_end)
    return f"""
SELECT customer_id,
       CAST(count(DISTINCT order_date) AS DOUBLE) AS actual_purchases,
       CAST(sum(coalesce(line_total, 0)) AS DOUBLE) AS actual_revenue
FROM {quote_ident(source_table)}
WHERE customer_id IS NOT NULL AND order_date > {e} AND order_date <= {h}
GROUP BY customer_id
"""


def calibration_with_holdout(con, end, holdout_end, source_table: str = "cleaned_transactions") -> pd.DataFrame:
    """The summary at `end` joined with what each of those customers did in the holdout
    (0 when nothing). Customers first seen in the holdout are not included: nothing predicted them."""
    sql = f"""
SELECT s.*, coalesce(h.actual_purchases, 0) AS actual_purchases, coalesce(h.actual_revenue, 0) AS actual_revenue
FROM ({summary_sql(end, source_table)}) s
LEFT JOIN ({holdout_sql(end, holdout_end, source_table)}) h USING (customer_id)
ORDER BY customer_id
"""
    return con.execute(sql).df()
