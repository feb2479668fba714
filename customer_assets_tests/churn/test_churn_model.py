"""Churn models on synthetic frames with known answers; metrics, baselines, bands and reasons."""

import numpy as np
import pandas as pd
import pytest

from customer_assets.churn.metrics import (
    baseline_metrics,
    evaluate,
    expected_calibration_error,
    rule_baseline_predictions,
)
from customer_assets.churn.model import best_f1_threshold
from customer_assets.churn.reasons import phrase, top_reasons
from customer_assets.churn.scoring import risk_band, score_customers
from customer_assets.churn.training import train_and_select

FEATURES = ["recency_days", "frequency", "monetary", "avg_interpurchase_days", "active_days", "noise"]


def synthetic(n_train=4000, n_eval=3000, mode="separable", seed=0):
    rng = np.random.default_rng(seed)
    n = n_train + n_eval
    df = pd.DataFrame({
        "customer_id": [f"c{i}" for i in range(n)],
        "snapshot_date": pd.Timestamp("2011-06-01"),
        "role": ["train"] * n_train + ["eval"] * n_eval,
        "recency_days": rng.uniform(0, 300, n),
        "frequency": rng.integers(1, 30, n).astype(float),
        "monetary": rng.lognormal(5, 1, n),
        "avg_interpurchase_days": rng.uniform(5, 120, n),
        "active_days": rng.integers(1, 20, n).astype(float),
        "noise": rng.normal(size=n),
    })
    if mode == "separable":
        df["churned"] = (df["recency_days"] > 150).astype(int)
    elif mode == "noise":
        df["churned"] = rng.integers(0, 2, n)
    else:  # known probabilities
        z = (df["recency_days"] - 150) / 50 - 0.5 * np.log(df["frequency"])
        df["p_true"] = 1 / (1 + np.exp(-z))
        df["churned"] = (rng.uniform(size=n) < df["p_true"]).astype(int)
    return df


@pytest.fixture(scope="module")
def separable_result():
    return train_and_select(synthetic(mode="separable"), FEATURES)


def test_separable_churners_give_auc_above_0_9(separable_result):
    for kind in ("logistic_regression", "xgboost"):
        assert separable_result.metrics[kind]["roc_auc"] > 0.9, kind
    assert separable_result.winner in ("logistic_regression", "xgboost")
    # the metric set of the issue, for both models and both baselines
    for name in ("logistic_regression", "xgboost", "majority_class", "rule_baseline"):
        assert {"roc_auc", "pr_auc", "brier", "ece", "f1", "precision", "recall", "accuracy"} <= set(
            separable_result.metrics[name])


def test_pure_noise_gives_auc_about_0_5():
    r = train_and_select(synthetic(mode="noise"), FEATURES)
    for kind in ("logistic_regression", "xgboost"):
        assert abs(r.metrics[kind]["roc_auc"] - 0.5) < 0.05, (kind, r.metrics[kind]["roc_auc"])
        # a model that learnt nothing must not claim confident probabilities
        assert r.metrics[kind]["ece"] < 0.05


def test_calibrated_probabilities_match_known_probabilities():
    df = synthetic(n_train=6000, n_eval=4000, mode="probabilistic", seed=3)
    r = train_and_select(df, FEATURES)
    for kind in ("logistic_regression", "xgboost"):
        assert r.metrics[kind]["ece"] < 0.04, (kind, r.metrics[kind]["ece"])
    # the best achievable AUC is the true probabilities'; the models come close
    ev = df[df["role"] == "eval"]
    oracle = evaluate(ev["churned"], ev["p_true"], 0.5)["roc_auc"]
    assert r.metrics[r.winner]["roc_auc"] > oracle - 0.02


def test_threshold_is_chosen_on_training_not_evaluation(separable_result):
    # separable at recency 150: a good threshold splits the calibrated probabilities, far from 0 and 1
    for kind, t in separable_result.thresholds.items():
        assert 0.05 < t < 0.95
        assert separable_result.metrics[kind]["threshold"] == t


