"""The churn assets through Dagster on a small synthetic shop; and (slow) on Online Retail."""

import datetime as dt

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest

from customer_assets.churn import ASSETS, CHECKS
from customer_assets.churn.assets import churn_model, churn_scores
from customer_assets.ingestion.schema import write_cleaned

START, END = dt.date(2010, 12, 1), dt.date(2011, 12, 9)


def synthetic_shop(n_customers=160, seed=0) -> pd.DataFrame:
    """Customers arrive over the year, buy at their own rate, and some stop buying for good."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_customers):
        first = START + dt.timedelta(days=int(rng.integers(0, 240)))
        stop = first + dt.timedelta(days=int(rng.exponential(200)))
        gap = rng.lognormal(3.3, 0.6)  # ~27 days between orders on average
        day, k = first, 0
        while day <= min(stop, END):
            for j in range(int(rng.integers(1, 4))):
                rows.append({"customer_id": f"C{i:04d}", "order_id": f"O{i:04d}-{k}",
                             "order_datetime": f"{day} 12:00:00", "product_id": f"P{int(rng.integers(0, 30))}",
                             "quantity": int(rng.integers(1, 10)), "unit_price": float(rng.uniform(1, 20))})
            k += 1
            day += dt.timedelta(days=max(1, int(rng.exponential(gap))))
    return pd.DataFrame(rows)


def _warehouse(tmp_path, rows):
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    write_cleaned(con, rows.to_dict("records"))
    con.close()


def _md(result, key):
    return result.asset_materializations_for_node(key)[0].metadata


def _registry(tmp_path):
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        return con.execute("SELECT version, status, reason, gate_message FROM model_registry ORDER BY version").df()


def test_materialize_trains_registers_and_scores(tmp_path, resources_for):
    _warehouse(tmp_path, synthetic_shop())
    r = dg.materialize(ASSETS + CHECKS, resources=resources_for(tmp_path), instance=dg.DagsterInstance.ephemeral())
    assert r.success
    checks = {e.check_name: e.passed for e in r.get_asset_check_evaluations()}
    assert checks["churn_scores_valid"] is True and "churn_model_quality_target" in checks
    assert checks["churn_training_set_out_of_time"] is True
    assert _md(r, "churn_model")["winner"].value in ("logistic_regression", "xgboost")
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        n_customers = con.execute("SELECT count(DISTINCT customer_id) FROM cleaned_transactions").fetchone()[0]
        scores = con.execute("SELECT * FROM churn_scores").df()
        table = con.execute("SELECT * FROM churn_model ORDER BY model").df()
        roles = con.execute("SELECT DISTINCT role FROM churn_training_set ORDER BY role").df()["role"].tolist()
    assert len(scores) == n_customers and scores["customer_id"].is_unique
    assert scores["churn_probability"].between(0, 1).all()
    assert set(scores["risk_band"]) <= {"High", "Medium", "Low"}
    assert scores["reason_1"].notna().any() and (scores["model_version"] == 1).all()
    assert table["model"].tolist() == ["logistic_regression", "majority_class", "rule_baseline", "xgboost"]
    assert table[["roc_auc", "pr_auc", "brier", "ece", "f1", "precision", "recall", "accuracy"]].notna().all().all()
    assert roles == ["eval", "train"]
    assert (tmp_path / "reports" / "churn_reliability.png").stat().st_size > 1000
    reg = _registry(tmp_path)
    assert reg[["version", "status", "reason"]].values.tolist() == [[1, "champion", "first_training"]]


@pytest.mark.slow
def test_retrain_reason_gate_and_fallback_to_last_good_champion(tmp_path, resources_for):
    _warehouse(tmp_path, synthetic_shop())
    resources = resources_for(tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    dg.materialize(ASSETS, resources=resources, instance=instance)
    # retrain (as the drift sensor would, with its run tag): same data and window -> same AUC -> promoted
    r = dg.materialize(ASSETS, resources=resources, instance=instance,
                       tags={"customer_assets/retrain_reason": "drift: PSI recency_days 0.31 > 0.2"})
    reg = _registry(tmp_path)
    assert reg["status"].tolist() == ["retired", "champion"]
    assert reg["reason"].iloc[1] == "drift: PSI recency_days 0.31 > 0.2"
    assert "same window" in reg["gate_message"].iloc[1] and "promoted" in reg["gate_message"].iloc[1]

    # a plain rerun is 'scheduled'
    dg.materialize([churn_model], resources=resources, instance=instance)
    assert _registry(tmp_path)["reason"].iloc[2] == "scheduled"

    # the champion's artifact is corrupted: scoring alone (no training asset) uses the last good version
    artifact = tmp_path / "models" / "churn_model" / "v3.joblib"
    artifact.write_bytes(b"not a model")
    r = dg.materialize([churn_scores], resources=resources, instance=instance)
    md = _md(r, "churn_scores")
    assert md["model_version"].value == 2
    assert "corrupted" in md["fallback_warnings"].value[0] and str(artifact) in md["fallback_warnings"].value[0]


def test_scores_without_a_model_are_skipped_with_a_reason(tmp_path, resources_for):
    _warehouse(tmp_path, synthetic_shop(n_customers=20))
    r = dg.materialize([churn_scores], resources=resources_for(tmp_path), instance=dg.DagsterInstance.ephemeral())
    assert "no churn_model" in _md(r, "churn_scores")["skipped"].value
    assert _md(r, "churn_scores")["row_count"].value == 0


def test_short_history_skips_training_with_a_reason(tmp_path, resources_for):
    rows = synthetic_shop(n_customers=30)
    rows = rows[pd.to_datetime(rows["order_datetime"]) >= "2011-07-01"]
    _warehouse(tmp_path, rows)
    r = dg.materialize(ASSETS, resources=resources_for(tmp_path), instance=dg.DagsterInstance.ephemeral())
    assert r.success
    assert "needs at least 210 days" in _md(r, "churn_training_set")["skipped"].value
    assert "empty" in _md(r, "churn_model")["skipped"].value
    assert "no churn_model" in _md(r, "churn_scores")["skipped"].value


def test_out_of_time_check_fails_on_a_leaky_training_set(tmp_path, resources_for):
    from customer_assets.churn.assets import churn_training_set_out_of_time

    _warehouse(tmp_path, synthetic_shop(n_customers=5))  # as_of = the last order date
    res = resources_for(tmp_path)
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        as_of = con.execute("SELECT max(order_date) FROM cleaned_transactions").fetchone()[0]
        ev = as_of - dt.timedelta(days=90)

        def write(train_snapshot):
            con.execute("CREATE OR REPLACE TABLE churn_training_set AS SELECT * FROM (VALUES "
                        "('a', ?::DATE, 'train', 1), ('a', ?::DATE, 'eval', 0)) t(customer_id, snapshot_date, role, churned)",
                        [train_snapshot, ev])

        write(ev - dt.timedelta(days=90))
    assert churn_training_set_out_of_time(duckdb=res["duckdb"], settings=res["settings"]).passed
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        write(ev - dt.timedelta(days=60))  # its label window runs 30 days into the evaluation window
    result = churn_training_set_out_of_time(duckdb=res["duckdb"], settings=res["settings"])
    assert not result.passed
