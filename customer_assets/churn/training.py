"""Out-of-time windows, the stacked training set, and training + selection of the churn model.

Windows (H = horizon, as_of = observation end):
- evaluation snapshot  e = as_of - H: features at e, labels from (e, as_of]. The latest window
  whose labels have fully matured; model selection and every reported metric use it.
- training snapshots   e - H - spacing*k, k = 0..n-1: their label windows end on or before e, so
  nothing the models learn comes from after the evaluation snapshot (a true out-of-time test).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from customer_assets.churn.features import churn_labels_many, labelled_frame, model_feature_columns
from customer_assets.churn.metrics import baseline_metrics, bootstrap_ci, evaluate
from customer_assets.churn.model import MODEL_KINDS, best_f1_threshold, fit_calibrated, one_blas_thread
from customer_assets.common.sampling import sample_customers

MIN_HISTORY_DAYS = 30  # a training snapshot needs at least this much history before it


class InsufficientHistory(ValueError):
    """The data does not span enough time for an out-of-time training and evaluation window."""


@dataclass
class Windows:
    as_of: dt.date
    horizon_days: int
    eval_snapshot: dt.date
    train_snapshots: list  # newest first

    @property
    def train_window(self) -> tuple:
        return (min(self.train_snapshots), self.eval_snapshot)

    @property
    def eval_window(self) -> tuple:
        return (self.eval_snapshot, self.as_of)


def plan_windows(first_date: dt.date, as_of: dt.date, horizon_days: int, n_snapshots: int,
                 spacing_days: int = 30) -> Windows:
    e = as_of - dt.timedelta(days=horizon_days)
    earliest = first_date + dt.timedelta(days=MIN_HISTORY_DAYS)
    snaps = [e - dt.timedelta(days=horizon_days + spacing_days * k) for k in range(max(n_snapshots, 1))]
    snaps = [s for s in snaps if s >= earliest]
    if not snaps:
        need = 2 * horizon_days + MIN_HISTORY_DAYS
        raise InsufficientHistory(
            f"the data spans {first_date}..{as_of} ({(as_of - first_date).days} days); an out-of-time "
            f"churn model at a {horizon_days}-day horizon needs at least {need} days "
            f"({MIN_HISTORY_DAYS} days of history + a training label window + an evaluation label window)"
        )
    return Windows(as_of, horizon_days, e, snaps)


def build_training_set(con, windows: Windows) -> pd.DataFrame:
    """Stacked labelled snapshots: role 'train' for the training snapshots, 'eval' for the evaluation one."""
    # the feature list (a scan of the lines) and every snapshot's labels (one scan) once, not per snapshot
    cols = model_feature_columns(con)
    *train_labels, eval_labels = churn_labels_many(
        con, list(windows.train_snapshots) + [windows.eval_snapshot], windows.horizon_days)
    parts = []
    for s, y in zip(windows.train_snapshots, train_labels):
        df = labelled_frame(con, s, windows.horizon_days, cols, y)
        df.insert(2, "role", "train")
        parts.append(df)
    ev = labelled_frame(con, windows.eval_snapshot, windows.horizon_days, cols, eval_labels)
    ev.insert(2, "role", "eval")
    parts.append(ev)
    return pd.concat(parts, ignore_index=True)


@dataclass
class TrainingResult:
    models: dict          # kind -> CalibratedChurnModel
    thresholds: dict      # kind -> F1 threshold (chosen on out-of-fold training predictions)
    metrics: dict         # name -> metric dict (both models and both baselines, evaluation window)
    winner: str
    eval_probabilities: dict  # kind -> calibrated probabilities on the evaluation rows
    eval_labels: np.ndarray
    train_churn_rate: float
    fit_customers: int = 0    # distinct customers whose training rows fitted the models
    fit_rows: int = 0


def train_and_select(training_set: pd.DataFrame, features: list, kinds=MODEL_KINDS,
                     max_fit_customers: int = 0) -> TrainingResult:
    """Fit every model kind on the 'train' rows, evaluate all of them (and the baselines) on the
    'eval' rows, and pick the winner by out-of-time ROC AUC.

    The fits (cross-fitted calibration and the F1 threshold included) use the training rows of at
    most `max_fit_customers` customers (`sample_customers`: a stable hash of the id, so a customer is
    in or out at every snapshot; 0 = all). Every metric is on ALL evaluation rows, and the training
    churn rate (majority baseline) on all training rows."""
    train = training_set[training_set["role"] == "train"].reset_index(drop=True)
    ev = training_set[training_set["role"] == "eval"].reset_index(drop=True)
    if train.empty or ev.empty:
        raise ValueError("the training set needs both 'train' and 'eval' rows")
    y_all = train["churned"].to_numpy(dtype=int)
    fit = sample_customers(train, max_fit_customers)
    y_train = fit["churned"].to_numpy(dtype=int)
    y_eval = ev["churned"].to_numpy(dtype=int)
    if len(np.unique(y_eval)) < 2:
        raise ValueError(f"every customer in the evaluation window has churned={int(y_eval[0])}: ROC AUC undefined")
    models, thresholds, metrics, probs = {}, {}, {}, {}
    for kind in kinds:
        model, oof = fit_calibrated(kind, fit[features], y_train, fit["customer_id"])
        thresholds[kind] = best_f1_threshold(y_train, oof)
        with one_blas_thread():
            probs[kind] = model.predict_proba(ev)[:, 1]
        metrics[kind] = {**evaluate(y_eval, probs[kind], thresholds[kind]), **bootstrap_ci(y_eval, probs[kind])}
        models[kind] = model
    metrics.update(baseline_metrics(ev, float(y_all.mean())))
    winner = max(kinds, key=lambda k: metrics[k]["roc_auc"])
    return TrainingResult(models, thresholds, metrics, winner, probs, y_eval, float(y_all.mean()),
                          fit_customers=int(fit["customer_id"].nunique()), fit_rows=len(fit))