def test_best_f1_threshold_known_answer():
    y = np.array([0, 0, 1, 1, 1])
    p = np.array([0.1, 0.6, 0.4, 0.7, 0.9])
    # cut 0.1: F1 0.75; cut 0.4: 3 of 4 predicted are churners, all 3 caught: F1 6/7;
    # cut 0.6: F1 2/3; cut 0.7: F1 0.8; cut 0.9: F1 0.5
    assert best_f1_threshold(y, p) == pytest.approx(0.4)


def test_ece_known_answers():
    assert expected_calibration_error([1, 1, 1, 1], [0.9, 0.9, 0.9, 0.9]) == pytest.approx(0.1)
    assert expected_calibration_error([0, 1], [0.5, 0.5]) == pytest.approx(0.0)
    # two bins: [0.1, 0.1] with rate 0 (gap 0.1) and [0.8, 0.8] with rate 1 (gap 0.2) -> 0.15
    assert expected_calibration_error([0, 0, 1, 1], [0.1, 0.1, 0.8, 0.8]) == pytest.approx(0.15)
    assert expected_calibration_error([1], [1.0]) == pytest.approx(0.0)  # p = 1 lands in the last bin


def test_baselines_known_answers():
    ev = pd.DataFrame({
        "recency_days": [100, 100, 5, 100, 100, 100],
        "avg_interpurchase_days": [10, 10, 10, 10, 200, 50],
        "active_days": [2, 2, 2, 1, 2, 3],
        "monetary": [1, 2, 3, 1, 2, 50],
        "frequency": [1, 1, 1, 1, 1, 9],
        "churned": [1, 1, 0, 0, 1, 0],
    })
    # frequency median 1: nobody is strictly below it, the rule fires for nobody
    assert rule_baseline_predictions(ev).tolist() == [0, 0, 0, 0, 0, 0]
    ev["frequency"] = [1, 2, 1, 1, 5, 9]   # median 1.5; monetary median 2
    pred = rule_baseline_predictions(ev)
    # row 0: recency 100 > gap 10, monetary 1 < 2, frequency 1 < 1.5 -> churn
    # row 3: one purchase day: its gap is the repeat customers' median gap (10, 10, 10, 200, 50 -> 10): churn
    assert pred.tolist() == [1, 0, 0, 1, 0, 0]
    m = baseline_metrics(ev, train_churn_rate=0.6)
    assert m["majority_class"]["accuracy"] == pytest.approx(0.5)  # predicts churn for all; 3 of 6 churned
    assert m["majority_class"]["roc_auc"] == 0.5
    assert m["majority_class"]["brier"] == pytest.approx(np.mean((np.array([1, 1, 0, 0, 1, 0]) - 0.6) ** 2))
    assert m["rule_baseline"]["precision"] == pytest.approx(0.5) and m["rule_baseline"]["recall"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("p,band", [
    (0.0, "Low"), (0.2999, "Low"), (0.3, "Medium"), (0.5, "Medium"), (0.7, "Medium"),
    (0.70001, "High"), (1.0, "High"),
])
def test_risk_band_boundaries(p, band):
    assert risk_band([p], high=0.7, low=0.3)[0] == band


def test_risk_band_bounds_are_settings():
    assert risk_band([0.5, 0.5], high=0.4, low=0.2).tolist() == ["High", "High"]
    assert risk_band([0.2], high=0.4, low=0.2).tolist() == ["Medium"]
    with pytest.raises(ValueError):
        risk_band([0.5], high=0.3, low=0.7)


def test_scores_reasons_in_words(separable_result):
    model = separable_result.models["logistic_regression"]
    artifact = {"pipeline": model, "features": FEATURES, "feature_medians": model.feature_medians}
    X = pd.DataFrame({"customer_id": ["late", "recent"], "recency_days": [290.0, 3.0], "frequency": [5.0, 5.0],
                      "monetary": [100.0, 100.0], "avg_interpurchase_days": [30.0, 30.0],
                      "active_days": [5.0, 5.0], "noise": [0.0, 0.0]})
    s = score_customers(artifact, X, model_version=3).set_index("customer_id")
    assert s.loc["late", "churn_probability"] > 0.9 and s.loc["late", "risk_band"] == "High"
    assert s.loc["recent", "churn_probability"] < 0.1 and s.loc["recent", "risk_band"] == "Low"
    assert s.loc["late", "reason_1"] == "No purchase for 290 days"
    assert "recency" not in str(s.loc["recent", "reason_1"])  # a recent buyer is never told recency is a reason
    assert (s["model_version"] == 3).all()
    with pytest.raises(ValueError, match="needs features"):
        score_customers(artifact, X.drop(columns=["noise"]), model_version=3)


def test_top_reasons_only_positive_and_on_the_churn_side():
    feats = pd.DataFrame({"recency_days": [200.0, 200.0], "frequency": [30.0, 1.0], "monetary": [10.0, 10.0]})
    contrib = pd.DataFrame({"recency_days": [1.0, 1.0], "frequency": [2.0, 0.5], "monetary": [-1.0, -1.0]})
    medians = {"recency_days": 50.0, "frequency": 3.0, "monetary": 100.0}
    r = top_reasons(feats, contrib, medians, directions={"recency_days": 1, "frequency": -1, "monetary": -1})
    # row 0: frequency 30 is on the safe side (churners buy less often): not a reason despite +2
    assert r.iloc[0].tolist() == ["No purchase for 200 days", None, None]
    assert r.iloc[1].tolist() == ["No purchase for 200 days", "Only 1 order(s) so far", None]
    assert phrase("unknown_feature", 5.0, 1.0) == "unknown feature above typical (5)"


def test_one_time_buyer_is_told_once_not_three_times():
    feats = pd.DataFrame({"avg_interpurchase_days": [204.0, 30.0], "active_days": [1.0, 4.0],
                          "frequency": [1.0, 4.0], "tenure_days": [204.0, 120.0], "orders_90d": [0.0, 1.0],
                          "orders_180d": [0.0, 1.0]})
    contrib = pd.DataFrame({"avg_interpurchase_days": [0.5, 0.1], "active_days": [0.9, 0.5], "frequency": [0.7, 0.6],
                            "tenure_days": [-0.2, -0.2], "orders_90d": [0.3, 0.4], "orders_180d": [0.35, 0.8]})
    medians = {"avg_interpurchase_days": 40.0, "active_days": 5.0, "frequency": 5.0, "tenure_days": 150.0,
               "orders_90d": 2.0, "orders_180d": 3.0}
    r = top_reasons(feats, contrib, medians, directions={"avg_interpurchase_days": 1, "active_days": -1,
                                                         "frequency": -1, "tenure_days": -1, "orders_90d": -1,
                                                         "orders_180d": -1})
    # one-time buyer: frequency / active days / gap are one story; 180 and 90 days are one story
    assert r.iloc[0].tolist() == ["Bought once, 204 days ago, never again", "No orders in the last 180 days", None]
    # a repeat buyer: the 90-day count is not repeated after the 180-day one; its gap is below median (safe side)
    # and "4 orders" and "4 purchase days" are one story too
    assert r.iloc[1].tolist() == ["Only 1 order(s) in the last 180 days", "Only 4 order(s) so far", None]


def test_platt_alternative_keeps_the_order_and_unknown_method_is_an_error():
    from customer_assets.churn.model import fit_calibrated

    df = synthetic(n_train=1500, n_eval=10, mode="probabilistic", seed=5)
    tr = df[df["role"] == "train"]
    platt, oof = fit_calibrated("logistic_regression", tr[FEATURES], tr["churned"], tr["customer_id"], method="platt")
    raw = platt.raw_score(tr)
    p = platt.predict_proba(tr)[:, 1]
    assert np.all(np.diff(p[np.argsort(raw)]) >= -1e-12)  # monotone in the raw score: same ranking
    assert abs(p.mean() - tr["churned"].mean()) < 0.03 and not np.isnan(oof).any()
    with pytest.raises(ValueError, match="unknown calibration method"):
        fit_calibrated("logistic_regression", tr[FEATURES], tr["churned"], tr["customer_id"], method="beta")
