"""RFM scores and segments (customer-level, pandas).

Scores: R, F and M are 1-5 quintile scores. A customer's score is
`1 + floor(5 * (rank - 1) / n)`, where rank is the SQL `rank()` of the value (the lowest
position of its tie group) ascending for F and M, and descending recency for R (fewer days since
the last order = higher R). Ties are therefore never split: customers with equal values always get
equal scores, the tie group takes the score of the quintile where it starts, and the result does
not depend on row order or customer ids. With n distinct values the five scores have n/5
customers each; a large tie group (34% of Online Retail customers bought once) makes its
quintile bigger and can leave a score unused.

Segments: SEGMENT_RULES is the one rule table, read top to bottom; a customer gets the first
segment whose R, F and M ranges (inclusive) contain its scores and whose price condition holds.
Every one of the 125 score combinations is covered without a catch-all (tests prove it), so each
customer has exactly one segment.

Price Sensitive: the price signal is `price_index` from the feature function, what the customer
paid relative to each product's median unit price (sum of line_total / sum of quantity x product
median price, up to the snapshot). A customer is price sensitive when price_index <=
settings.price_sensitive_index (default 0.9: at least 10% below typical prices). When the source
has no product_id / quantity / unit_price, there is no price signal: the rule is not used and the
asset metadata says why.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# (segment, R range, F range, M range, price_sensitive condition (None = any), meaning)
SEGMENT_RULES = pd.DataFrame(
    [
        ("Champions", 5, 5, 4, 5, 4, 5, None, "bought most recently, buy often and spend the most"),
        ("Can't Lose Them", 1, 1, 4, 5, 4, 5, None, "were frequent big spenders, silent for a long time"),
        ("Loyal Customers", 3, 5, 4, 5, 1, 5, None, "buy often and fairly recently"),
        ("At Risk", 1, 2, 3, 5, 3, 5, None, "spent well and often, but long ago"),
        ("Price Sensitive", 2, 5, 1, 5, 1, 5, True, "still active, pay well below typical product prices"),
        ("Potential Loyalist", 4, 5, 2, 3, 1, 5, None, "recent and bought more than once"),
        ("Recent Users", 5, 5, 1, 1, 1, 5, None, "first (or only) order very recently"),
        ("Promising", 4, 4, 1, 1, 1, 5, None, "one order, fairly recently"),
        ("Needs Attention", 3, 3, 2, 5, 1, 5, None, "repeat buyers whose last order is getting old"),
        ("About To Sleep", 3, 3, 1, 1, 1, 5, None, "one order, a while ago"),
        ("Hibernating", 2, 2, 1, 5, 1, 5, None, "quiet for a while, few orders or small spend"),
        ("Lost", 1, 1, 1, 5, 1, 5, None, "oldest last orders, few orders or small spend"),
    ],
    columns=["segment", "r_min", "r_max", "f_min", "f_max", "m_min", "m_max", "price_sensitive", "meaning"],
)

SEGMENTS = list(SEGMENT_RULES["segment"])


def quintile_scores(values: pd.Series, higher_is_better: bool = True) -> pd.Series:
    """1-5 scores from the tie-aware rank (see module docstring)."""
    x = pd.to_numeric(values, errors="raise").astype(float)
    if x.isna().any():
        raise ValueError(f"{values.name}: cannot score missing values")
    n = len(x)
    if n == 0:
        return pd.Series([], dtype="int64", index=values.index)
    rank = (x if higher_is_better else -x).rank(method="min")
    return (1 + np.floor(5 * (rank - 1) / n)).clip(1, 5).astype("int64")


def assign_segments(
    r: pd.Series, f: pd.Series, m: pd.Series, price_sensitive: pd.Series | None = None,
    rules: pd.DataFrame = SEGMENT_RULES,
) -> pd.Series:
    """The first matching rule's segment for each customer. `price_sensitive=None`: no price
    signal, rules that require one are skipped."""
    out = pd.Series(pd.NA, index=r.index, dtype="object")
    for rule in rules.itertuples(index=False):
        if rule.price_sensitive is not None and price_sensitive is None:
            continue
        hit = out.isna() & r.between(rule.r_min, rule.r_max) & f.between(rule.f_min, rule.f_max) \
            & m.between(rule.m_min, rule.m_max)
        if rule.price_sensitive is not None:
            hit &= price_sensitive == rule.price_sensitive
        out[hit] = rule.segment
    if out.isna().any():
        codes = sorted(set(zip(r[out.isna()], f[out.isna()], m[out.isna()])))
        raise ValueError(f"the segment rule table does not cover RFM scores {codes[:5]}")
    return out


def compute_rfm(features: pd.DataFrame, price_sensitive_index: float | None = 0.9) -> pd.DataFrame:
    """rfm_segments rows from customer features (one row per customer).

    `price_sensitive_index=None`, or a frame without price_index: Price Sensitive is not used.
    """
    need = {"customer_id", "recency_days", "frequency", "monetary"}
    missing = need - set(features.columns)
    if missing:
        raise ValueError(f"customer features lack {sorted(missing)}")
    df = features[["customer_id", "recency_days", "frequency", "monetary"]].copy()
    df["recency_days"] = df["recency_days"].astype("int64")
    df["frequency"] = df["frequency"].astype("int64")
    df["r_score"] = quintile_scores(df["recency_days"], higher_is_better=False)
    df["f_score"] = quintile_scores(df["frequency"])
    df["m_score"] = quintile_scores(df["monetary"])
    # scores are 1..5: the three digits as one number, then as text ("5" "4" "3" -> "543")
    df["rfm_code"] = (100 * df["r_score"] + 10 * df["f_score"] + df["m_score"]).astype(str)
    use_price = price_sensitive_index is not None and "price_index" in features.columns
    if use_price:
        df["price_index"] = features["price_index"].astype(float)
        flag = df["price_index"] <= price_sensitive_index
    else:
        flag = None
    df["segment"] = _segments_by_code(df["r_score"], df["f_score"], df["m_score"], flag)
    if df["customer_id"].is_monotonic_increasing:  # features are read ordered by customer_id
        return df.reset_index(drop=True)
    return df.sort_values("customer_id").reset_index(drop=True)


def _segments_by_code(r: pd.Series, f: pd.Series, m: pd.Series, price_sensitive: pd.Series | None,
                      rules: pd.DataFrame = SEGMENT_RULES) -> pd.Series:
    """assign_segments for many customers: the rule table is applied once to each distinct
    (R, F, M, price flag) combination present (at most 250), then looked up per customer."""
    code = 25 * (r.to_numpy() - 1) + 5 * (f.to_numpy() - 1) + (m.to_numpy() - 1)
    if price_sensitive is not None:
        code = code + 125 * price_sensitive.to_numpy(dtype=bool)
    uniq, inverse = np.unique(code, return_inverse=True)
    base = uniq % 125
    combos = pd.DataFrame({"r": base // 25 + 1, "f": base // 5 % 5 + 1, "m": base % 5 + 1})
    flags = None if price_sensitive is None else pd.Series(uniq >= 125)
    table = assign_segments(combos["r"], combos["f"], combos["m"], flags, rules)
    return pd.Series(table.to_numpy()[inverse], index=r.index, dtype="object")


def segment_summary(rfm: pd.DataFrame) -> pd.DataFrame:
    """Customers, share and revenue share per segment, in rule-table order."""
    total_rev = rfm["monetary"].sum()
    g = rfm.groupby("segment").agg(
        customers=("customer_id", "size"),
        revenue=("monetary", "sum"),
        median_recency_days=("recency_days", "median"),
        median_frequency=("frequency", "median"),
        median_monetary=("monetary", "median"),
    )
    g = g.reindex([s for s in SEGMENTS if s in g.index])
    g["customer_share"] = g["customers"] / len(rfm)
    g["revenue_share"] = g["revenue"] / total_rev if total_rev else 0.0
    return g.reset_index()


def champions_validation(rfm: pd.DataFrame) -> dict:
    """'Does Champions genuinely represent top-spending customers?' (the seed's validation point):
    Champions' median monetary >= the 80th percentile of all customers, and their median recency
    <= the 20th percentile."""
    champs = rfm[rfm["segment"] == "Champions"]
    p80_monetary = float(rfm["monetary"].quantile(0.8))
    p20_recency = float(rfm["recency_days"].quantile(0.2))
    if champs.empty:
        return {"passed": False, "champions": 0, "p80_monetary": p80_monetary, "p20_recency_days": p20_recency,
                "reason": "no customer is a Champion"}
    med_m = float(champs["monetary"].median())
    med_r = float(champs["recency_days"].median())
    return {
        "passed": bool(med_m >= p80_monetary and med_r <= p20_recency),
        "champions": int(len(champs)),
        "champions_median_monetary": med_m,
        "p80_monetary": p80_monetary,
        "champions_median_recency_days": med_r,
        "p20_recency_days": p20_recency,
    }
