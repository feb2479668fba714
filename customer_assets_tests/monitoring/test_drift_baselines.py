"""The drift report's deployment baselines frozen in the warehouse (monitoring.baselines): reused
while rows were only appended (whatever their dates: the champion never scored them), computed
again after any other change. Real ingestion (its append log is what tells an append from any
other change) on small CSV files."""

import datetime as dt
from pathlib import Path

import pytest

from customer_assets.customers.features import compute_customer_features
from customer_assets.ingestion.pipeline import ingest
from customer_assets.monitoring import baselines
from customer_assets.registry import reference_distribution

MAPPING = str(Path(__file__).resolve().parents[2] / "data" / "online_retail_mapping.json")
BASE_DATE = dt.date(2011, 3, 18)
FEATURES = ["recency_days", "frequency", "monetary", "tenure_days"]
CHAMPION = {"version": 1, "artifact_sha256": "abc"}


def _csv(path, rows):
    lines = ["InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"]
    lines += [f"{o},P1,THING,{q},{d} 10:00:00,{p},{c},United Kingdom" for o, q, d, p, c in rows]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def loaded(tmp_path, con):
    """A warehouse ingested from base.csv (orders up to BASE_DATE); `landing` takes later files."""
    landing = tmp_path / "landing"
    landing.mkdir()
    base = [(f"5{i}{k}", 2, f"2011-0{1 + k}-{10 + i % 9}", 5.0 + i % 4, 1000 + i) for i in range(30) for k in range(3)]
    _csv(tmp_path / "base.csv", base)
    ingest(con, str(tmp_path / "base.csv"), MAPPING, str(landing))
    assert con.execute("SELECT max(order_date) FROM cleaned_transactions").fetchone()[0] == BASE_DATE

    def add(name, rows):
        _csv(landing / name, rows)
        ingest(con, str(tmp_path / "base.csv"), MAPPING, str(landing))

    return con, add


def _reference(con, calls):
    key = baselines.baseline_key("churn_model", CHAMPION, BASE_DATE, 10, FEATURES)

    def compute():
        calls.append(1)
        return reference_distribution(compute_customer_features(con, BASE_DATE), FEATURES)

    return baselines.stored_reference(con, key, compute)


def test_reused_after_an_append_of_later_rows_and_equal_to_a_new_computation(loaded):
    con, add = loaded
    calls = []
    first, reused = _reference(con, calls)
    assert not reused and len(calls) == 1
    add("later.csv", [(f"6{i}", 2, "2011-04-20", 15.0, 1000 + i) for i in range(30)])
    again, reused = _reference(con, calls)
    assert reused and len(calls) == 1  # not computed again
    assert again == reference_distribution(compute_customer_features(con, BASE_DATE), FEATURES)
    assert again == first
    # the stored fingerprint moved on: a second append is checked against this one only
    add("later2.csv", [(f"7{i}", 1, "2011-05-02", 9.0, 1000 + i) for i in range(5)])
    assert _reference(con, calls)[1] and len(calls) == 1


def test_a_late_row_dated_on_the_baseline_does_not_change_the_frozen_population(loaded):
    """The population the champion scored is the one stored; a row that arrives later, even dated
    on the baseline date, was never part of it. Computing the features at the date now would
    include it: that is what the frozen baseline avoids."""
    con, add = loaded
    calls = []
    before, _ = _reference(con, calls)
    add("late.csv", [("8001", 50, str(BASE_DATE), 99.0, 9999)])
    after, reused = _reference(con, calls)
    assert reused and len(calls) == 1 and after == before
    assert after != reference_distribution(compute_customer_features(con, BASE_DATE), FEATURES)


def test_computed_again_after_a_change_that_is_not_an_append(loaded):
    con, _ = loaded
    calls = []
    _reference(con, calls)
    con.execute("DELETE FROM cleaned_transactions WHERE customer_id = '1000'")
    _, reused = _reference(con, calls)
    assert not reused and len(calls) == 2


def test_the_key_changes_with_the_model_version_date_bins_and_features():
    key = baselines.baseline_key("churn_model", CHAMPION, BASE_DATE, 10, FEATURES)
    assert key != baselines.baseline_key("churn_model", {**CHAMPION, "version": 2}, BASE_DATE, 10, FEATURES)
    assert key != baselines.baseline_key("churn_model", {**CHAMPION, "artifact_sha256": "x"}, BASE_DATE, 10, FEATURES)
    assert key != baselines.baseline_key("ltv_xgb", CHAMPION, BASE_DATE, 10, FEATURES)
    assert key != baselines.baseline_key("churn_model", CHAMPION, BASE_DATE - dt.timedelta(days=1), 10, FEATURES)
    assert key != baselines.baseline_key("churn_model", CHAMPION, BASE_DATE, 5, FEATURES)
    assert key != baselines.baseline_key("churn_model", CHAMPION, BASE_DATE, 10, FEATURES[:3])
