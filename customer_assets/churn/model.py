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
from threadpoolctl import threadpool_limits

MODEL_KINDS = ("logistic_regression", "xgboost")


def signed_log1p(X):
    """sign(x) * log(1 + |x|): tames the long tails of spend and counts for the linear model."""
    X = np.asarray(X, dtype=float)
    return np.sign(X) * np.log1p(np.abs(X))


def make_base_model(kind: str, seed: int = 0):
    """XGBoost's thread count comes from common.threads.fit_threads: every core when the machine is
    idle, one when it is busy (threads on a busy 2-core machine measured 6 s CPU / 23 s wall against
    0.2 s on one thread: they spin waiting). It changes speed, never the fitted trees."""
    if kind == "logistic_regression":
        # sklearn is imported where it is used: at module level it put ~0.6 s into every load of
        # the code location (common/warm_imports loads it during ingestion)
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import FunctionTransformer, StandardScaler

        return Pipeline([
            ("log", FunctionTransformer(signed_log1p)),
            ("scale", StandardScaler()),
            ("clf", LogisticRegression(C=0.1, class_weight="balanced", max_iter=2000)),
        ])
    if kind == "xgboost":
        from xgboost import XGBClassifier

        from customer_assets.common.threads import fit_threads

        return XGBClassifier(
            n_estimators=300, max_depth=2, learning_rate=0.05, subsample=0.8, colsample_bytree=0.8,
            min_child_weight=10, n_jobs=fit_threads(), random_state=seed, tree_method="hist",
        )
    raise ValueError(f"unknown model kind {kind!r}; known: {MODEL_KINDS}")


def one_blas_thread():
    """Context: OpenBLAS on one thread. The logistic regression's lbfgs makes ~90 small matrix
    products per fit; two OpenBLAS threads spin on each and measured 3.3 s CPU for one fit on 85k
    rows against 0.45 s on one thread (coefficients equal to 1e-10)."""
    return threadpool_limits(1, user_api="blas")


def customer_folds(customer_ids: pd.Series, n_folds: int) -> np.ndarray:
    """A stable fold number per customer (every snapshot of one customer lands in the same fold)."""
    return customer_ids.astype(str).map(lambda c: zlib.crc32(c.encode()) % n_folds).to_numpy()


class PlattCalibrator:
    """Platt scaling: a logistic regression on the logit of the raw score (monotone, smooth)."""

    def fit(self, raw, y):
        from sklearn.linear_model import LogisticRegression

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
            contrib = tree_shap(self.base.get_booster(), Xf)
        return pd.DataFrame(contrib, columns=self.features, index=X.index)


# Trees with at most this many split nodes get their SHAP values from per-tree tables (below); larger
# ones (never with make_base_model's depth-2 trees, which have at most 3) from XGBoost's pred_contribs.
SHAP_TABLE_MAX_SPLITS = 7


def tree_shap(booster, X: pd.DataFrame) -> np.ndarray:
    """SHAP values of an XGBoost booster, one column per feature (the bias left out): exactly what
    `booster.predict(DMatrix(X), pred_contribs=True)[:, :-1]` gives (path-dependent TreeSHAP; equal
    to 1e-6, XGBoost sums in float32), in 1/18 of its CPU time for depth-2 trees (86k customers: 0.23 s
    against 4.3 s on one thread).

    A tree's contribution to a row depends only on which way the row goes at each split node (the
    unvisited ones too: a feature outside the coalition averages over both children, by cover).
    A depth-2 tree has 3 splits, so 8 patterns: for each pattern the Shapley values of the tree's
    game v(S) = E[tree | features in S follow the row] are computed once, by enumerating the
    coalitions of its (at most 3) features; each row then looks its pattern up. Data are compared
    as float32 against the float32 split values (XGBoost's `x < split` goes left, NaN follows the
    default direction)."""
    import json

    model = json.loads(booster.save_raw("json"))["learner"]["gradient_booster"]
    trees = model.get("model", {}).get("trees")
    if model.get("name") != "gbtree" or trees is None or any(model["model"].get("tree_info", [])) or any(
            any(t["split_type"]) or sum(c != -1 for c in t["left_children"]) > SHAP_TABLE_MAX_SPLITS
            for t in trees):
        import xgboost as xgb

        return booster.predict(xgb.DMatrix(X, feature_names=list(X.columns)), pred_contribs=True)[:, :-1]
    V = X.to_numpy(dtype=np.float32).T.copy()  # feature-major: each feature's values contiguous
    out = np.zeros(V.shape)
    for t in trees:
        splits = [i for i, c in enumerate(t["left_children"]) if c != -1]
        if not splits:
            continue
        players, table = _tree_shap_table(t, splits)
        pattern = np.zeros(V.shape[1], dtype=np.int64)
        for j, node in enumerate(splits):
            x = V[t["split_indices"][node]]
            left = x < np.float32(t["split_conditions"][node])
            if t["default_left"][node]:
                left |= np.isnan(x)
            pattern |= left.astype(np.int64) << j
        for i, f in enumerate(players):
            out[f] += table[:, i][pattern]
    return out.T


def _tree_shap_table(t: dict, splits: list) -> tuple:
    """(features of the tree, table[pattern, feature]): Shapley values of the tree for every
    left/right pattern of its split nodes (bit j of the pattern = the row goes left at splits[j])."""
    from itertools import combinations
    from math import factorial

    left, right = t["left_children"], t["right_children"]
    feature, value, cover = t["split_indices"], t["split_conditions"], t["sum_hessian"]
    players = sorted({feature[n] for n in splits})
    k = len(players)
    bit = {n: j for j, n in enumerate(splits)}
    table = np.zeros((2 ** len(splits), k))
    for pattern in range(2 ** len(splits)):
        def v(node, S):
            if left[node] == -1:
                return value[node]
            if feature[node] in S:
                return v(left[node] if pattern >> bit[node] & 1 else right[node], S)
            return (cover[left[node]] * v(left[node], S) + cover[right[node]] * v(right[node], S)) / cover[node]

        for i, f in enumerate(players):
            others = [g for g in players if g != f]
            for size in range(k):
                weight = factorial(size) * factorial(k - size - 1) / factorial(k)
                for S in combinations(others, size):
                    table[pattern, i] += weight * (v(0, set(S) | {f}) - v(0, set(S)))
    return players, table


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
    y = np.asarray(y, dtype=int)
    if len(np.unique(y)) < 2:
        raise ValueError("the training labels have a single class: cannot fit a churn model")
    with one_blas_thread():
        return _fit_calibrated(kind, X, y, customer_ids, n_folds, seed, method)


def _fit_calibrated(kind, X, y, customer_ids, n_folds, seed, method):
    features = list(X.columns)
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
        from sklearn.isotonic import IsotonicRegression

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
