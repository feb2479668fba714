"""Churn labels read from the feature base's order_days equal the definition over the cleaned lines."""

import shutil

import duckdb
import pytest

from customer_assets.churn.features import churn_labels, churn_labels_many
from customer_assets.ingestion.schema import write_cleaned

SNAPSHOTS = ["2010-12-01", "2011-03-15", "2011-06-30", "2011-09-10", "2011-12-09"]


@pytest.fixture
def rcon(tmp_path, retail_db):
    shutil.copy(retail_db, tmp_path / "w.duckdb")
    return duckdb.connect(str(tmp_path / "w.duckdb"))


def test_labels_from_order_days_equal_the_lines(rcon):
    for s in SNAPSHOTS:
        for h in (1, 30, 90):
            fast, ref = churn_labels(rcon, s, h), churn_labels(rcon, s, h, from_lines=True)
            assert len(ref) > 0 and ref["churned"].nunique() == 2 or s == "2011-12-09"
            assert fast.equals(ref), (s, h)
    many = churn_labels_many(rcon, SNAPSHOTS, 90)
    ref = churn_labels_many(rcon, SNAPSHOTS, 90, from_lines=True)
    assert len(many) == len(ref) == len(SNAPSHOTS)
    for a, b in zip(many, ref):
        assert a.equals(b)


def test_window_edges_and_customers_without_lines_in_window(tmp_path):
    con = duckdb.connect(str(tmp_path / "e.duckdb"))
    write_cleaned(con, [
        dict(customer_id="a", order_id="o1", order_datetime="2011-01-01 10:00", quantity=1, line_total=1.0),
        dict(customer_id="a", order_id="o2", order_datetime="2011-03-02 10:00", quantity=1, line_total=1.0),  # day 60
        dict(customer_id="b", order_id="o3", order_datetime="2011-01-01 09:00", quantity=1, line_total=1.0),
        dict(customer_id="b", order_id="o3", order_datetime="2011-01-01 09:00", quantity=2, line_total=2.0),
        dict(customer_id="c", order_id="o4", order_datetime="2011-02-01 10:00", quantity=1, line_total=1.0),  # after s
        dict(customer_id=None, order_id="o5", order_datetime="2011-01-15 10:00", quantity=1, line_total=1.0),
    ])
    for h in (59, 60):
        fast, ref = churn_labels(con, "2011-01-01", h), churn_labels(con, "2011-01-01", h, from_lines=True)
        assert fast.equals(ref)
        assert fast.set_index("customer_id")["churned"].to_dict() == {"a": int(h == 59), "b": 1}
