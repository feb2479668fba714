"""Churn labels and features: known answers, leakage, out-of-time windows."""

import datetime as dt

import pytest

from customer_assets.churn.features import churn_feature_frame, churn_labels, labelled_frame
from customer_assets.churn.training import InsufficientHistory, plan_windows
from customer_assets.ingestion.schema import write_cleaned

S = dt.date(2011, 6, 1)


def _line(cust, order, day, qty=1, price=10.0, product="P1"):
    return {"customer_id": cust, "order_id": order, "order_datetime": f"{day} 10:00:00",
            "product_id": product, "quantity": qty, "unit_price": price}


BASE = [
    _line("A", "o1", "2011-01-10"), _line("A", "o2", "2011-03-10"), _line("A", "o3", "2011-05-20"),
    _line("B", "o4", "2011-02-01", 3, 5.0),
    _line("C", "o5", "2011-05-31", 2, 7.0), _line("C", "o6", "2011-06-01", 1, 4.0),
    _line("D", "o7", "2011-04-01"),
]
FUTURE = [
    _line("A", "o8", "2011-06-02"),       # first day of A's label window
    _line("C", "o9", "2011-08-30"),       # S + 90: the last day of the window, inclusive
    _line("D", "o10", "2011-08-31"),      # S + 91: after the window
    _line("E", "o11", "2011-07-01"),      # a customer who first buys after S
]


def test_labels_known_answers(con):
    write_cleaned(con, BASE + FUTURE)
    y = churn_labels(con, S, 90).set_index("customer_id")["churned"].to_dict()
    assert y == {"A": 0, "B": 1, "C": 0, "D": 1}  # E did not exist at S
    assert churn_labels(con, S, 91).set_index("customer_id")["churned"].to_dict()["D"] == 0
    with pytest.raises(ValueError):
        churn_labels(con, S, 0)


def test_features_known_answers(con):
    write_cleaned(con, BASE + FUTURE)
    f = churn_feature_frame(con, S).set_index("customer_id")
    assert list(f.index) == ["A", "B", "C", "D"]
    assert f.loc["A", "recency_days"] == 12 and f.loc["A", "frequency"] == 3
    assert f.loc["B", "monetary"] == 15.0 and f.loc["C", "recency_days"] == 0
    # A: gaps 59 and 71 days -> mean 65; recency 12 -> gap ratio 12 / 65
    assert f.loc["A", "gap_ratio"] == pytest.approx(12 / 65)
    # B bought once: its gap falls back to its tenure (= recency), ratio 1
    assert f.loc["B", "gap_ratio"] == pytest.approx(1.0)
    # C's gap is 1 day, recency 0
    assert f.loc["C", "gap_ratio"] == 0.0


def test_no_feature_sees_the_label_window(con, tmp_path):
    """Changing, adding or removing transactions after the snapshot changes no feature, only labels."""
    import duckdb

    write_cleaned(con, BASE + FUTURE)
    before = churn_feature_frame(con, S)
    other = duckdb.connect(str(tmp_path / "other.duckdb"))
    changed = [_line("B", "x1", "2011-06-02", 100, 99.0, "P9"), _line("D", "x2", "2011-07-15", 5, 1.0),
               _line("A", "x3", "2011-06-15", 7, 3.0)]
    write_cleaned(other, BASE + changed)  # FUTURE removed, other purchases in the window instead
    after = churn_feature_frame(other, S)
    assert before.equals(after)
    y_before = churn_labels(con, S, 90).set_index("customer_id")["churned"]
    y_after = churn_labels(other, S, 90).set_index("customer_id")["churned"]
    assert y_before.to_dict() != y_after.to_dict()  # the labels did see the change
    assert y_after.to_dict() == {"A": 0, "B": 0, "C": 1, "D": 0}
    other.close()


def test_labelled_frame_joins_features_and_labels(con):
    write_cleaned(con, BASE + FUTURE)
    df = labelled_frame(con, S, 90)
    assert list(df.columns[:2]) == ["customer_id", "snapshot_date"] and df.columns[-1] == "churned"
    assert len(df) == 4 and df["churned"].sum() == 2


def test_windows_are_out_of_time():
    w = plan_windows(dt.date(2010, 12, 1), dt.date(2011, 12, 9), 90, 4)
    assert w.eval_snapshot == dt.date(2011, 9, 10)
    assert w.train_snapshots == [dt.date(2011, 6, 12), dt.date(2011, 5, 13), dt.date(2011, 4, 13), dt.date(2011, 3, 14)]
    # every training label window ends on or before the evaluation snapshot
    assert all(s + dt.timedelta(days=90) <= w.eval_snapshot for s in w.train_snapshots)
    assert w.eval_window == (dt.date(2011, 9, 10), dt.date(2011, 12, 9))
    # snapshots with less than 30 days of history are dropped
    w = plan_windows(dt.date(2011, 2, 20), dt.date(2011, 12, 9), 90, 4)  # earliest 2011-03-22
    assert w.train_snapshots == [dt.date(2011, 6, 12), dt.date(2011, 5, 13), dt.date(2011, 4, 13), dt.date(2011, 3, 14)][:3]


def test_too_short_history_is_a_clear_error():
    with pytest.raises(InsufficientHistory, match="needs at least 210 days"):
        plan_windows(dt.date(2011, 6, 1), dt.date(2011, 12, 9), 90, 4)
