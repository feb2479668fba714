"""Gradient-boosted horizon spend: XGBoost regressor on the shared customer features.

Out-of-time design (the churn stage's idea): a row is (customer, snapshot s) with the features
observed on or before s (`compute_customer_features(con, s)`) and the label = the customer's spend
in `s < order_date <= s + horizon`. With cutoff = as_of - horizon:

- evaluation model: trained on snapshots cutoff - horizon - 30*k (k = 0..n-1), whose label windows
  all end on or before the cutoff; evaluated at snapshot = cutoff on the holdout window
  (cutoff, as_of] that no training row saw.
- production model: the same recipe moved forward by one horizon (snapshots cutoff - 30*k, label
  windows ending on or before as_of); it scores the current customers at as_of.

Objective: Tweedie (log link), the usual choice for spend: many customers spend exactly 0 in the
horizon and the rest are right-skewed; predictions are never negative.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd

from customer_assets.common.threads import fit_threads
from customer_assets.ltv.summary import _date_literal

SNAPSHOT_STEP_DAYS = 30
XGB_PARAMS = dict(
    objective="reg:tweedie",
    tweedie_variance_power=1.5,
    n_estimators=300,
    learning_rate=0.05,
    max_depth=4,
    min_child_weight=5,
    subsample=0.8,
    colsample_bytree=0.8,
    # n_jobs is set per fit by common.threads.fit_threads: every core when the machine is idle, one
    # when it is busy (threads fight each other there: measured 2 threads 50x slower under load)
    random_state=0,
)


def horizon_spend_sql(snapshot, horizon_days: int, source_table: str = "cleaned_transactions") -> str:
    s = _date_literal(snapshot)
    return f"""
SELECT customer_id, CAST(sum(coalesce(line_total, 0)) AS DOUBLE) AS label_spend
FROM {source_table}
WHERE customer_id IS NOT NULL AND order_date > {s} AND order_date <= {s} + {int(horizon_days)}
GROUP BY customer_id
"""


def labelled_snapshot(con: duckdb.DuckDBPyConnection, snapshot, horizon_days: int) -> pd.DataFrame:
    """Features at `snapshot` + label_spend in the horizon after it (0 when nothing)."""
    from customer_assets.customers.features import compute_customer_features

    feats = compute_customer_features(con, snapshot)
    labels = con.execute(horizon_spend_sql(snapshot, horizon_days)).df()
    out = feats.merge(labels, on="customer_id", how="left")
    out["label_spend"] = out["label_spend"].fillna(0.0)
    return out


def labelled_snapshot_memo(con, snapshot, horizon_days: int, memo: dict) -> pd.DataFrame:
    """labelled_snapshot through `memo` (one call's scope: the frames are read, never modified)."""
    key = (snapshot, int(horizon_days))
    if key not in memo:
        memo[key] = labelled_snapshot(con, snapshot, horizon_days)
    return memo[key]


def snapshots_ending(last_snapshot: dt.date, n: int, first_data_date: dt.date) -> list:
    """Up to n snapshots last_snapshot - 30*k that have data before them (oldest first)."""
    snaps = [last_snapshot - dt.timedelta(days=SNAPSHOT_STEP_DAYS * k) for k in range(n)]
    return sorted(s for s in snaps if s >= first_data_date)


def feature_names(frame: pd.DataFrame) -> list:
    return [c for c in frame.columns if c not in ("customer_id", "snapshot_date", "label_spend")]


def training_frame(con, snapshots: list, horizon_days: int, memo: dict = None) -> pd.DataFrame:
    """`memo`: {(snapshot, horizon_days): labelled_snapshot frame} shared by the caller's calls (the
    evaluation and production snapshot lists overlap: the same frame is not built twice)."""
    frames = [labelled_snapshot(con, s, horizon_days) if memo is None else labelled_snapshot_memo(con, s, horizon_days, memo)
              for s in snapshots]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True)


def fit_xgb(train: pd.DataFrame, features: list):
    from xgboost import XGBRegressor

    model = XGBRegressor(**XGB_PARAMS, n_jobs=fit_threads())
    model.fit(train[features].astype(float), train["label_spend"].astype(float))
    return model


def predict_xgb(model, frame: pd.DataFrame, features: list) -> np.ndarray:
    X = frame.reindex(columns=features).astype(float)
    return np.clip(model.predict(X), 0, None)
