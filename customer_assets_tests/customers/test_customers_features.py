"""Customer features: hand-computed values, the snapshot boundary and leakage."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from customer_assets.customers.features import (
    FEATURE_COLUMNS,
    available_optional_features,
    compute_customer_features,
    customer_features_sql,
)
from customer_assets.ingestion.schema import empty_quarantine_sql, write_cleaned

SNAP = dt.date(2021, 6, 30)


def line(cust, order, when, product, qty, price, **extra):
    return {"customer_id": cust, "order_id": order, "order_datetime": when, "product_id": product,
            "quantity": qty, "unit_price": price, **extra}


BEFORE = [
    line("A", "A1", "2021-01-01 10:00", "P1", 2, 10.0),
    line("A", "A1", "2021-01-01 10:00", "P2", 1, 5.0),
    line("A", "A2", "2021-04-01 09:00", "P1", 1, 10.0),
    line("A", "A3", "2021-06-20 12:00", "P3", 4, 2.5),
    line("A", "A3", "2021-06-20 12:00", "P1", 1, 8.0),
    line("B", "B1", "2021-06-30 23:59", "P2", 2, 5.0),
    line(None, "X1", "2021-03-01 08:00", "P1", 1, 1.0),  # no customer: ignored
]
AFTER = [
    line("A", "A4", "2021-07-15 10:00", "P1", 100, 1.0),
    line("B", "B2", "2021-07-01 00:00", "P3", 1, 99.0),
    line("C", "C1", "2021-07-02 10:00", "P2", 1, 5.0),
]


def write_quarantine(con, cancels):
    con.execute(f"CREATE OR REPLACE TABLE quarantined_transactions AS {empty_quarantine_sql()}")
    for cust, when in cancels:
        con.execute(
            "INSERT INTO quarantined_transactions (reason, customer_id, order_id, order_datetime, order_date, quantity)"
            " VALUES ('cancellation', ?, 'Cx', ?, CAST(? AS DATE), -1)",
            [cust, when, when],
        )


CANCELS_BEFORE = [("B", "2021-06-30 10:00")]
CANCELS_AFTER = [("A", "2021-07-01 10:00"), ("B", "2021-07-03 10:00")]

EXPECTED = {
    "A": dict(recency_days=10, frequency=3, monetary=53, avg_order_value=53 / 3, unique_products=3,
              tenure_days=180, active_days=3, avg_interpurchase_days=85, purchase_span_days=170,
              orders_per_30d=0.5, orders_30d=1, orders_90d=1, orders_180d=2,  # Apr 1 / Jan 1 are s-90 / s-180: out
              spend_30d=18, spend_90d=18, spend_180d=28, spend_trend=(18 - 10) / 28, return_rate=0,
              price_index=53 / 55),  # medians P1 10, P2 5, P3 2.5 -> 2*10+5+10+4*2.5+10 = 55
    "B": dict(recency_days=0, frequency=1, monetary=10, avg_order_value=10, unique_products=1,
              tenure_days=0, active_days=1, avg_interpurchase_days=0, purchase_span_days=0,
              orders_per_30d=1, orders_30d=1, orders_90d=1, orders_180d=1,
              spend_30d=10, spend_90d=10, spend_180d=10, spend_trend=1, return_rate=1, price_index=1),
}


def test_hand_computed_features(con):
    write_cleaned(con, BEFORE + AFTER)
    write_quarantine(con, CANCELS_BEFORE + CANCELS_AFTER)
    df = compute_customer_features(con, SNAP).set_index("customer_id")
    assert list(df.index) == ["A", "B"]  # C only buys after the snapshot; the NULL customer is dropped
    assert list(df.columns) == ["snapshot_date"] + FEATURE_COLUMNS + ["price_index"]
    assert (pd.to_datetime(df["snapshot_date"]).dt.date == SNAP).all()
    for cust, expected in EXPECTED.items():
        for col, value in expected.items():
            assert df.loc[cust, col] == pytest.approx(value), (cust, col)
    assert not df[FEATURE_COLUMNS].isna().any().any()


def test_no_leakage_from_after_the_snapshot(con):
    write_cleaned(con, BEFORE)
    write_quarantine(con, CANCELS_BEFORE)
    without = compute_customer_features(con, SNAP)
    write_cleaned(con, BEFORE + AFTER)
    write_quarantine(con, CANCELS_BEFORE + CANCELS_AFTER)
    with_future = compute_customer_features(con, SNAP)
    pd.testing.assert_frame_equal(without, with_future)
    # and the future rows do matter at a later snapshot (so the test can fail)
    later = compute_customer_features(con, "2021-07-31").set_index("customer_id")
    assert later.loc["A", "frequency"] == 4 and later.loc["A", "return_rate"] == pytest.approx(1 / 6)
    assert "C" in later.index


def test_optional_features_follow_the_mapping(con):
    rows = [dict(r, discount=d, store_id=s) for r, d, s in zip(
        BEFORE[:6], [0, 1.5, None, 0, 2.0, 0], ["S1", "S1", "S2", "S1", "S1", "S3"])]
    write_cleaned(con, rows)  # no quarantine table: return_rate is 0
    assert available_optional_features(con) == ["price_index", "discount_line_share", "store_visits"]
    df = compute_customer_features(con, SNAP).set_index("customer_id")
    assert df.loc["A", "discount_line_share"] == pytest.approx(2 / 5)
    assert df.loc["A", "store_visits"] == 3  # (S1, Jan 1), (S2, Apr 1), (S1, Jun 20)
    assert df.loc["B", "store_visits"] == 1 and df.loc["B", "discount_line_share"] == 0
    assert (df["return_rate"] == 0).all()


def test_without_product_fields_price_index_is_absent(con):
    write_cleaned(con, [{k: v for k, v in r.items() if k != "product_id"} for r in BEFORE])
    df = compute_customer_features(con, SNAP)
    assert "price_index" not in df.columns
    assert (df["unique_products"] == 0).all()


def test_bad_snapshot_and_missing_table(con):
    with pytest.raises(TypeError):
        customer_features_sql(20210630)
    with pytest.raises(ValueError, match="unknown optional"):
        customer_features_sql(SNAP, optional=["nope"])
    with pytest.raises(ValueError, match="cleaned_transactions"):
        compute_customer_features(con, SNAP)
