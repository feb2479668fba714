"""Fit ladder behaviour, plain-words flags, CLV discounting and the evaluation metrics."""

import datetime as dt

import lifetimes
import numpy as np
import pandas as pd
import pytest
from ltv_synthetic import synthetic_rows

from customer_assets.ingestion.schema import write_cleaned
from customer_assets.ltv import clv
from customer_assets.ltv import evaluation as ev
from customer_assets.ltv.summary import compute_summary
from customer_assets.ltv.training import value_deciles

CDNOW_BG = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
CDNOW_GG = {"p": 6.25, "q": 3.74, "v": 15.44}


def test_every_failed_fit_is_recorded_and_nothing_raises():
    bad = pd.DataFrame({"customer_id": ["a", "b", "c"], "frequency": [1.0, 2.0, 0.0],
                        "recency": [5.0, 9.0, 0.0], "T": [4.0, 10.0, 3.0], "monetary_value": [1.0, 2.0, 0.0]})
    res = clv.fit_ladder(bad)  # recency > T for customer a: lifetimes refuses the data
    assert res.best is None and res.fitter is None
    assert len(res.attempts) == len(clv.BUYING_LADDER)
    assert all(a.status == "failed" and "recency" in a.error for a in res.attempts)
    assert res.reason.startswith("every fit failed")

    nobody_repeats = bad.assign(frequency=0.0, recency=0.0, monetary_value=0.0)
    res = clv.fit_ladder(nobody_repeats)
    assert res.best is None and res.attempts == [] and "no customer has a repeat purchase" in res.reason
    spend = clv.fit_spend(nobody_repeats)
    assert spend.best is None and "only 0 repeat buyers" in spend.reason


def test_degenerate_parameters_are_flagged_in_plain_words():
    flags = clv.degeneracy_flags("BetaGeoFitter", {"r": 0.7, "alpha": 9.4, "a": 4e-7, "b": 13000.0})
    assert len(flags) == 1 and "nobody ever stops buying" in flags[0]
    assert clv.degeneracy_flags("BetaGeoFitter", CDNOW_BG) == []
    pareto = clv.degeneracy_flags("ParetoNBDFitter", {"r": 0.7, "alpha": 9.4, "s": 1e-8, "beta": 28.0})
    assert "nobody ever stops buying" in pareto[0]
    assert "undefined" in clv.degeneracy_flags("GammaGammaFitter", {"p": 11.0, "q": 0.85, "v": 11.0})[0]
    assert clv.degeneracy_flags("GammaGammaFitter", CDNOW_GG) == []


def test_ladder_keeps_the_best_non_degenerate_fit(con):
    write_cleaned(con, synthetic_rows(n_customers=300, seed=11).to_dict("records"))
    s = compute_summary(con, "2021-12-31")
    res = clv.fit_ladder(s)
    assert res.best is not None and res.best.chosen
    assert sum(a.chosen for a in res.attempts) == 1
    ok = [a for a in res.attempts if a.status == "ok"]
    assert ok, [(a.model, a.penalizer, a.status, a.error) for a in res.attempts]
    assert res.best.status == "ok"
    assert res.best.log_likelihood >= max(a.log_likelihood for a in ok) - clv.LL_TIE
    # the penalty never improves the likelihood it is scored on
    unpen = next(a for a in res.attempts if a.model == "BetaGeoFitter" and a.penalizer == 0)
    pen = next(a for a in res.attempts if a.model == "BetaGeoFitter" and a.penalizer == 0.1)
    if unpen.status != "failed" and pen.status != "failed":
        assert unpen.log_likelihood >= pen.log_likelihood - 1e-6


def test_discounted_clv_equals_lifetimes(con):
    write_cleaned(con, synthetic_rows(n_customers=120, seed=5).to_dict("records"))
    s = compute_summary(con, "2021-12-31")
    rb = s[s["monetary_value"] > 0].reset_index(drop=True)
    bg = clv.build_fitter("BetaGeoFitter", CDNOW_BG)
    gg = clv.build_fitter("GammaGammaFitter", CDNOW_GG)
    ref = gg.customer_lifetime_value(bg, rb["frequency"], rb["recency"], rb["T"], rb["monetary_value"],
                                     time=12, discount_rate=0.01, freq="W")
    pred = clv.predict_customers(rb, {"model": "BetaGeoFitter", "params": CDNOW_BG},
                                 {"model": "GammaGammaFitter", "params": CDNOW_GG}, 13.0, 12, 0.01)
    np.testing.assert_allclose(pred["clv"].to_numpy(), ref.to_numpy(), rtol=1e-9)
    assert pred["prob_alive"].between(0, 1).all()
    # no models: NULL columns, not a crash
    empty = clv.predict_customers(rb, None, None, 13.0)
    assert empty[["expected_purchases", "prob_alive", "expected_avg_order_value", "clv"]].isna().all().all()


