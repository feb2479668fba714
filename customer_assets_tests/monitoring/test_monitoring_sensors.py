"""Sensors through real Dagster sensor evaluation, fed with hand-made materialization metadata."""

import json
import os
import time

import dagster as dg
import pytest

from customer_assets import automation
from customer_assets.automation import drift_retrain_sensor, new_data_sensor
from customer_assets.ingestion.readers import file_sha256
from customer_assets.resources import SourceConfig


@pytest.fixture
def instance(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as inst:
        yield inst


def settled(*paths):
    """Make files look fully copied in (older than the sensor's settle time)."""
    past = time.time() - 3600
    for p in paths:
        os.utime(p, (past, past))


def tick(sensor, instance, cursor=None, resources=None):
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    return sensor.evaluate_tick(ctx)


def test_new_data_sensor_requests_once_per_new_set_of_files(tmp_path, instance):
    landing = tmp_path / "incoming"
    landing.mkdir()
    res = {"source": SourceConfig(landing_dir=str(landing))}

    r = tick(new_data_sensor, instance, resources=res)
    assert r.run_requests == [] and "no ingestible file" in r.skip_message

    (landing / "week1.csv").write_text("InvoiceNo,CustomerID\n1,a\n")
    (landing / "notes.md").write_text("not a data file")
    (landing / ".partial.csv").write_text("hidden: being copied")
    r0 = tick(new_data_sensor, instance, resources=res)
    assert r0.run_requests == [] and "1 file(s) still being written (week1.csv)" in r0.skip_message
    settled(landing / "week1.csv")
    r1 = tick(new_data_sensor, instance, resources=res)
    assert len(r1.run_requests) == 1
    req = r1.run_requests[0]
    assert req.tags[automation.NEW_FILES_TAG] == "week1.csv"
    assert req.run_key.startswith("new-files-")

    r2 = tick(new_data_sensor, instance, cursor=r1.cursor, resources=res)
    assert r2.run_requests == [] and "already ingested or requested" in r2.skip_message

    (landing / "week2.csv").write_text("InvoiceNo,CustomerID\n2,b\n")
    settled(landing / "week2.csv")
    r3 = tick(new_data_sensor, instance, cursor=r2.cursor, resources=res)
    assert [q.tags[automation.NEW_FILES_TAG] for q in r3.run_requests] == ["week2.csv"]
    assert r3.run_requests[0].run_key != req.run_key

    # ingestion reports both files as loaded: the requested set is forgotten, nothing new
    shas = sorted(file_sha256(str(landing / n)) for n in ("week1.csv", "week2.csv"))
    instance.report_runless_asset_event(
        dg.AssetMaterialization("ingested_files", metadata={"sha256s": dg.MetadataValue.json(shas)})
    )
    r4 = tick(new_data_sensor, instance, cursor=r3.cursor, resources=res)
    assert r4.run_requests == [] and json.loads(r4.cursor)["requested"] == []

    # the same content under another name is not new; a fresh sensor (no cursor) trusts ingested_files
    (landing / "week1_copy.csv").write_bytes((landing / "week1.csv").read_bytes())
    settled(landing / "week1_copy.csv")
    assert tick(new_data_sensor, instance, cursor=r4.cursor, resources=res).run_requests == []
    assert tick(new_data_sensor, instance, resources=res).run_requests == []


def _report_drift(instance, **md):
    meta = {
        "retrain_recommended": dg.MetadataValue.bool(md.get("breach", False)),
        "retrain_reason": dg.MetadataValue.text(md.get("reason", "")),
        "data_fingerprint": dg.MetadataValue.text(md.get("fingerprint", "f0")),
        "summary": dg.MetadataValue.text(md.get("summary", "max PSI 0.01 (recency_days) <= 0.2")),
    }
    instance.report_runless_asset_event(dg.AssetMaterialization("drift_report", metadata=meta))


def test_drift_retrain_sensor_requests_exactly_once_per_breaching_report(instance):
    r0 = tick(drift_retrain_sensor, instance)
    assert r0.run_requests == [] and "no drift_report" in r0.skip_message

    _report_drift(instance, breach=False, fingerprint="f1")
    r1 = tick(drift_retrain_sensor, instance, cursor=r0.cursor)
    assert r1.run_requests == [] and "max PSI 0.01" in r1.skip_message

    reason = "drift: PSI monetary=0.731 > 0.2 (churn_model v1)"
    _report_drift(instance, breach=True, reason=reason, fingerprint="f2")
    r2 = tick(drift_retrain_sensor, instance, cursor=r1.cursor)
    assert len(r2.run_requests) == 1
    req = r2.run_requests[0]
    assert req.tags["customer_assets/retrain_reason"] == reason
    assert req.run_key.startswith("drift-retrain-")

    r3 = tick(drift_retrain_sensor, instance, cursor=r2.cursor)
    assert r3.run_requests == [] and "no new drift_report" in r3.skip_message

    # the retrain run's own report still breaches (the gate kept the old champion): same data, no loop
    _report_drift(instance, breach=True, reason=reason, fingerprint="f2")
    r4 = tick(drift_retrain_sensor, instance, cursor=r3.cursor)
    assert r4.run_requests == [] and "same data" in r4.skip_message

    # new data that still breaches: a new retrain
    _report_drift(instance, breach=True, reason="drift: AUC drop 15.0% > 10%", fingerprint="f3")
    r5 = tick(drift_retrain_sensor, instance, cursor=r4.cursor)
    assert len(r5.run_requests) == 1 and r5.run_requests[0].run_key != req.run_key
    assert r5.run_requests[0].tags["customer_assets/retrain_reason"] == "drift: AUC drop 15.0% > 10%"


def test_schedule_and_default_status(monkeypatch):
    s = automation.weekly_refresh_schedule
    assert s.cron_schedule == "0 6 * * 1" and s.job_name == "weekly_refresh"
    monkeypatch.delenv("CUSTOMER_ASSETS_TIMEZONE", raising=False)
    assert automation._timezone() == "UTC"
    monkeypatch.setenv("CUSTOMER_ASSETS_TIMEZONE", "Europe/London")
    assert automation._timezone() == "Europe/London"
    monkeypatch.setenv("CUSTOMER_ASSETS_TIMEZONE", "Mars/Olympus")
    with pytest.raises(ValueError, match="IANA"):
        automation._timezone()
    monkeypatch.delenv("CUSTOMER_ASSETS_AUTOMATION", raising=False)
    assert automation._automation_default_status() == dg.DefaultSensorStatus.STOPPED
    monkeypatch.setenv("CUSTOMER_ASSETS_AUTOMATION", "on")
    assert automation._automation_default_status() == dg.DefaultSensorStatus.RUNNING


def test_jobs_select_training_only_in_retrain():
    from customer_assets.definitions import defs

    weekly = set(k.to_user_string() for k in defs.resolve_job_def("weekly_refresh").asset_layer.executable_asset_keys)
    retrain = set(k.to_user_string() for k in defs.resolve_job_def("retrain_models").asset_layer.executable_asset_keys)
    for t in automation._existing(automation.TRAINING_ASSETS):
        assert t not in weekly and t in retrain
    for k in automation._existing(automation.SCORING_ASSETS + ("drift_report",)):
        assert k in weekly and k in retrain
