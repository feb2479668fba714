"""Personas fitted on a bounded customer sample: unchanged below the bound, every customer assigned above."""

import numpy as np
import pandas as pd

from customer_assets.common.sampling import sample_customers
from customer_assets.customers.personas import fit_personas


def synthetic_features(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    group = rng.integers(0, 3, n)
    return pd.DataFrame({
        "customer_id": [f"c{i:05d}" for i in range(n)],
        "recency_days": rng.gamma(2, 20, n) * (1 + 5 * (group == 2)),
        "frequency": 1 + rng.poisson(1 + 8 * (group == 0)),
        "monetary": rng.lognormal(5 + (group == 0), 0.5, n),
        "avg_order_value": rng.lognormal(4, 0.3, n),
        "unique_products": 1 + rng.poisson(10, n),
        "orders_per_30d": rng.gamma(1, 0.5 + (group == 0), n),
        "tenure_days": rng.uniform(0, 370, n),
    })


def test_bound_above_n_changes_nothing():
    f = synthetic_features(600)
    a, b = fit_personas(f, 3, 5, 300), fit_personas(f, 3, 5, 300, max_fit_customers=600)
    assert a.k == b.k and a.silhouettes == b.silhouettes
    assert (a.assignments["cluster"] == b.assignments["cluster"]).all()


def test_fit_on_sample_assigns_every_customer():
    f = synthetic_features(3000)
    r = fit_personas(f, 3, 5, 300, max_fit_customers=800)
    assert len(r.assignments) == 3000 and r.assignments["cluster"].between(0, r.k - 1).all()
    assert r.assignments["cluster"].nunique() == r.k
    # the centres come from the sample: refitting on the sample alone gives the same centres
    s = fit_personas(sample_customers(f, 800), 3, 5, 300)
    assert s.k == r.k
    np.testing.assert_allclose(np.sort(s.model.centroids()["monetary"]), np.sort(r.model.centroids()["monetary"]))
    full = fit_personas(f, 3, 5, 300)
    assert not np.allclose(np.sort(full.model.centroids()["monetary"]), np.sort(r.model.centroids()["monetary"]))
