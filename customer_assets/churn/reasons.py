"""Top churn reasons in words a marketer reads.

For each customer, the features whose contribution pushes the churn score up the most (see
`CalibratedChurnModel.contributions`), phrased with the customer's own value, e.g.
"No purchase for 143 days" or "Only 1 order so far". Features that pull the score down are never
given as reasons, nor are features on the "safe" side of the median: with correlated features a
linear model can give, say, frequency a positive weight once active days are accounted for, and
"25 orders so far" is no reason a marketer would accept for churn. A feature is a reason only
when its contribution is positive AND the customer's value lies on the side of the training
median where churners are (`directions`, the sign of the feature's rank correlation with churn).
Features telling the same story (recency, orders or spend in the last 30/90/180 days; gap and orders per
month; orders and purchase days; for a one-time buyer frequency, active days, span, gap and orders per month)
give one reason, not three.
A customer with fewer than three such features gets fewer reasons (NULL).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# feature -> (phrase when the value is above the training median, phrase when at/below it)
PHRASES = {
    "recency_days": ("No purchase for {v:.0f} days", "Last purchase {v:.0f} days ago"),
    "gap_ratio": ("Overdue: {v:.1f}x their usual time between purchases", "Buying on their usual rhythm ({v:.1f}x gap)"),
    "frequency": ("{v:.0f} orders so far", "Only {v:.0f} order(s) so far"),
    "monetary": ("Total spend {v:,.0f}", "Low total spend ({v:,.0f})"),
    "avg_order_value": ("Large baskets (average order {v:,.0f})", "Small baskets (average order {v:,.0f})"),
    "unique_products": ("Bought {v:.0f} different products", "Narrow range: only {v:.0f} different products"),
    "tenure_days": ("Long-standing customer ({v:.0f} days)", "New customer: first order {v:.0f} days ago"),
    "active_days": ("Bought on {v:.0f} different days", "Bought on only {v:.0f} day(s)"),
    "avg_interpurchase_days": ("Long gaps between purchases ({v:.0f} days on average)", "Short gaps between purchases ({v:.0f} days)"),
    "purchase_span_days": ("{v:.0f} days between first and last order", "First and last order only {v:.0f} days apart"),
    "orders_per_30d": ("Orders often ({v:.1f} per month)", "Orders rarely ({v:.2f} per month)"),
    "orders_30d": ("{v:.0f} orders in the last 30 days", "Only {v:.0f} order(s) in the last 30 days"),
    "orders_90d": ("{v:.0f} orders in the last 90 days", "Only {v:.0f} order(s) in the last 90 days"),
    "orders_180d": ("{v:.0f} orders in the last 180 days", "Only {v:.0f} order(s) in the last 180 days"),
    "spend_30d": ("Spent {v:,.0f} in the last 30 days", "Spent little in the last 30 days ({v:,.0f})"),
    "spend_90d": ("Spent {v:,.0f} in the last 90 days", "Spent little in the last 90 days ({v:,.0f})"),
    "spend_180d": ("Spent {v:,.0f} in the last 180 days", "Spent little in the last 180 days ({v:,.0f})"),
    "spend_trend": ("Spending grew in the last 90 days", "Spending fell in the last 90 days"),
    "return_rate": ("Returns often ({v:.0%} of lines cancelled)", "Rarely returns ({v:.0%})"),
    "price_index": ("Pays above typical prices ({v:.2f}x)", "Buys at discount prices ({v:.2f}x typical)"),
    "discount_line_share": ("Often buys discounted items ({v:.0%})", "Rarely buys discounted items ({v:.0%})"),
    "store_visits": ("{v:.0f} store visits", "Few store visits ({v:.0f})"),
}

# For a one-purchase customer these all say the same thing: phrased once as "Bought once, N days ago".
ONE_PURCHASE_FEATURES = {"avg_interpurchase_days", "active_days", "frequency", "purchase_span_days", "orders_per_30d"}
# Features that tell the same story: at most one reason per story.
STORIES = {
    **{f: "recent activity" for f in ("recency_days", "orders_30d", "orders_90d", "orders_180d", "spend_30d",
                                      "spend_90d", "spend_180d")},
    "avg_interpurchase_days": "rhythm", "orders_per_30d": "rhythm",
    "frequency": "purchase count", "active_days": "purchase count",
}
# Clearer words when the value is zero.
ZERO_PHRASES = {
    "orders_30d": "No orders in the last 30 days", "orders_90d": "No orders in the last 90 days",
    "orders_180d": "No orders in the last 180 days", "spend_30d": "Nothing bought in the last 30 days",
    "spend_90d": "Nothing bought in the last 90 days", "spend_180d": "Nothing bought in the last 180 days",
    "return_rate": "Never returns anything",
}


def phrase(feature: str, value: float, median: float, direction: int = 0) -> str:
    """The customer's value in words: the 'high' phrase above the median (or at it, when churners
    have high values of the feature), the 'low' phrase otherwise."""
    high, low = PHRASES.get(
        feature, (feature.replace("_", " ") + " above typical ({v:.3g})", feature.replace("_", " ") + " below typical ({v:.3g})")
    )
    if value == 0 and feature in ZERO_PHRASES:
        return ZERO_PHRASES[feature]
    template = high if value > median or (value == median and direction > 0) else low
    return template.format(v=value)


def _phrase_each(values: np.ndarray, fmt) -> np.ndarray:
    """fmt(v) for every value, formatted once per distinct value (bit pattern: -0.0 and 0.0 differ)."""
    values = np.ascontiguousarray(values, dtype=float)
    _, first, inverse = np.unique(values.view(np.int64), return_index=True, return_inverse=True)
    texts = np.array([fmt(v) for v in values[first].tolist()], dtype=object)
    return texts[inverse.ravel()]


def top_reasons(features: pd.DataFrame, contributions: pd.DataFrame, medians: dict, k: int = 3,
                directions: dict | None = None) -> pd.DataFrame:
    """reason_1..reason_k per row: the k features with the largest positive contribution whose
    value is on the churn side of the median (when `directions` is given), one per story.

    Vectorised: taking features in order of contribution and skipping a story already told is the
    same as ranking the stories by their best feature's contribution and phrasing that feature."""
    cols = list(contributions.columns)
    C = contributions.to_numpy(dtype=float).copy()
    V = features[cols].to_numpy(dtype=float)
    if directions:
        med = np.array([medians.get(f, 0.0) for f in cols])
        sign = np.array([directions.get(f, 0) for f in cols])
        C[(V - med) * sign < 0] = 0.0
    C[~(C > 0)] = -np.inf  # only positive contributions are reasons
    n = C.shape[0]
    single = (features["active_days"].to_numpy() <= 1) if "active_days" in features else np.zeros(n, bool)
    days_since = features["tenure_days"].to_numpy(dtype=float) if "tenure_days" in features else None
    chosen = np.full((n, k), -1)  # feature index per reason slot, -1 = no reason
    for is_single in (False, True):
        rows = np.flatnonzero(single == is_single)
        if not len(rows):
            continue
        stories = ["bought once" if is_single and f in ONE_PURCHASE_FEATURES else STORIES.get(f, f) for f in cols]
        names = list(dict.fromkeys(stories))
        best = np.full((len(rows), len(names)), -np.inf)   # each story's best contribution
        which = np.zeros((len(rows), len(names)), dtype=int)  # and the feature giving it
        for s, name in enumerate(names):
            members = np.array([j for j, st in enumerate(stories) if st == name])
            sub = C[np.ix_(rows, members)]
            arg = np.argmax(sub, axis=1)
            best[:, s] = sub[np.arange(len(rows)), arg]
            which[:, s] = members[arg]
        top = np.argsort(-best, axis=1, kind="stable")[:, :k]
        picked = np.take_along_axis(which, top, axis=1)
        picked[~np.isfinite(np.take_along_axis(best, top, axis=1))] = -1
        chosen[rows, :picked.shape[1]] = picked
    out = {}
    for i in range(k):
        texts = np.full(n, None, dtype=object)
        for j in np.unique(chosen[:, i]):
            if j < 0:
                continue
            f = cols[j]
            rows = np.flatnonzero(chosen[:, i] == j)
            once = single[rows] & (f in ONE_PURCHASE_FEATURES)
            median, direction = medians.get(f, 0.0), (directions or {}).get(f, 0)
            texts[rows[~once]] = _phrase_each(V[rows[~once], j],
                                              lambda v, f=f, m=median, d=direction: phrase(f, v, m, d))
            if once.any():
                if days_since is None:
                    texts[rows[once]] = "Bought once, never again"
                else:
                    texts[rows[once]] = _phrase_each(days_since[rows[once]],
                                                     lambda d: f"Bought once, {d:.0f} days ago, never again")
        out[f"reason_{i + 1}"] = texts
    return pd.DataFrame(out, index=features.index)
