"""Deterministic synthetic transactions from a known BG/NBD process (shared by the LTV tests).

Customers arrive over the first `arrival_days`; each buys at a Poisson rate lambda ~ Gamma(r, alpha)
(per week) and after every purchase drops out with probability p ~ Beta(a, b); order values are
lognormal. Several lines per order, so day-level aggregation is exercised.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

START = dt.date(2021, 1, 1)


def synthetic_rows(n_customers=400, days=364, arrival_days=120, r=0.8, alpha=6.0, a=0.8, b=2.5, seed=7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(n_customers):
        lam = rng.gamma(r, 1.0 / alpha) / 7.0  # per day
        p = rng.beta(a, b)
        t = float(rng.integers(0, arrival_days))
        mean_value = rng.lognormal(3.5, 0.5)
        k = 0
        while t < days:
            n_lines = int(rng.integers(1, 4))
            value = rng.lognormal(np.log(mean_value), 0.4)
            day = START + dt.timedelta(days=int(t))
            for line in range(n_lines):
                rows.append({
                    "customer_id": f"C{c:04d}", "order_id": f"O{c:04d}-{k}",
                    "order_datetime": dt.datetime.combine(day, dt.time(10 + line)),
                    "product_id": f"P{line}", "quantity": 1.0, "unit_price": round(value / n_lines, 2),
                })
            k += 1
            if rng.random() < p or lam <= 0:
                break
            t += rng.exponential(1.0 / lam)
    return pd.DataFrame(rows)
