"""Materialize the LTV assets with Dagster on synthetic data in a tmp warehouse."""

import duckdb
import dagster as dg
import pytest
from ltv_synthetic import synthetic_rows

from customer_assets.common.db import table_exists
from customer_assets.ingestion.schema import write_cleaned
from customer_assets.ltv.assets import clv_model, customer_ltv, customer_ltv_valid, ltv_model
from customer_assets.ltv.training import LTV_COLUMNS


def _warehouse(resources, rows):
    con = duckdb.connect(resources["duckdb"].database)
    write_cleaned(con, rows)
    n = con.execute("SELECT count(DISTINCT customer_id) FROM cleaned_transactions").fetchone()[0]
    con.close()
    return n


def _check(result, name):
    evals = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    assert len(evals) == 1, name
    return evals[0]


@pytest.mark.slow
def test_train_then_score_then_score_again_without_training(tmp_path, resources_for):
    resources = resources_for(tmp_path)
    n_customers = _warehouse(resources, synthetic_rows(n_customers=300, seed=21).to_dict("records"))
    instance = dg.DagsterInstance.ephemeral()

    # customer_ltv_valid is a check_spec of customer_ltv: evaluated in its step
    result = dg.materialize([clv_model, ltv_model, customer_ltv], resources=resources,
                            instance=instance)
    assert result.success
    assert _check(result, "customer_ltv_valid").passed
    assert _check(result, "gamma_gamma_independence").passed  # synthetic spend is independent of frequency
    fit = _check(result, "buying_model_usable")
    assert fit.passed, fit.description  # synthetic data has real dropout (a = 0.8, b = 2.5)

    con = duckdb.connect(resources["duckdb"].database, read_only=True)
    ltv = con.execute("SELECT * FROM customer_ltv").df()
    assert list(ltv.columns) == LTV_COLUMNS and len(ltv) == n_customers
    assert ltv.drop(columns=["value_basis"]).notna().all().all()
    assert (ltv["value_basis"] == "clv_12m").all()
    # decile 10 holds the highest CLVs
    top, bottom = ltv[ltv.value_decile == 10], ltv[ltv.value_decile == 1]
    assert top["clv_12m"].min() >= bottom["clv_12m"].max()
    reg = con.execute("SELECT name, version, status FROM model_registry ORDER BY name").fetchall()
    assert reg == [("clv_bgnbd", 1, "champion"), ("clv_gamma_gamma", 1, "champion"), ("ltv_xgb", 1, "champion")]
    attempts = con.execute("SELECT fit_window, model, status, chosen, error FROM clv_model").df()
    assert attempts["chosen"].sum() == 4  # buying + spend, calibration + all data
    comparison = con.execute("SELECT model, revenue_mae, revenue_gini_normalized FROM ltv_model ORDER BY model").df()
    assert comparison["model"].tolist() == ["bgnbd_gamma_gamma", "naive_baseline", "xgboost"]
    assert comparison["revenue_mae"].notna().all()
    metrics = con.execute("SELECT metrics FROM model_registry WHERE name = 'clv_bgnbd'").fetchone()[0]
    assert '"purchases_mae"' in metrics and '"baseline"' in metrics
    con.close()
    assert (tmp_path / "reports" / "ltv_holdout_deciles.png").stat().st_size > 1000

    # the weekly scoring job: customer_ltv alone, no retraining, same registered versions
    again = dg.materialize([customer_ltv], resources=resources, instance=instance)
    assert again.success
    meta = again.asset_materializations_for_node("customer_ltv")[0].metadata
    assert meta["models_used"].data["ltv_xgb"]["version"] == 1
    assert meta["row_count"].value == n_customers


