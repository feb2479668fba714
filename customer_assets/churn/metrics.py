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
    from sklearn.metrics import (  # here, not at import: see churn/model.make_base_model
        accuracy_score,
        average_precision_score,
        brier_score_loss,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

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


def _rank_groups(p: np.ndarray) -> tuple:
    """Rank groups of `p`: group index per row (tied scores share one group), groups in ascending score."""
    _, group = np.unique(p, return_inverse=True)
    return group.ravel(), int(group.max()) + 1 if len(group) else 0


def weighted_roc_auc(y, group, n_groups: int, w) -> float:
    """ROC AUC of rows weighted by `w` (e.g. bootstrap counts), from precomputed rank groups.

    The Mann-Whitney form roc_auc_score computes: the weighted share of (churner, non-churner) pairs
    where the churner scores higher, a tie counting one half. With integer weights it equals
    roc_auc_score on the rows repeated w times (tested against it, ties included). NaN when one
    class has no weight."""
    w = np.asarray(w, dtype=float)
    pos = np.bincount(group, weights=w * y, minlength=n_groups)
    neg = np.bincount(group, weights=w * (1 - y), minlength=n_groups)
    n_pos, n_neg = pos.sum(), neg.sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    neg_below = np.cumsum(neg) - neg  # non-churner weight strictly below each group's score
    return float((pos * (neg_below + 0.5 * neg)).sum() / (n_pos * n_neg))


def weighted_ece(y, p, bin_index, w, bins: int = 10) -> float:
    """expected_calibration_error of rows weighted by `w` (bin_index = each row's probability bin):
    sum over bins of |weighted churners - weighted predicted| / total weight."""
    w = np.asarray(w, dtype=float)
    obs = np.bincount(bin_index, weights=w * y, minlength=bins)
    pred = np.bincount(bin_index, weights=w * p, minlength=bins)
    return float(np.abs(obs - pred).sum() / w.sum())


def bootstrap_ci(y, p, n_boot: int = 100, seed: int = 0, level: float = 0.95) -> dict:
    """Percentile bootstrap intervals (customers resampled) for ROC AUC and ECE: how much of a
    difference between two numbers is just the luck of this one evaluation window.

    Each resample draws n customers with replacement (the same draws as resampling the rows); it is
    evaluated as the original rows weighted by how often each was drawn, so the scores are ranked
    once and each resample costs a few bincounts instead of a sort (weighted_roc_auc, weighted_ece)."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    n = len(y)
    rng = np.random.default_rng(seed)
    group, n_groups = _rank_groups(p)
    bin_index = np.minimum((p * 10).astype(int), 9)
    aucs, eces = [], []
    for _ in range(n_boot):
        w = np.bincount(rng.integers(0, n, n), minlength=n)
        auc = weighted_roc_auc(y, group, n_groups, w)
        if np.isnan(auc):
            continue  # a resample with a single class: ROC AUC undefined
        aucs.append(auc)
        eces.append(weighted_ece(y, p, bin_index, w))
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
