"""Churn features and labels at a snapshot date.

- `churn_feature_frame(con, s)`: one row per customer with >= 1 cleaned order on or before `s`:
  customer_id + the model features. They are the shared customer features
  (`customers.features.compute_customer_features`, which only reads `order_date <= s`) plus the
  churn-specific ones below, computed from those same columns, so no feature sees anything after s.
- `churn_labels(con, s, horizon_days)`: customer_id, churned (1 = no order in the label window
  `s < order_date <= s + horizon_days`), for the same customers.

Churn-specific features:
- gap_ratio: recency_days / avg_interpurchase_days (floored at 1 day). "How overdue is the next
  purchase, in units of the customer's own rhythm": 0.5 = half a usual gap since the last
  purchase, 3 = three usual gaps. A one-purchase customer's gap is its tenure, so its ratio is 1.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd

from customer_assets.customers.features import (
    FEATURE_COLUMNS,
    OPTIONAL_FEATURES,
    _as_date,
    available_optional_features,
    compute_customer_features,
    ensure_feature_base,
)

CHURN_EXTRA_FEATURES = ["gap_ratio"]


def model_feature_columns(con: duckdb.DuckDBPyConnection) -> list:
    """The model's features for this warehouse: shared + the optional ones the source maps + churn extras."""
    return list(FEATURE_COLUMNS) + available_optional_features(con) + CHURN_EXTRA_FEATURES


def add_churn_features(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out["gap_ratio"] = (out["recency_days"] / out["avg_interpurchase_days"].clip(lower=1.0)).astype(float)
    return out


def churn_feature_frame(con: duckdb.DuckDBPyConnection, snapshot_date, cols=None) -> pd.DataFrame:
    """customer_id + model features as of `snapshot_date` (transactions with order_date <= snapshot).
    `cols`: model_feature_columns(con) when the caller already has them (a scan of the lines)."""
    feats = compute_customer_features(con, _as_date(snapshot_date))
    feats = add_churn_features(feats)
    if cols is None:
        # = model_feature_columns(con) without its scan of the lines: the frame carries exactly the
        # optional features of the current feature base, whose fields check is available_optional_features'
        cols = list(FEATURE_COLUMNS) + [n for n in OPTIONAL_FEATURES if n in feats.columns] + CHURN_EXTRA_FEATURES
    return feats[["customer_id"] + cols].reset_index(drop=True)


def _label_source(con: duckdb.DuckDBPyConnection, lines: bool) -> str:
    """The rows churn labels are counted from: the cleaned lines (`lines`, the definition) or the
    feature base's order_days, one row per (customer, order, order date) of those same lines with a
    customer: 380k rows instead of 10.8M at N=20, and the same answer (a customer has an order in a
    window exactly when one of its lines is in it; the first order date is the first line's)."""
    if lines:
        return "(SELECT customer_id, order_date FROM cleaned_transactions WHERE customer_id IS NOT NULL)"
    return f"{ensure_feature_base(con).prefix}order_days"


def churn_labels(con: duckdb.DuckDBPyConnection, snapshot_date, horizon_days: int,
                 from_lines: bool = False) -> pd.DataFrame:
    """customer_id, churned (0/1) for every customer with an order on or before the snapshot.

    churned = 1 when the customer has no cleaned order with snapshot < order_date <= snapshot + horizon.
    Read from the feature base's order_days (`from_lines`: from the cleaned lines, the definition)."""
    s = _as_date(snapshot_date)
    if horizon_days <= 0:
        raise ValueError(f"horizon_days must be positive, got {horizon_days}")
    end = s + dt.timedelta(days=int(horizon_days))
    return con.execute(
        f"""
        SELECT customer_id,
               CASE WHEN count(*) FILTER (WHERE order_date > ? AND order_date <= ?) = 0 THEN 1 ELSE 0 END
                   AS churned
        FROM {_label_source(con, from_lines)}
        WHERE order_date <= ?
        GROUP BY customer_id
        HAVING min(order_date) <= ?
        ORDER BY customer_id
        """,
        [s, end, end, s],
    ).df().astype({"churned": np.int64})


def churn_labels_many(con: duckdb.DuckDBPyConnection, snapshot_dates, horizon_days: int,
                      from_lines: bool = False) -> list:
    """[churn_labels(con, s, horizon_days) for s in snapshot_dates] (the same frames) from one scan
    instead of one per snapshot. A customer's first order is on or before s exactly when
    its first order among the rows up to the latest label end is (those include every row <= s)."""
    snaps = [_as_date(s) for s in snapshot_dates]
    if horizon_days <= 0:
        raise ValueError(f"horizon_days must be positive, got {horizon_days}")
    if not snaps:
        return []
    ends = [s + dt.timedelta(days=int(horizon_days)) for s in snaps]
    cols, params = [], []
    for i, (s, end) in enumerate(zip(snaps, ends)):
        cols.append(f"min(order_date) <= ? AS in_{i}, CASE WHEN count(*) FILTER (WHERE order_date > ? AND "
                    f"order_date <= ?) = 0 THEN 1 ELSE 0 END AS churned_{i}")
        params += [s, s, end]
    wide = con.execute(
        f"""
        SELECT customer_id, {", ".join(cols)}
        FROM {_label_source(con, from_lines)}
        WHERE order_date <= ?
        GROUP BY customer_id
        ORDER BY customer_id
        """,
        params + [max(ends)],
    ).df()
    return [wide.loc[wide[f"in_{i}"].to_numpy(dtype=bool), ["customer_id", f"churned_{i}"]]
            .rename(columns={f"churned_{i}": "churned"}).reset_index(drop=True).astype({"churned": np.int64})
            for i in range(len(snaps))]


def labelled_frame(con: duckdb.DuckDBPyConnection, snapshot_date, horizon_days: int, cols=None,
                   labels: pd.DataFrame = None) -> pd.DataFrame:
    """Features at the snapshot joined with their label: customer_id, snapshot_date, features..., churned.
    `cols` / `labels`: model_feature_columns(con) / churn_labels(con, snapshot, horizon) when the caller has them."""
    s = _as_date(snapshot_date)
    X = churn_feature_frame(con, s, cols)
    y = churn_labels(con, s, horizon_days) if labels is None else labels
    df = X.merge(y, on="customer_id", how="inner")
    df.insert(1, "snapshot_date", pd.Timestamp(s))
    return df
