"""Hand-made upstream tables (the columns the contract promises) for the actions/reporting tests.

40 customers C000..C039: churn_probability = i/40, clv_12m = 100 + 10 i (C039 has no CLV row),
countries: C000-C019 United Kingdom, C020-C029 France, C030-C039 Germany.
"""

import pandas as pd

from customer_assets.ingestion.schema import write_cleaned
from customer_assets.settings import LOYALTY_REWARDS

N = 40
TIERS = ["Platinum", "Gold", "Silver", "Bronze"]
SEGMENTS = ["Champions", "Loyal Customers", "At Risk", "Hibernating", "Potential Loyalist"]


def cid(i):
    return f"C{i:03d}"


def country(i):
    return "United Kingdom" if i < 20 else ("France" if i < 30 else "Germany")


def band(p, high=0.7, low=0.3):
    return "High" if p > high else ("Low" if p < low else "Medium")


def write_upstream(con, skip=()):
    """Write every upstream table except those named in `skip`."""
    rows = []
    for i in range(N):
        for k in range(1 + i % 3):
            rows.append({
                "customer_id": cid(i), "order_id": f"O{i:03d}{k}",
                "order_datetime": f"2011-{1 + (i + k) % 12:02d}-{1 + i % 27:02d} 10:00",
                "product_id": f"P{k}", "product_name": f"Product {k}", "quantity": 1 + k,
                "unit_price": 2.5 + i % 5, "country": country(i),
            })
    rows.append({"customer_id": cid(0), "order_id": "LAST", "order_datetime": "2011-12-09 12:00",
                 "product_id": "P0", "product_name": "Product 0", "quantity": 1, "unit_price": 1.0,
                 "country": country(0)})
    tables = {
        "churn_scores": pd.DataFrame({
            "customer_id": [cid(i) for i in range(N)],
            "churn_probability": [i / N for i in range(N)],
            "risk_band": [band(i / N) for i in range(N)],
            "reason_1": ["long time since last order"] * N, "reason_2": ["few orders"] * N,
            "reason_3": ["low spend"] * N, "model_version": [1] * N,
        }),
        "customer_ltv": pd.DataFrame({
            "customer_id": [cid(i) for i in range(N - 1)],
            "clv_12m": [100.0 + 10 * i for i in range(N - 1)],
            "value_decile": [1 + i * 10 // (N - 1) for i in range(N - 1)],
            "historical_spend": [50.0 + i for i in range(N - 1)],
        }),
        "loyalty_tiers": pd.DataFrame({
            "customer_id": [cid(i) for i in range(N)],
            "tier": [TIERS[i % 4] for i in range(N)],
            "reward": [LOYALTY_REWARDS[TIERS[i % 4]] for i in range(N)],
        }),
        "rfm_segments": pd.DataFrame({
            "customer_id": [cid(i) for i in range(N)],
            "recency_days": [i * 5 for i in range(N)], "frequency": [1 + i % 3 for i in range(N)],
            "monetary": [100.0 + 7 * i for i in range(N)],
            "segment": [SEGMENTS[i % 5] for i in range(N)],
        }),
        "dim_customer": pd.DataFrame({
            "customer_id": [cid(i) for i in range(N)], "country": [country(i) for i in range(N)],
        }),
    }
    if "cleaned_transactions" not in skip:
        write_cleaned(con, rows)
    for name, df in tables.items():
        if name in skip:
            continue
        con.register("__df", df)
        con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM __df")
        con.unregister("__df")
