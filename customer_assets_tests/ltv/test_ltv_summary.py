"""The DuckDB summary equals lifetimes' summary_data_from_transaction_data, and hand-computed values."""

import numpy as np
import pandas as pd
import pytest
from lifetimes.utils import summary_data_from_transaction_data
from ltv_synthetic import synthetic_rows

from customer_assets.ingestion.schema import write_cleaned
from customer_assets.ltv.summary import calibration_with_holdout, compute_summary


def test_summary_hand_computed(con):
    write_cleaned(con, [
        # A: first day 2021-01-01 (two orders, 10 + 5), repeat days 01-15 (two lines 20 + 4) and 01-29 (30)
        {"customer_id": "A", "order_id": "1", "order_datetime": "2021-01-01 09:00", "quantity": 1, "unit_price": 10},
        {"customer_id": "A", "order_id": "2", "order_datetime": "2021-01-01 17:00", "quantity": 1, "unit_price": 5},
        {"customer_id": "A", "order_id": "3", "order_datetime": "2021-01-15 10:00", "quantity": 2, "unit_price": 10},
        {"customer_id": "A", "order_id": "3", "order_datetime": "2021-01-15 10:00", "quantity": 1, "unit_price": 4},
        {"customer_id": "A", "order_id": "4", "order_datetime": "2021-01-29 10:00", "quantity": 1, "unit_price": 30},
        # B: one purchase day only, and a purchase after the end (not observed)
        {"customer_id": "B", "order_id": "5", "order_datetime": "2021-01-22 10:00", "quantity": 1, "unit_price": 7},
        {"customer_id": "B", "order_id": "6", "order_datetime": "2021-02-20 10:00", "quantity": 1, "unit_price": 70},
        # C: only after the end: not a customer yet
        {"customer_id": "C", "order_id": "7", "order_datetime": "2021-03-01 10:00", "quantity": 1, "unit_price": 1},
    ])
    s = compute_summary(con, "2021-02-12").set_index("customer_id")
    assert list(s.index) == ["A", "B"]
    assert s.loc["A", "frequency"] == 2
    assert s.loc["A", "recency"] == pytest.approx(28 / 7)
    assert s.loc["A", "T"] == pytest.approx(42 / 7)
    assert s.loc["A", "monetary_value"] == pytest.approx((24 + 30) / 2)
    assert s.loc["A", "historical_spend"] == pytest.approx(69)
    assert (s.loc["B", "frequency"], s.loc["B", "recency"], s.loc["B", "monetary_value"]) == (0, 0, 0)
    assert s.loc["B", "T"] == pytest.approx(21 / 7)

    h = calibration_with_holdout(con, "2021-02-12", "2021-03-31").set_index("customer_id")
    assert list(h.index) == ["A", "B"]  # C first bought in the holdout: nothing predicted it
    assert (h.loc["B", "actual_purchases"], h.loc["B", "actual_revenue"]) == (1, 70)
    assert (h.loc["A", "actual_purchases"], h.loc["A", "actual_revenue"]) == (0, 0)


def test_summary_equals_lifetimes_on_synthetic_data(con):
    rows = synthetic_rows(n_customers=300, seed=3)
    write_cleaned(con, rows.to_dict("records"))
    end = "2021-08-31"
    mine = compute_summary(con, end).set_index("customer_id").sort_index()

    tx = con.execute(
        "SELECT customer_id, order_datetime, line_total FROM cleaned_transactions WHERE order_date <= DATE '2021-08-31'"
    ).df()
    ref = summary_data_from_transaction_data(
        tx, "customer_id", "order_datetime", monetary_value_col="line_total", observation_period_end=end, freq="D"
    ).sort_index()
    ref["recency"] = ref["recency"] / 7
    ref["T"] = ref["T"] / 7
    assert len(mine) == len(ref) > 250
    assert list(mine.index) == list(ref.index)
    assert (mine["frequency"] > 0).sum() > 100  # the comparison covers repeat buyers
    for col in ("frequency", "recency", "T", "monetary_value"):
        np.testing.assert_allclose(mine[col].to_numpy(), ref[col].to_numpy(), rtol=1e-9, atol=1e-9, err_msg=col)
    assert isinstance(mine, pd.DataFrame)


def test_summary_from_the_feature_base_equals_the_one_from_the_lines(retail_db, tmp_path):
    """customer_ltv scores from the feature base's order_days (summary_from_feature_base): on
    Online Retail, at the data end and at a date inside it, the same customers and counts, and the
    same money up to the order of the additions."""
    import shutil

    import duckdb

    from customer_assets.ltv.summary import summary_from_feature_base

    db = tmp_path / "w.duckdb"
    shutil.copy(retail_db, db)
    con = duckdb.connect(str(db))
    for end in ("2011-12-09", "2011-06-30"):
        lines = compute_summary(con, end).set_index("customer_id")
        base = summary_from_feature_base(con, end).set_index("customer_id")
        assert len(lines) > 2500
        assert list(base.index) == list(lines.index)
        for col in ("frequency", "recency", "T", "first_purchase"):
            assert (base[col] == lines[col]).all(), col
        for col in ("monetary_value", "historical_spend"):
            np.testing.assert_allclose(base[col], lines[col], rtol=1e-9, atol=1e-9)
        assert (lines["frequency"] > 0).sum() > 1000  # repeat buyers' money compared too
