"""customer_personas scores with the registered persona_kmeans champion; persona_model fits and
registers. Real DuckDB warehouse (hand-made), real Dagster materializations and job definitions."""

import subprocess
import sys

import dagster as dg
import duckdb
import pandas as pd

from customer_assets.ingestion.schema import write_cleaned
from customer_assets.registry import load_model

from test_customers_assets import _assets, build_warehouse, metadata, registry_rows, synthetic_rows


def materialize(tmp_path, resources_for, *names, **settings):
    return dg.materialize(_assets(*names), resources=resources_for(tmp_path, **settings),
                          instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)


def personas_table(tmp_path) -> pd.DataFrame:
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        return con.execute("SELECT customer_id, cluster, persona FROM customer_personas ORDER BY customer_id").df()


def step_error(result) -> str:
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert len(failures) == 1
    return str(failures[0].event_specific_data.error)


def test_scoring_twice_gives_the_same_personas_and_no_new_version(tmp_path, resources_for):
    build_warehouse(tmp_path, synthetic_rows())
    first = materialize(tmp_path, resources_for, "customer_features", "persona_model", "customer_personas")
    assert first.success
    assert registry_rows(tmp_path) == [(1, "champion", "first_training")]
    before = personas_table(tmp_path)
    assert before["cluster"].nunique() == metadata(first, "persona_model")["k"]
    for _ in range(2):
        again = materialize(tmp_path, resources_for, "customer_personas")
        assert again.success and all(e.passed for e in again.get_asset_check_evaluations())
        assert metadata(again, "customer_personas")["model_version"] == 1
        pd.testing.assert_frame_equal(personas_table(tmp_path), before)
    assert registry_rows(tmp_path) == [(1, "champion", "first_training")]  # scoring registers nothing


def test_the_table_comes_from_the_champion_not_from_a_worse_refit(tmp_path, resources_for):
    build_warehouse(tmp_path, synthetic_rows())
    assert materialize(tmp_path, resources_for, "customer_features", "persona_model", "customer_personas").success
    champion = personas_table(tmp_path)
    k1 = champion["cluster"].nunique()
    # a refit forced to another k has a lower silhouette than the k chosen by silhouette: it stays challenger
    k2 = 8 if k1 < 8 else 3
    worse = materialize(tmp_path, resources_for, "persona_model", "customer_personas",
                        persona_k_min=k2, persona_k_max=k2)
    assert worse.success
    assert metadata(worse, "persona_model")["k"] == k2
    assert metadata(worse, "persona_model")["model_status"].startswith("challenger")
    assert registry_rows(tmp_path) == [(1, "champion", "first_training"), (2, "challenger", "scheduled")]
    assert metadata(worse, "customer_personas")["model_version"] == 1
    pd.testing.assert_frame_equal(personas_table(tmp_path), champion)
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        fit = con.execute("SELECT DISTINCT model_version, model_status FROM persona_model").fetchall()
    assert fit == [(2, "challenger")]  # persona_model's table describes its own fit


def test_no_champion_is_a_clear_failure(tmp_path, resources_for):
    build_warehouse(tmp_path, synthetic_rows())
    result = materialize(tmp_path, resources_for, "customer_features", "customer_personas")
    assert not result.success
    error = step_error(result)
    assert "no persona_kmeans champion" in error and "materialize persona_model first" in error
    assert "all_assets or retrain_models" in error


def test_corrupted_champion_without_fallback_fails_naming_the_file(tmp_path, resources_for):
    build_warehouse(tmp_path, synthetic_rows())
    assert materialize(tmp_path, resources_for, "customer_features", "persona_model").success
    artifact = tmp_path / "models" / "persona_kmeans" / "v1.joblib"
    artifact.write_bytes(b"not a model")
    result = materialize(tmp_path, resources_for, "customer_personas")
    assert not result.success
    error = step_error(result)
    assert "cannot score personas" in error and "v1.joblib" in error and "corrupted" in error


def test_too_few_customers_registers_nothing_and_leaves_everyone_unclustered(tmp_path, resources_for):
    build_warehouse(tmp_path, synthetic_rows(3))
    result = materialize(tmp_path, resources_for, "customer_features", "persona_model", "customer_personas")
    assert result.success and all(e.passed for e in result.get_asset_check_evaluations())
    assert "no model is registered" in metadata(result, "persona_model")["skipped"]
    assert "Unclustered" in metadata(result, "customer_personas")["skipped"]
    assert registry_rows(tmp_path) == []
    table = personas_table(tmp_path)
    assert len(table) == 3 and set(table["cluster"]) == {-1}
    assert set(table["persona"]) == {"Unclustered (too few customers)"}
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM persona_model").fetchone()[0] == 0
        types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                                 "WHERE table_name = 'persona_model'").fetchall())
    assert types["snapshot_date"] == "DATE" and types["persona"] == "VARCHAR" and types["cluster"] == "BIGINT"


def test_champion_scores_after_the_data_changes(tmp_path, resources_for):
    """New customers are assigned by the champion: every persona name is one of the model's."""
    build_warehouse(tmp_path, synthetic_rows(40))
    assert materialize(tmp_path, resources_for, "customer_features", "persona_model", "customer_personas").success
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:  # 20 more customers, same as_of
        con.execute("DROP TABLE cleaned_transactions")
        write_cleaned(con, synthetic_rows(60))
    result = materialize(tmp_path, resources_for, "customer_features", "customer_personas")
    assert result.success
    table = personas_table(tmp_path)
    assert len(table) == 60
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        model = load_model(con, "persona_kmeans")
    assert set(table["persona"]) <= set(model.obj.names.values())
    assert registry_rows(tmp_path) == [(1, "champion", "first_training")]


def test_weekly_refresh_does_not_fit_personas():
    from customer_assets.definitions import defs

    def keys(job):
        return {k.to_user_string() for k in defs.resolve_job_def(job).asset_layer.executable_asset_keys}

    weekly, retrain, everything = keys("weekly_refresh"), keys("retrain_models"), keys("all_assets")
    assert "persona_model" not in weekly and "customer_personas" in weekly
    assert {"persona_model", "customer_personas"} <= retrain
    assert {"persona_model", "customer_personas"} <= everything


def test_the_code_location_does_not_import_sklearn():
    code = "import sys, customer_assets.definitions; assert 'sklearn' not in sys.modules, 'sklearn imported'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
