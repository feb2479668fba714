"""Monthly acquisition cohorts (DuckDB SQL).

A customer's cohort is the month of their first cleaned order. For every cohort and every month
from acquisition up to the as_of month (months with no activity included, as zeros): cohort size,
customers of the cohort with at least one order in that month, retention % (active / size * 100;
100% at month 0 by construction) and the cohort's revenue in that month. The as_of month is
usually partial (Online Retail ends on 9 December 2011), so its retention reads low.
"""

from __future__ import annotations

import datetime as dt
from typing import Optional

import pandas as pd


def cohort_retention_sql(as_of: dt.date, order_days: Optional[str] = None) -> str:
    """The cohort table up to `as_of`. Read from cleaned_transactions (the definition), or, when
    `order_days` names the feature base's order_days table (customer_id, order_id, order_date,
    order_value = sum(coalesce(line_total, 0)) of the order's lines that day), from that ~20x
    smaller table: the same customer-months and revenue (sums of the same line totals, grouped
    differently, so revenue can differ in the last bits, as repeated runs of either query do)."""
    snap = f"DATE '{as_of.isoformat()}'"
    src, money = (order_days, "order_value") if order_days else ("cleaned_transactions", "coalesce(line_total, 0)")
    # one row per customer x active month first: the cohort (first month) and the month's activity
    # are then read from these rows, not from every line again
    return f"""
WITH customer_months AS (
    SELECT customer_id, CAST(date_trunc('month', order_date) AS DATE) AS month, sum({money}) AS revenue
    FROM {src}
    WHERE order_date <= {snap} AND customer_id IS NOT NULL
    GROUP BY ALL
),
firsts AS (
    SELECT customer_id, min(month) AS cohort_month FROM customer_months GROUP BY customer_id
),
activity AS (
    SELECT f.cohort_month, date_diff('month', f.cohort_month, c.month) AS m,
           count(*) AS active_customers, sum(c.revenue) AS revenue
    FROM customer_months c JOIN firsts f USING (customer_id)
    GROUP BY ALL
),
sizes AS (SELECT cohort_month, count(*) AS cohort_size FROM firsts GROUP BY cohort_month),
grid AS (
    SELECT cohort_month, cohort_size,
           unnest(range(0, date_diff('month', cohort_month, CAST(date_trunc('month', {snap}) AS DATE)) + 1)) AS m
    FROM sizes
)
SELECT g.cohort_month,
       CAST(g.m AS INTEGER) AS months_since_acquisition,
       CAST(g.cohort_size AS INTEGER) AS cohort_size,
       CAST(coalesce(a.active_customers, 0) AS INTEGER) AS active_customers,
       CAST(100.0 * coalesce(a.active_customers, 0) / g.cohort_size AS DOUBLE) AS retention_pct,
       CAST(coalesce(a.revenue, 0) AS DOUBLE) AS revenue
FROM grid g LEFT JOIN activity a ON a.cohort_month = g.cohort_month AND a.m = g.m
ORDER BY g.cohort_month, g.m
"""


def retention_matrix(cohorts: pd.DataFrame) -> pd.DataFrame:
    """cohort_month x months_since_acquisition -> retention_pct (NaN where not yet observable)."""
    return cohorts.pivot(index="cohort_month", columns="months_since_acquisition", values="retention_pct")


def heatmap(cohorts: pd.DataFrame):
    """A matplotlib figure of the retention matrix."""
    from customer_assets.common.plotting import plt

    mat = retention_matrix(cohorts)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * max(mat.shape[1], 1), 1.0 + 0.45 * max(mat.shape[0], 1)))
    im = ax.imshow(mat.to_numpy(dtype=float), cmap="YlGnBu", vmin=0, vmax=100, aspect="auto")
    for i in range(mat.shape[0]):
        for j in range(mat.shape[1]):
            v = mat.iat[i, j]
            if pd.notna(v):
                ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7,
                        color="white" if v > 60 else "black")
    ax.set_xticks(range(mat.shape[1]), [str(c) for c in mat.columns])
    ax.set_yticks(range(mat.shape[0]), [pd.Timestamp(c).strftime("%Y-%m") for c in mat.index])
    ax.set_xlabel("months since first purchase")
    ax.set_ylabel("acquisition cohort")
    ax.set_title("Cohort retention (% of cohort with an order in the month)")
    fig.colorbar(im, ax=ax, label="retention %")
    return fig
