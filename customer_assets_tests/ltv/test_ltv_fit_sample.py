"""Population parameters are fit on a bounded, fixed sample of customers at scale."""

import numpy as np
import pytest

from customer_assets.ltv import clv


def test_ladder_fits_on_a_fixed_bounded_sample(monkeypatch):
    monkeypatch.setattr(clv, "MAX_FIT_CUSTOMERS", 300)
    from lifetimes.generate_data import beta_geometric_nbd_model

    np.random.seed(1)
    data = beta_geometric_nbd_model(39, 0.243, 4.414, 0.793, 2.426, size=1000)  # CDNOW-like customers
    data = data.reset_index().rename(columns={"index": "customer_id"})[["customer_id", "frequency", "recency", "T"]]
    ladder = (("BetaGeoFitter", 0.0),)
    first = clv.fit_ladder(data, ladder)
    second = clv.fit_ladder(data, ladder)
    assert first.attempts[0].n_customers == 300
    assert first.best.params == second.best.params  # the same sample every time
    shuffled = clv.fit_ladder(data.sample(frac=1.0, random_state=5), ladder)
    assert shuffled.best.params == pytest.approx(first.best.params, rel=1e-6)  # chosen by customer, not by row position


def _pareto_customers(n=800, seed=3):
    from lifetimes.generate_data import pareto_nbd_model

    np.random.seed(seed)
    data = pareto_nbd_model(39, 0.55, 10.58, 0.61, 11.67, size=n)  # CDNOW's published Pareto/NBD
    data = data.reset_index().rename(columns={"index": "customer_id"})[["customer_id", "frequency", "recency", "T"]]
    data["T"] = data["T"].round()  # whole weeks, so histories repeat as they do with daily data
    data["recency"] = np.minimum(data["recency"].round(), data["T"])
    return data


def test_pareto_fit_is_deterministic_and_weighting_keeps_the_fit():
    import lifetimes

    data = _pareto_customers()
    args = clv.pareto_fit_arguments(data)
    assert args["weights"].sum() == len(data)
    assert len(args["frequency"]) < len(data)  # repeated histories are one weighted row
    ladder = (("ParetoNBDFitter", 0.0),)
    np.random.seed(0)
    first = clv.fit_ladder(data, ladder).attempts[0]
    np.random.seed(123)  # lifetimes' own start is drawn from the global numpy state
    second = clv.fit_ladder(data, ladder).attempts[0]
    assert first.params == second.params
    with np.errstate(all="ignore"):
        plain = lifetimes.ParetoNBDFitter().fit(data["frequency"], data["recency"], data["T"], initial_params=np.ones(4))
    for k in ("r", "alpha", "s", "beta"):
        assert first.params[k] == pytest.approx(plain.params_[k], rel=1e-3), k


def test_pareto_fit_with_distinct_hyp2f1_is_lifetimes_fit_to_the_bit():
    import lifetimes

    from customer_assets.ltv import clv

    data = _pareto_customers(n=1500, seed=5)
    data["T"] += np.random.default_rng(5).integers(0, 6, len(data))  # customers of different ages
    args = clv.pareto_fit_arguments(data)
    n = len(args["frequency"])  # something to share in both hyp2f1 calls:
    assert len(set(zip(args["frequency"], args["recency"]))) < n and len(set(zip(args["frequency"], args["T"]))) < n
    with np.errstate(all="ignore"):
        plain = lifetimes.ParetoNBDFitter().fit(**args)
        fast = clv._pareto_fitter_class()().fit(**args)
        p = np.array([0.6, 9.0, 0.5, 12.0])
        x, r, T, w = (np.asarray(args[k], float) for k in ("frequency", "recency", "T", "weights"))
        for q in (p, p[[0, 3, 2, 1]]):  # alpha < beta and alpha > beta
            assert fast._negative_log_likelihood(q, x.astype(int), r, T, w, 0.1) == \
                lifetimes.ParetoNBDFitter._negative_log_likelihood(q, x.astype(int), r, T, w, 0.1)
    assert isinstance(fast, lifetimes.ParetoNBDFitter)
    assert np.array_equal(fast.params_.to_numpy(), plain.params_.to_numpy())
    assert fast._negative_log_likelihood_ == plain._negative_log_likelihood_


def test_distinct_pairs_grouping_is_reused_only_for_equal_arrays():
    from customer_assets.ltv import clv

    f = np.array([2, 0, 2, 1, 0, 2])
    o = np.array([1.5, 0.0, 1.5, 3.0, 0.0, 2.0])
    first, inverse = clv._distinct_pairs(f, o)
    assert np.array_equal(f[first][inverse], f) and np.array_equal(o[first][inverse], o) and len(first) == 4
    o[2] = 9.0  # the same array object, changed in place: grouped again, not taken from the cache
    first, inverse = clv._distinct_pairs(f, o)
    assert len(first) == 5 and np.array_equal(o[first][inverse], o)
