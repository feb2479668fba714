"""End to end through real sensor evaluation and real runs: new data -> weekly_refresh -> drift report
-> (only when the data drifted) retrain_models -> a new registry version with the drift reason.

The sample is a real slice of Online Retail: every second customer (by a stable hash) of Dec 2010 -
Aug 2011. The later file holds the same customers' real orders of the next four weeks:
- same distribution: as they are;
- shifted: prices tripled and a flood of new customers (the same baskets under new customer ids).
The base warehouse (all_assets on the sample) is built once per module and copied for each test
(warehouse file and Dagster instance), so both tests start from the same trained champions.
"""

import os
import shutil
import time

import dagster as dg
import pytest

from customer_assets.automation import drift_retrain_sensor, new_data_sensor
from customer_assets.monitoring.scenario import make_defs, registry_rows, tick, write_slices

pytestmark = pytest.mark.slow


def run(defs, instance, request, job_name):
    assert request.job_name in (None, job_name)
    result = defs.resolve_job_def(job_name).execute_in_process(instance=instance, tags=request.tags)
    assert result.success
    return result


def latest_drift_metadata(instance):
    rec = instance.fetch_materializations(dg.AssetKey("drift_report"), limit=1).records[0]
    return {k: v.value for k, v in rec.asset_materialization.metadata.items()}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """all_assets on the sample, then one tick of each sensor (nothing to do): copied per test."""
    root = tmp_path_factory.mktemp("monitoring_base")
    slices = write_slices(root, keep_every=2)
    home = root / "dagster_home"
    home.mkdir()
    defs = make_defs(root, slices["sample"])
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        defs.resolve_job_def("all_assets").execute_in_process(instance=instance)
        drift = tick(drift_retrain_sensor, instance, defs, None)
        new = tick(new_data_sensor, instance, defs, None)
        base_md = latest_drift_metadata(instance)
    return {"root": root, "slices": slices, "drift": drift, "new": new, "drift_md": base_md}


@pytest.fixture
def world(base, tmp_path):
    root = tmp_path / "w"
    root.mkdir()
    shutil.copy(base["root"] / "warehouse.duckdb", root / "warehouse.duckdb")
    shutil.copytree(base["root"] / "dagster_home", root / "dagster_home")
    defs = make_defs(root, base["slices"]["sample"])
    with dg.instance_for_test(temp_dir=str(root / "dagster_home")) as instance:
        yield root, defs, instance


def _after_new_file(base, world, slice_name):
    root, defs, instance = world
    # the base state: the sample's own drift report does not call for a retrain, the landing folder is empty
    assert base["drift"].run_requests == [], base["drift"].skip_message
    assert base["new"].run_requests == [] and "no ingestible file" in base["new"].skip_message
    dropped = root / "incoming" / f"{slice_name}.parquet"
    shutil.copy(base["slices"][slice_name], dropped)
    t0 = tick(new_data_sensor, instance, defs, base["new"].cursor)
    assert t0.run_requests == [] and "still being written" in t0.skip_message
    past = time.time() - 3600  # the copy finished an hour ago
    os.utime(dropped, (past, past))

    t1 = tick(new_data_sensor, instance, defs, base["new"].cursor)
    assert len(t1.run_requests) == 1, t1.skip_message
    assert t1.run_requests[0].tags["customer_assets/new_files"] == f"{slice_name}.parquet"
    run(defs, instance, t1.run_requests[0], "weekly_refresh")
    t2 = tick(new_data_sensor, instance, defs, t1.cursor)
    assert t2.run_requests == [] and "already ingested" in t2.skip_message
    return root, defs, instance


def test_shifted_file_triggers_exactly_one_retrain_recorded_in_the_registry(base, world):
    root, defs, instance = _after_new_file(base, world, "later_shifted")
    before = registry_rows(root)
    md = latest_drift_metadata(instance)
    assert md["retrain_recommended"] is True, md["summary"]
    assert md["as_of"] == "2011-09-28" and md["data_fingerprint"] != base["drift_md"]["data_fingerprint"]

    d1 = tick(drift_retrain_sensor, instance, defs, base["drift"].cursor)
    assert len(d1.run_requests) == 1
    req = d1.run_requests[0]
    reason = req.tags["customer_assets/retrain_reason"]
    assert reason.startswith("drift: PSI ") and reason == md["retrain_reason"]
    d2 = tick(drift_retrain_sensor, instance, defs, d1.cursor)
    assert d2.run_requests == [], "a second tick on the same report must not request again"

    run(defs, instance, req, "retrain_models")
    after = registry_rows(root)
    churn_new = after[(after["name"] == "churn_model") & ~after["version"].isin(
        before.loc[before["name"] == "churn_model", "version"])]
    assert len(churn_new) == 1
    new_row = churn_new.iloc[0]
    assert new_row["reason"] == reason
    # champion/challenger: exactly one champion; the new version is champion iff the gate promoted it
    champions = after[(after["name"] == "churn_model") & (after["status"] == "champion")]
    assert len(champions) == 1
    promoted = "promoted" in new_row["gate_message"]
    assert (new_row["status"] == "champion") == promoted
    old_v = before.loc[(before["name"] == "churn_model") & (before["status"] == "champion"), "version"].iloc[0]
    old_status = after.loc[(after["name"] == "churn_model") & (after["version"] == old_v), "status"].iloc[0]
    assert old_status == ("retired" if promoted else "champion")

    # the retrain run wrote its own drift report: whatever it says, the same data never retrains twice
    d3 = tick(drift_retrain_sensor, instance, defs, d2.cursor)
    assert d3.run_requests == []
    print("\nSENSOR DECISIONS (shifted):")
    for name, t in [("base drift tick", base["drift"]), ("drift tick 1", d1), ("drift tick 2", d2),
                    ("drift tick after retrain", d3)]:
        print(f"  {name}: {[r.tags for r in t.run_requests] or t.skip_message}")
    print("REGISTRY AFTER RETRAIN:\n" + after.to_string())


def test_same_distribution_file_does_not_retrain(base, world):
    root, defs, instance = _after_new_file(base, world, "later_same")
    before = registry_rows(root)
    md = latest_drift_metadata(instance)
    assert md["as_of"] == "2011-09-28"
    assert md["retrain_recommended"] is False, md["summary"]
    d1 = tick(drift_retrain_sensor, instance, defs, base["drift"].cursor)
    assert d1.run_requests == [] and "within thresholds" in d1.skip_message
    assert registry_rows(root).equals(before)
    print(f"\nSENSOR DECISION (same distribution): {d1.skip_message}")
