"""churn_labels_many: every snapshot's labels from one scan, the same frames as churn_labels."""

import datetime as dt

import duckdb
import pandas as pd

from customer_assets.churn.features import churn_labels, churn_labels_many
from customer_assets.ingestion.schema import write_cleaned


def test_labels_from_one_scan_equal_per_snapshot_labels(tmp_path):
    rows = []
    days = {"A": ["2011-01-05", "2011-03-01", "2011-06-10"], "B": ["2011-02-01"], "C": ["2011-05-20", "2011-05-21"],
            "D": ["2011-08-01"], "E": ["2011-01-01", "2011-04-01"]}
    for c, ds in days.items():
        for k, d in enumerate(ds):
            rows.append({"customer_id": c, "order_id": f"{c}{k}", "order_datetime": f"{d} 10:00:00",
                         "product_id": "P", "quantity": 1, "unit_price": 2.0})
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    write_cleaned(con, rows)
    snaps = [dt.date(2011, 1, 31), dt.date(2011, 3, 1), dt.date(2011, 5, 20), dt.date(2011, 7, 1)]
    many = churn_labels_many(con, snaps, 60)
    for s, got in zip(snaps, many):
        pd.testing.assert_frame_equal(got, churn_labels(con, s, 60))
    # at 01-31: A orders 03-01 and E 04-01 (the 60th day: inside); B is churned at 03-01; D is no customer at 07-01
    assert dict(zip(many[0]["customer_id"], many[0]["churned"])) == {"A": 0, "E": 0}
    assert dict(zip(many[1]["customer_id"], many[1]["churned"]))["B"] == 1
    assert "D" not in set(many[3]["customer_id"])
    assert churn_labels_many(con, [], 60) == []
