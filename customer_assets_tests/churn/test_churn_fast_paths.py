"""The bounded / faster paths of the churn stage (issue 9) against their slow references."""

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from sklearn.metrics import roc_auc_score

from customer_assets.churn import model as churn_model_module
from customer_assets.churn.metrics import (
    _rank_groups,
    bootstrap_ci,
    expected_calibration_error,
    weighted_ece,
    weighted_roc_auc,
)
from customer_assets.churn.model import make_base_model, tree_shap
from customer_assets.churn.training import train_and_select
from customer_assets_tests.churn.test_churn_model import FEATURES, synthetic


def _tied_scores(n, seed):
    """Labels and scores rounded to 2 decimals: many ties, across both classes."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.round(np.clip(0.25 * y + 0.75 * rng.random(n), 0, 1), 2)
    return y, p


def _reference_bootstrap(y, p, n_boot=100, seed=0, level=0.95):
    """The definition: resample the rows, sklearn's roc_auc_score and the ECE on each resample."""
    rng = np.random.default_rng(seed)
    aucs, eces = [], []
    for _ in range(n_boot):
        i = rng.integers(0, len(y), len(y))
        if len(np.unique(y[i])) < 2:
            continue
        aucs.append(roc_auc_score(y[i], p[i]))
        eces.append(expected_calibration_error(y[i], p[i]))
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    return {"roc_auc_ci_low": np.percentile(aucs, lo), "roc_auc_ci_high": np.percentile(aucs, hi),
            "ece_ci_low": np.percentile(eces, lo), "ece_ci_high": np.percentile(eces, hi)}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_auc_and_ece_equal_sklearn_on_repeated_rows_with_ties(seed):
    y, p = _tied_scores(400, seed)
    w = np.random.default_rng(seed + 10).integers(0, 4, len(y))  # 0 = row left out
    rep = np.repeat(np.arange(len(y)), w)
    group, n_groups = _rank_groups(p)
    assert weighted_roc_auc(y, group, n_groups, w) == pytest.approx(roc_auc_score(y[rep], p[rep]), abs=1e-12)
    bins = np.minimum((p * 10).astype(int), 9)
    assert weighted_ece(y, p, bins, w) == pytest.approx(expected_calibration_error(y[rep], p[rep]), abs=1e-12)
    # all-tied scores: AUC one half, as sklearn
    assert weighted_roc_auc(y, np.zeros(len(y), int), 1, w) == pytest.approx(0.5)


def test_weighted_auc_of_one_class_is_nan():
    y = np.array([1, 1, 0, 0])
    group, n = _rank_groups(np.array([0.1, 0.2, 0.3, 0.4]))
    assert np.isnan(weighted_roc_auc(y, group, n, [1, 2, 0, 0]))


@pytest.mark.parametrize("n", [30, 2000])
def test_bootstrap_equals_resampling_with_sklearn(n):
    y, p = _tied_scores(n, 3)
    fast, ref = bootstrap_ci(y, p), _reference_bootstrap(y, p)
    assert fast.keys() == ref.keys()
    for k in ref:
        assert fast[k] == pytest.approx(ref[k], abs=1e-12), k
    assert fast["roc_auc_ci_low"] < roc_auc_score(y, p) < fast["roc_auc_ci_high"]


def _xgb_frame(n=1500, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.integers(0, 5, n).astype(float),
                      "c": rng.uniform(size=n), "d": rng.normal(size=n)})
    y = ((X["a"] + 0.5 * X["b"] + rng.normal(size=n)) > 1).astype(int)
    X.loc[rng.random(n) < 0.1, "c"] = np.nan  # missing values follow the learned default direction
    return X, y


def test_tree_shap_equals_xgboost_pred_contribs():
    X, y = _xgb_frame()
    booster = make_base_model("xgboost").fit(X, y).get_booster()
    ref = booster.predict(xgb.DMatrix(X, feature_names=list(X.columns)), pred_contribs=True)[:, :-1]
    ours = tree_shap(booster, X)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=2e-5)
    assert (np.argsort(-ours, axis=1)[:, :2] == np.argsort(-ref, axis=1)[:, :2]).mean() > 0.99


def test_tree_shap_falls_back_to_xgboost_for_deep_trees(monkeypatch):
    X, y = _xgb_frame()
    booster = xgb.XGBClassifier(n_estimators=5, max_depth=4, n_jobs=1).fit(X, y).get_booster()
    ref = booster.predict(xgb.DMatrix(X, feature_names=list(X.columns)), pred_contribs=True)[:, :-1]
    np.testing.assert_allclose(tree_shap(booster, X), ref, atol=2e-5)  # table path for <= 7 splits, else xgb
    monkeypatch.setattr(churn_model_module, "SHAP_TABLE_MAX_SPLITS", 1)
    np.testing.assert_array_equal(tree_shap(booster, X), ref)  # the fallback is XGBoost itself