def test_scoring_without_any_model_fills_nulls_with_reasons(tmp_path, resources_for):
    resources = resources_for(tmp_path)
    rows = [
        {"customer_id": c, "order_id": f"{c}{i}", "order_datetime": f"2021-0{i + 1}-10", "quantity": 1, "unit_price": p}
        for c, p in (("A", 10.0), ("B", 50.0), ("C", 20.0)) for i in range(3)
    ]
    _warehouse(resources, rows)
    result = dg.materialize([customer_ltv], resources=resources, instance=dg.DagsterInstance.ephemeral())
    assert result.success
    meta = result.asset_materializations_for_node("customer_ltv")[0].metadata
    assert set(meta["null_columns_because"].data) == {"clv_bgnbd", "clv_gamma_gamma", "ltv_xgb"}
    assert "materialize its training asset first" in meta["null_columns_because"].data["ltv_xgb"]
    con = duckdb.connect(resources["duckdb"].database, read_only=True)
    df = con.execute("SELECT * FROM customer_ltv ORDER BY customer_id").df()
    con.close()
    assert df[["expected_purchases", "prob_alive", "clv_12m", "predicted_spend_gbm"]].isna().all().all()
    assert df["historical_spend"].tolist() == [30.0, 150.0, 60.0]
    assert df["value_decile"].tolist() == [1, 10, 5] or df.set_index("customer_id")["value_decile"]["B"] == 10
    assert (df["value_basis"] == "historical_spend").all()


def test_too_little_history_skips_the_gbm_with_a_reason(tmp_path, resources_for):
    resources = resources_for(tmp_path)
    rows = [
        {"customer_id": c, "order_id": f"{c}{i}", "order_datetime": f"2021-01-{10 + 5 * i}", "quantity": 1, "unit_price": 5.0}
        for c in ("A", "B", "C") for i in range(3)
    ]
    _warehouse(resources, rows)
    result = dg.materialize([ltv_model], resources=resources, instance=dg.DagsterInstance.ephemeral())
    assert result.success
    meta = result.asset_materializations_for_node("ltv_model")[0].metadata
    assert "not enough history" in meta["skipped"].value
    assert meta["row_count"].value == 0


def test_clv_model_with_no_repeat_buyer_records_why_and_does_not_fail(tmp_path, resources_for):
    resources = resources_for(tmp_path)
    rows = [{"customer_id": c, "order_id": c, "order_datetime": f"2021-0{i + 1}-10", "quantity": 1, "unit_price": 5.0}
            for i, c in enumerate("ABCDEF")]
    _warehouse(resources, rows)
    result = dg.materialize([clv_model], resources=resources, instance=dg.DagsterInstance.ephemeral())
    assert result.success
    fit = _check(result, "buying_model_usable")
    assert not fit.passed and "no customer has a repeat purchase" in fit.description
    con = duckdb.connect(resources["duckdb"].database, read_only=True)
    rows = con.execute("SELECT status, error FROM clv_model").fetchall()
    registered = table_exists(con, "model_registry") and con.execute("SELECT count(*) FROM model_registry").fetchone()[0]
    con.close()
    assert {s for s, _ in rows} == {"skipped"} and len(rows) == 4
    assert not registered  # nothing usable was registered


def test_customer_ltv_valid_fails_on_invalid_rows(tmp_path, resources_for):
    resources = resources_for(tmp_path)
    with duckdb.connect(resources["duckdb"].database) as con:
        con.execute("""CREATE TABLE customer_ltv AS SELECT * FROM (VALUES
            ('a', 0.5, 1.0, 10.0, 5.0, 3.0, 1), ('a', 1.5, -1.0, 'inf'::DOUBLE, 5.0, 3.0, 11))
            t(customer_id, prob_alive, expected_purchases, clv_12m, predicted_spend_gbm, expected_avg_order_value, value_decile)""")
    r = customer_ltv_valid(duckdb=resources["duckdb"])
    assert r.check_name == "customer_ltv_valid" and not r.passed
    assert {k: v.value for k, v in r.metadata.items()} == {
        "duplicate_customers": 1, "prob_alive_out_of_range": 1, "negative_values": 1, "infinite_values": 1, "bad_decile": 1}
