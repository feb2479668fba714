"""Population parameters are fit on a bounded, fixed sample of customers at scale."""

import numpy as np

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
