"""Loyalty tiers: a value-ranked rule.

Rule (documented in docs/customers.md, thresholds in settings):
1. Qualifying spend = the customer's spend in the `window_days` (default 365) days up to as_of,
   as in a yearly tier review (SQL on cleaned_transactions: `as_of - window < order_date <= as_of`).
   It is summed exactly (amounts rounded to 1e-6, summed as DECIMAL): a sum of doubles depends on
   the order DuckDB adds them in, which differs run to run, so customers with the same spend could
   get ranks one apart and, at a cut, different tiers.
2. Customers are ranked by qualifying spend, highest first. A customer's position is
   `(rank - 1) / n` with the SQL `rank()` of its spend (ties share the position of the first of
   them, so equal spend always means equal tier).
3. position < platinum_share is Platinum; < platinum + gold is Gold; < platinum + gold + silver
   is Silver; else Bronze. No qualifying spend at all is Bronze whatever the position.
Rewards come from settings.LOYALTY_REWARDS (the seed specification's table).
"""

from __future__ import annotations

import datetime as dt
from typing import Optional

import pandas as pd

from customer_assets.settings import LOYALTY_REWARDS

TIERS = ["Platinum", "Gold", "Silver", "Bronze"]


def qualifying_spend_sql(as_of: dt.date, window_days: int, order_days: Optional[str] = None) -> str:
    """Per customer (every customer with an order up to as_of): spend in the window. From
    cleaned_transactions (the definition), or, when `order_days` names the feature base's
    order_days table (one row per customer x order x day, order_value = sum(coalesce(line_total,
    0)) of its lines), from that ~20x smaller table: the same customers and the same line totals
    (a missing line_total counts 0 either way). Amounts are summed as DECIMAL(38, 6) (exact, so
    equal spend is equal to the bit whatever the summation order; both sources give the same
    values when amounts have at most 6 decimals, as money does)."""
    if int(window_days) <= 0:
        raise ValueError(f"loyalty window must be positive, got {window_days}")
    snap = f"DATE '{as_of.isoformat()}'"
    src, money = (order_days, "order_value") if order_days else ("cleaned_transactions", "line_total")
    return f"""
SELECT customer_id,
       CAST(coalesce(sum(CAST({money} AS DECIMAL(38, 6)))
                     FILTER (WHERE order_date > {snap} - {int(window_days)}), 0) AS DOUBLE)
           AS qualifying_spend
FROM {src}
WHERE order_date <= {snap} AND customer_id IS NOT NULL
GROUP BY customer_id
ORDER BY customer_id
"""


def assign_tiers(spend: pd.DataFrame, platinum: float, gold: float, silver: float) -> pd.DataFrame:
    """customer_id, qualifying_spend -> + value_rank, tier, reward."""
    if min(platinum, gold, silver) < 0 or platinum + gold + silver > 1:
        raise ValueError(f"tier shares must be >= 0 and sum to <= 1, got {platinum}, {gold}, {silver}")
    df = spend[["customer_id", "qualifying_spend"]].copy()
    n = len(df)
    rank = df["qualifying_spend"].rank(method="min", ascending=False)
    position = (rank - 1) / max(n, 1)
    cuts = [platinum, platinum + gold, platinum + gold + silver]
    tier = pd.Series("Bronze", index=df.index)
    for name, cut in zip(reversed(TIERS[:3]), reversed(cuts)):
        tier[position < cut] = name
    tier[df["qualifying_spend"] <= 0] = "Bronze"
    df["value_rank"] = rank.astype("int64")
    df["tier"] = tier
    df["reward"] = df["tier"].map(LOYALTY_REWARDS)
    if df["customer_id"].is_monotonic_increasing:  # already in order (qualifying_spend_sql sorts)
        return df.reset_index(drop=True)
    return df.sort_values("customer_id").reset_index(drop=True)


def tier_validation(tiers: pd.DataFrame, max_platinum_share: float = 0.10) -> dict:
    """Median monetary strictly decreasing Platinum > Gold > Silver > Bronze (over the tiers that
    have members), and Platinum <= max_platinum_share of customers."""
    n = len(tiers)
    medians = tiers.groupby("tier")["monetary"].median()
    present = [t for t in TIERS if t in medians.index]
    values = [float(medians[t]) for t in present]
    decreasing = all(a > b for a, b in zip(values, values[1:]))
    platinum_share = float((tiers["tier"] == "Platinum").sum() / n) if n else 0.0
    return {
        "passed": bool(decreasing and platinum_share <= max_platinum_share and len(present) >= 2),
        "median_monetary": {t: v for t, v in zip(present, values)},
        "empty_tiers": [t for t in TIERS if t not in present],
        "median_strictly_decreasing": bool(decreasing),
        "platinum_share": platinum_share,
        "max_platinum_share": max_platinum_share,
    }