def _two_snapshots(n_customers=3000):
    df = synthetic(n_train=n_customers, n_eval=n_customers, mode="known", seed=4)
    second = df[df["role"] == "train"].copy()
    second["snapshot_date"] = pd.Timestamp("2011-05-01")
    return pd.concat([df, second], ignore_index=True)


def test_fit_is_bounded_to_a_customer_sample_and_metrics_use_every_eval_row():
    ts = _two_snapshots()
    n_eval = int((ts["role"] == "eval").sum())
    r = train_and_select(ts, FEATURES, max_fit_customers=1000)
    assert r.fit_customers == 1000 and r.fit_rows == 2000  # both snapshots of each sampled customer
    assert r.metrics["logistic_regression"]["n"] == n_eval and len(r.eval_labels) == n_eval
    assert r.train_churn_rate == pytest.approx(ts.loc[ts["role"] == "train", "churned"].mean())
    full = train_and_select(ts, FEATURES)
    assert full.fit_customers == 3000
    assert r.metrics["logistic_regression"]["roc_auc"] == pytest.approx(full.metrics["logistic_regression"]["roc_auc"], abs=0.02)
    assert r.metrics["logistic_regression"]["roc_auc"] != full.metrics["logistic_regression"]["roc_auc"]


def test_a_bound_above_the_customer_count_changes_nothing():
    ts = _two_snapshots(800)
    a = train_and_select(ts, FEATURES)
    b = train_and_select(ts, FEATURES, max_fit_customers=800)
    for kind in ("logistic_regression", "xgboost"):
        np.testing.assert_array_equal(a.eval_probabilities[kind], b.eval_probabilities[kind])
        assert a.metrics[kind] == b.metrics[kind]


def _reference_top_reasons(features, contributions, medians, k=3, directions=None):
    """The row-by-row definition: features by contribution, skipping non-positive ones and stories told."""
    from customer_assets.churn.reasons import ONE_PURCHASE_FEATURES, STORIES, phrase

    cols = list(contributions.columns)
    C = contributions.to_numpy(dtype=float).copy()
    V = features[cols].to_numpy(dtype=float)
    if directions:
        C[(V - np.array([medians[f] for f in cols])) * np.array([directions.get(f, 0) for f in cols]) < 0] = 0.0
    out = {f"reason_{i + 1}": [None] * len(C) for i in range(k)}
    for r in range(len(C)):
        said, told = 0, set()
        for j in np.argsort(-C[r], kind="stable"):
            if said == k or C[r, j] <= 0:
                break
            f = cols[j]
            single = features["active_days"].iloc[r] <= 1
            story = "bought once" if single and f in ONE_PURCHASE_FEATURES else STORIES.get(f, f)
            if story in told:
                continue
            told.add(story)
            out[f"reason_{said + 1}"][r] = (f"Bought once, {features['tenure_days'].iloc[r]:.0f} days ago, never again"
                                            if story == "bought once" else
                                            phrase(f, V[r, j], medians[f], (directions or {}).get(f, 0)))
            said += 1
    return pd.DataFrame(out, index=features.index)


@pytest.mark.parametrize("with_directions", [True, False])
def test_vectorised_top_reasons_equal_the_row_by_row_definition(with_directions):
    from customer_assets.churn.reasons import top_reasons

    rng = np.random.default_rng(5)
    cols = ["recency_days", "frequency", "monetary", "avg_interpurchase_days", "active_days", "tenure_days",
            "orders_30d", "orders_90d", "spend_90d", "return_rate", "gap_ratio", "custom_feature"]
    n = 3000
    feats = pd.DataFrame({c: rng.integers(0, 5, n) * rng.uniform(1, 40) for c in cols})  # zeros, ties at the median
    contrib = pd.DataFrame(rng.normal(size=(n, len(cols))), columns=cols, index=feats.index)
    medians = {c: float(feats[c].median()) for c in cols}
    directions = {c: int(rng.choice([-1, 0, 1])) for c in cols} if with_directions else None
    got = top_reasons(feats, contrib, medians, directions=directions)
    pd.testing.assert_frame_equal(got, _reference_top_reasons(feats, contrib, medians, directions=directions))
    assert got["reason_3"].isna().any() and got["reason_1"].str.startswith("Bought once").any()
