"""Online Retail, 90-day horizon, out-of-time: the measured quality (docs/churn.md)."""

import datetime as dt

import duckdb
import pytest

from customer_assets.churn.features import model_feature_columns
from customer_assets.churn.training import build_training_set, plan_windows, train_and_select

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def result(retail_db):
    with duckdb.connect(str(retail_db), read_only=True) as con:
        first, last = con.execute("SELECT min(order_date), max(order_date) FROM cleaned_transactions").fetchone()
        w = plan_windows(first, last, 90, 4)
        ts = build_training_set(con, w)
        features = model_feature_columns(con)
    return w, train_and_select(ts, features)


def test_windows_and_churn_rates(result):
    w, r = result
    assert w.eval_snapshot == dt.date(2011, 9, 10) and w.as_of == dt.date(2011, 12, 9)
    assert r.metrics["logistic_regression"]["n"] == 3368
    assert r.metrics["logistic_regression"]["churn_rate"] == pytest.approx(0.430, abs=0.002)
    assert r.train_churn_rate == pytest.approx(0.485, abs=0.005)  # the Christmas season lowers churn at eval


def test_models_beat_both_baselines(result):
    _, r = result
    m = r.metrics
    for kind in ("logistic_regression", "xgboost"):
        assert m[kind]["roc_auc"] > m["rule_baseline"]["roc_auc"] + 0.08
        assert m[kind]["pr_auc"] > m["rule_baseline"]["pr_auc"]
        assert m[kind]["brier"] < m["majority_class"]["brier"] - 0.03
        assert m[kind]["f1"] > m["rule_baseline"]["f1"]
        # measured 0.744 / 0.742 (docs/churn.md); a floor that catches a broken feature or a leak-free regression
        assert m[kind]["roc_auc"] > 0.73
        assert m[kind]["ece"] < 0.09


@pytest.mark.xfail(strict=True, reason="issue 4's target is not reached: measured ROC AUC 0.744 and ECE 0.055 "
                   "out-of-time (see docs/churn.md for what was tried). strict: passing would flag the change.")
def test_quality_target_roc_auc_0_76_and_ece_0_05(result):
    _, r = result
    best = r.metrics[r.winner]
    assert best["roc_auc"] >= 0.76 and best["ece"] <= 0.05