def test_normalized_gini_known_answers():
    a = [1, 0, 0, 0]
    assert ev.normalized_gini(a, [0.4, 0.3, 0.2, 0.1]) == pytest.approx(1.0)
    assert ev.normalized_gini(a, [0.1, 0.4, 0.3, 0.2]) == pytest.approx(-1.0)
    # tied predictions share their actual evenly: a constant prediction is no better than random
    assert ev.normalized_gini(a, [1, 1, 1, 1]) == pytest.approx(0.0)
    # hand-computed: order by prediction -> actual [1, 0, 3, 0], cum share [.25, .25, 1, 1]
    # gini = 2.5/4 - 5/8 = 0; best order [3, 1, 0, 0] -> [.75, 1, 1, 1] -> 3.75/4 - 5/8 = 0.3125
    assert ev.normalized_gini([1, 0, 3, 0], [4, 3, 2, 1]) == pytest.approx(0.0)
    assert ev.normalized_gini([3, 1, 0, 0], [4, 3, 2, 1]) == pytest.approx(1.0)
    # [3, 0, 1, 0] -> [.75, .75, 1, 1] -> 3.5/4 - 5/8 = 0.25 -> 0.25 / 0.3125 = 0.8
    assert ev.normalized_gini([3, 0, 1, 0], [4, 3, 2, 1]) == pytest.approx(0.8)
    # [1, 3, 0, 0] -> [.25, 1, 1, 1] -> 3.25/4 - 5/8 = 0.1875 -> 0.6
    assert ev.normalized_gini([1, 3, 0, 0], [4, 3, 2, 1]) == pytest.approx(0.6)
    assert ev.normalized_gini([0, 0], [1, 2]) is None
    m = ev.regression_metrics([0, 10, 0], [1, 7, 2])
    assert m["mae"] == pytest.approx(2.0) and m["rmse"] == pytest.approx(np.sqrt(14 / 3))
    assert (m["predicted_total"], m["actual_total"]) == (10, 10)


def test_naive_baseline_carries_the_past_rate_forward():
    s = pd.DataFrame({
        "customer_id": ["new", "old"],
        "frequency": [1.0, 3.0],
        "first_purchase": [dt.date(2021, 6, 1), dt.date(2021, 1, 3)],
        "historical_spend": [300.0, 600.0],
    })
    b = ev.naive_baseline(s, dt.date(2021, 6, 30), 90).set_index("customer_id")
    # new: 30 days observed, floored at the 90-day horizon -> the same 300 and 2 purchases again
    assert b.loc["new", "pred_revenue"] == pytest.approx(300.0)
    assert b.loc["new", "pred_purchases"] == pytest.approx(2.0)
    # old: 179 days observed (Jan 3 .. Jun 30 inclusive) -> 600 / 179 * 90
    assert b.loc["old", "pred_revenue"] == pytest.approx(600 / 179 * 90)
    assert b.loc["old", "pred_purchases"] == pytest.approx(4 / 179 * 90)


def test_value_deciles():
    v = pd.Series(np.arange(20, dtype=float))
    d = value_deciles(v)
    assert d.tolist() == [i // 2 + 1 for i in range(20)]
    assert value_deciles(pd.Series([np.nan, np.nan])).isna().all()
    assert lifetimes.__version__ == "0.11.3"


def test_predictions_per_distinct_history_equal_per_customer_ones():
    """predict_customers evaluates the buying model once per distinct (frequency, recency, T) and
    spreads the values back: every customer must get what lifetimes gives for his own row."""
    rng = np.random.default_rng(4)
    n = 500
    T = rng.integers(1, 12, n).astype(float)
    summary = pd.DataFrame({
        "customer_id": [f"C{i}" for i in range(n)],
        "frequency": rng.integers(0, 4, n).astype(float),
        "T": T,
        "monetary_value": rng.choice([0.0, 20.0, 35.5], n),
    })
    summary["recency"] = np.where(summary["frequency"] > 0, np.minimum(rng.integers(0, 12, n), T), 0.0)
    summary["monetary_value"] = summary["monetary_value"].where(summary["frequency"] > 0, 0.0)
    assert summary[["frequency", "recency", "T"]].drop_duplicates().shape[0] < n / 2  # many shared histories
    for model, params in (("BetaGeoFitter", CDNOW_BG), ("ParetoNBDFitter", {"r": 0.55, "alpha": 10.58, "s": 0.61, "beta": 11.67})):
        pred = clv.predict_customers(summary, {"model": model, "params": params},
                                     {"model": "GammaGammaFitter", "params": CDNOW_GG}, 13.0, 12, 0.01)
        f = clv.build_fitter(model, params)
        x, tx, T_ = summary["frequency"], summary["recency"], summary["T"]
        np.testing.assert_allclose(pred["expected_purchases"], f.conditional_expected_number_of_purchases_up_to_time(13.0, x, tx, T_), rtol=1e-12)
        np.testing.assert_allclose(pred["prob_alive"], np.clip(f.conditional_probability_alive(x, tx, T_), 0, 1), rtol=1e-12)
        ref = clv.discounted_clv(f, x, tx, T_, pred["expected_avg_order_value"].to_numpy(), 12, 0.01)
        np.testing.assert_allclose(pred["clv"], ref, rtol=1e-9)
        no_clv = clv.predict_customers(summary, {"model": model, "params": params},
                                       {"model": "GammaGammaFitter", "params": CDNOW_GG}, 13.0, with_clv=False)
        assert no_clv["clv"].isna().all()
        pd.testing.assert_series_equal(no_clv["expected_purchases"], pred["expected_purchases"])
