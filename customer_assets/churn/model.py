"""Churn models: a class-weighted logistic regression and an XGBoost classifier, each calibrated.

Calibration is cross-fitted by customer: the training rows (stacked snapshots) are split into
folds by a hash of customer_id; each fold's raw scores come from a model fit on the other folds,
an isotonic regression maps those out-of-fold scores to churn rates, and the deployed base model
is refit on every training row. So the calibrator never sees scores of rows its model was fit
on, and it is fitted on every training snapshot pooled (their churn rates differ by season, see
docs/churn.md). The F1 threshold is chosen on the same out-of-fold calibrated probabilities,
never on the evaluation window.

`CalibratedChurnModel` is what the registry stores (inside the artifact dict): predict_proba on a
DataFrame holding its features, and per-feature contributions (for the reasons in churn_scores).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

MODEL_KINDS = ("logistic_regression", "xgboost")


def signed_log1p(X):
    """sign(x) * log(1 + |x|): tames the long tails of spend and counts for the linear model."""
    X = np.asarray(X, dtype=float)
    return np.sign(X) * np.log1p(np.abs(X))


def make_base_model(kind: str, seed: int = 0):
    """n_jobs=1 for XGBoost: 300 depth-2 trees on ~10k rows take 0.2 s CPU on one thread, while two
    threads on a busy 2-core machine measured 6 s CPU / 23 s wall (the threads spin waiting)."""
    if kind == "logistic_regression":
        return Pipeline([
            ("log", FunctionTransformer(signed_log1p)),
            ("scale", StandardScaler()),
            ("clf", LogisticRegression(C=0.1, class_weight="balanced", max_iter=2000)),
        ])
    if kind == "xgboost":
        from xgboost import XGBClassifier

        return XGBClassifier(
            n_estimators=300, max_depth=2, learning_rate=0.05, subsample=0.8, colsample_bytree=0.8,
            min_child_weight=10, n_jobs=1, random_state=seed, tree_method="hist",
        )
    raise ValueError(f"unknown model kind {kind!r}; known: {MODEL_KINDS}")


def customer_folds(customer_ids: pd.Series, n_folds: int) -> np.ndarray:
    """A stable fold number per customer (every snapshot of one customer lands in the same fold)."""
    return customer_ids.astype(str).map(lambda c: zlib.crc32(c.encode()) % n_folds).to_numpy()


class PlattCalibrator:
    """Platt scaling: a logistic regression on the logit of the raw score (monotone, smooth)."""

    def fit(self, raw, y):
        self.lr = LogisticRegression(C=1e6, max_iter=1000).fit(_logit(raw).reshape(-1, 1), y)
        return self

    def predict(self, raw):
        return self.lr.predict_proba(_logit(raw).reshape(-1, 1))[:, 1]


def _logit(p):
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


@dataclass
class CalibratedChurnModel:
    """A fitted base model + an isotonic calibrator; predict_proba gives calibrated churn probabilities."""

    kind: str
    features: list
    base: object
    calibrator: object  # IsotonicRegression (deployed) or PlattCalibrator: .predict(raw) -> probability
    feature_medians: dict = field(default_factory=dict)
    # +1 when churners tend to have higher values of the feature (training rows), -1 when lower
    feature_directions: dict = field(default_factory=dict)

    def raw_score(self, X: pd.DataFrame) -> np.ndarray:
        return self.base.predict_proba(X[self.features].astype(float))[:, 1]

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = np.clip(self.calibrator.predict(self.raw_score(X)), 0.0, 1.0)
        return np.column_stack([1.0 - p, p])

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per-feature contribution to the (uncalibrated) log-odds of churn, relative to an average
        training customer: coefficient x standardised value for the logistic regression, SHAP
        values (XGBoost's pred_contribs) for the trees. Positive = pushes the churn score up."""
        Xf = X[self.features].astype(float)
        if self.kind == "logistic_regression":
            z = self.base[:-1].transform(Xf)
            contrib = z * self.base[-1].coef_[0]
        else:
            import xgboost as xgb

            contrib = self.base.get_booster().predict(
                xgb.DMatrix(Xf, feature_names=list(self.features)), pred_contribs=True
            )[:, :-1]  # the last column is the bias
        return pd.DataFrame(contrib, columns=self.features, index=X.index)


def marginal_directions(X: pd.DataFrame, y: np.ndarray) -> dict:
    """Sign of each feature's rank correlation with churn (0 when the feature is constant)."""
    yr = pd.Series(np.asarray(y, dtype=float), index=X.index)
    out = {}
    for f in X.columns:
        rho = X[f].rank().corr(yr.rank()) if X[f].nunique() > 1 else 0.0
        out[f] = 0 if not np.isfinite(rho) or rho == 0 else int(np.sign(rho))
    return out


def fit_calibrated(kind: str, X: pd.DataFrame, y: np.ndarray, customer_ids: pd.Series,
                   n_folds: int = 3, seed: int = 0, method: str = "isotonic") -> tuple[CalibratedChurnModel, np.ndarray]:
    """Fit `kind` with cross-fitted calibration (`isotonic`, deployed, or `platt`). Returns the model
    and the out-of-fold calibrated probabilities of the training rows (for choosing the threshold)."""
    features = list(X.columns)
    y = np.asarray(y, dtype=int)
    if len(np.unique(y)) < 2:
        raise ValueError("the training labels have a single class: cannot fit a churn model")
    folds = customer_folds(customer_ids, n_folds)
    oof = np.full(len(y), np.nan)
    for k in range(n_folds):
        test = folds == k
        train = ~test
        if test.sum() == 0 or len(np.unique(y[train])) < 2:
            continue
        m = make_base_model(kind, seed).fit(X[train], y[train])
        oof[test] = m.predict_proba(X[test])[:, 1]
    ok = ~np.isnan(oof)
    if ok.sum() == 0:
        raise ValueError("too few customers to cross-fit the calibration")
    if method == "isotonic":
        calibrator = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(oof[ok], y[ok])
    elif method == "platt":
        calibrator = PlattCalibrator().fit(oof[ok], y[ok])
    else:
        raise ValueError(f"unknown calibration method {method!r}: isotonic or platt")
    base = make_base_model(kind, seed).fit(X, y)
    medians = {f: float(X[f].median()) for f in features}
    model = CalibratedChurnModel(kind, features, base, calibrator, medians, marginal_directions(X, y))
    oof_cal = np.where(ok, calibrator.predict(np.where(ok, oof, 0.0)), np.nan)
    return model, oof_cal


def best_f1_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The probability cut (predict churn when p >= cut) with the highest F1 on (y, p)."""
    from sklearn.metrics import precision_recall_curve

    ok = ~np.isnan(p)
    precision, recall, thresholds = precision_recall_curve(np.asarray(y)[ok], np.asarray(p)[ok])
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    if len(thresholds) == 0:
        return 0.5
    return float(thresholds[int(np.argmax(f1[:-1]))])
