"""Evaluation metrics and the two baselines, all on the out-of-time evaluation window.

- ECE (expected calibration error): 10 equal-width probability bins, sum over bins of
  (share of customers in the bin) x |observed churn rate - mean predicted probability|.
- majority_class baseline: every customer gets the training churn rate as probability and the
  training majority class as prediction.
- rule_baseline (the earlier churn tool): churned if recency > the customer's own average purchase
  gap AND monetary < median AND frequency < median (medians over the scored population). A
  customer with a single purchase day has no own gap yet; it gets the median gap of the repeat
  customers (the shared feature's fallback, tenure, equals recency for them, so the rule could
  never fire for one-time buyers, who are exactly the below-median frequency ones).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

METRIC_NAMES = ["roc_auc", "pr_auc", "brier", "ece", "f1", "precision", "recall", "accuracy", "threshold"]


def expected_calibration_error(y, p, bins: int = 10) -> float:
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    if len(y) == 0:
        return float("nan")
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.mean() * abs(y[m].mean() - p[m].mean())
    return float(total)


def reliability_table(y, p, bins: int = 10) -> pd.DataFrame:
    """Per equal-width bin: mean predicted probability, observed churn rate, customers."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        m = idx == b
        if m.any():
            rows.append({"bin": b, "mean_predicted": p[m].mean(), "observed_rate": y[m].mean(), "n": int(m.sum())})
    return pd.DataFrame(rows, columns=["bin", "mean_predicted", "observed_rate", "n"])


def evaluate(y, p, threshold: float, predicted=None) -> dict:
    """Every metric of the issue for probabilities `p` (predicted churn = p >= threshold unless
    `predicted` labels are given)."""
    y = np.asarray(y, dtype=int)
    p = np.asarray(p, dtype=float)
    pred = (p >= threshold).astype(int) if predicted is None else np.asarray(predicted, dtype=int)
    two_classes = len(np.unique(y)) == 2
    return {
        "roc_auc": float(roc_auc_score(y, p)) if two_classes else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if two_classes else float("nan"),
        "brier": float(brier_score_loss(y, p)),
        "ece": expected_calibration_error(y, p),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "accuracy": float(accuracy_score(y, pred)),
        "threshold": float(threshold),
        "n": int(len(y)),
        "churn_rate": float(y.mean()) if len(y) else float("nan"),
    }


def bootstrap_ci(y, p, n_boot: int = 100, seed: int = 0, level: float = 0.95) -> dict:
    """Percentile bootstrap intervals (customers resampled) for ROC AUC and ECE: how much of a
    difference between two numbers is just the luck of this one evaluation window."""
    y = np.asarray(y, dtype=int)
    p = np.asarray(p, dtype=float)
    rng = np.random.default_rng(seed)
    aucs, eces = [], []
    for _ in range(n_boot):
        i = rng.integers(0, len(y), len(y))
        if len(np.unique(y[i])) < 2:
            continue
        aucs.append(roc_auc_score(y[i], p[i]))
        eces.append(expected_calibration_error(y[i], p[i]))
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    if not aucs:
        return {}
    return {"roc_auc_ci_low": float(np.percentile(aucs, lo)), "roc_auc_ci_high": float(np.percentile(aucs, hi)),
            "ece_ci_low": float(np.percentile(eces, lo)), "ece_ci_high": float(np.percentile(eces, hi))}


def rule_baseline_predictions(df: pd.DataFrame) -> np.ndarray:
    """The earlier tool's rule: recency > own average purchase gap, monetary and frequency below median."""
    repeat = df["active_days"] > 1
    typical_gap = df.loc[repeat, "avg_interpurchase_days"].median() if repeat.any() else np.inf
    own_gap = df["avg_interpurchase_days"].where(repeat, typical_gap)
    return (
        (df["recency_days"] > own_gap)
        & (df["monetary"] < df["monetary"].median())
        & (df["frequency"] < df["frequency"].median())
    ).astype(int).to_numpy()


def baseline_metrics(eval_df: pd.DataFrame, train_churn_rate: float) -> dict:
    """Metrics of the majority-class and rule baselines on the evaluation frame (needs `churned`)."""
    y = eval_df["churned"].to_numpy()
    majority = int(train_churn_rate >= 0.5)
    p_major = np.full(len(y), float(train_churn_rate))
    rule = rule_baseline_predictions(eval_df)
    return {
        "majority_class": evaluate(y, p_major, threshold=float("nan"), predicted=np.full(len(y), majority)),
        "rule_baseline": evaluate(y, rule.astype(float), threshold=0.5, predicted=rule),
    }
