"""Jobs, the weekly schedule and the two sensors that make the pipeline run by itself.

- `weekly_refresh`: ingestion through scoring with the current champions, bundles, actions, the
  drift report and the report: every asset except the model-training ones.
- `retrain_models`: the training assets (which register new versions through the registry's
  champion/challenger gate), rescoring with whichever version is champion afterwards, and the
  drift report.
- `all_assets`: everything (the first run on a new warehouse; training needs features first).
- Schedule `weekly_refresh_schedule`: Mondays 06:00 in CUSTOMER_ASSETS_TIMEZONE (default UTC).
- `new_data_sensor`: new files in the landing folder -> one weekly_refresh per new set of files.
- `drift_retrain_sensor`: a drift_report whose thresholds are breached -> one retrain_models run.

Default status: the schedule and both sensors are STOPPED when `dagster dev` starts, unless
CUSTOMER_ASSETS_AUTOMATION=on. Reason: scoring needs trained champions, so a fresh warehouse must
be built once with `all_assets` before the automation can do anything useful, and a development
`dagster dev` should not start runs on its own. Production deployments set the variable (or flip
the toggles in the UI's Automation tab, which persists in the Dagster instance).
"""

from __future__ import annotations

import json
import os
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dagster as dg

from customer_assets.monitoring.sensor_logic import (
    DRIFT_REPORT_TAG,
    INGESTED_SHA_KEY,
    NEW_FILES_TAG,
    RETRAIN_REASON_TAG,
    decide_new_data,
    decide_retrain,
    load_cursor,
)
from customer_assets.resources import SourceConfig
from customer_assets.stages import STAGES

# Assets that fit models (and register versions). Everything else only uses the champions.
TRAINING_ASSETS = ("persona_model", "churn_training_set", "churn_model", "clv_model", "ltv_model")
# Assets that score customers with the current champions (rerun after a retrain).
SCORING_ASSETS = ("customer_personas", "churn_scores", "customer_ltv")
DRIFT_ASSET = "drift_report"
INGESTED_FILES_ASSET = "ingested_files"


def _defined_keys() -> set:
    keys = set()
    for stage in STAGES:
        for a in stage.ASSETS:
            keys |= {k.to_user_string() for k in a.keys}
    return keys


def _existing(names) -> list:
    """The names that are defined, so a job keeps loading while stages are added or renamed."""
    defined = _defined_keys()
    return [n for n in names if n in defined]


def _automation_default_status() -> dg.DefaultSensorStatus:
    value = os.environ.get("CUSTOMER_ASSETS_AUTOMATION", "off").strip().lower()
    if value in ("on", "1", "true", "running", "yes"):
        return dg.DefaultSensorStatus.RUNNING
    if value in ("off", "0", "false", "stopped", "no", ""):
        return dg.DefaultSensorStatus.STOPPED
    raise ValueError(f"CUSTOMER_ASSETS_AUTOMATION={value!r}: use 'on' or 'off'")


def _settle_seconds() -> float:
    """CUSTOMER_ASSETS_LANDING_SETTLE_SECONDS (default 60): how long a landing file must be
    unchanged before new_data_sensor takes it (a file still being copied is not ingested)."""
    value = os.environ.get("CUSTOMER_ASSETS_LANDING_SETTLE_SECONDS", "").strip() or "60"
    try:
        return max(0.0, float(value))
    except ValueError as e:
        raise ValueError(f"CUSTOMER_ASSETS_LANDING_SETTLE_SECONDS={value!r} is not a number of seconds") from e


def _timezone() -> str:
    tz = os.environ.get("CUSTOMER_ASSETS_TIMEZONE", "").strip() or "UTC"
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(
            f"CUSTOMER_ASSETS_TIMEZONE={tz!r} is not an IANA time zone (e.g. 'Europe/London')"
        ) from e
    return tz


all_assets_job = dg.define_asset_job(
    "all_assets",
    selection=dg.AssetSelection.all(),
    description="Every asset: first build of a warehouse (features, training, scoring, reports).",
)

weekly_refresh_job = dg.define_asset_job(
    "weekly_refresh",
    selection=dg.AssetSelection.all() - dg.AssetSelection.assets(*_existing(TRAINING_ASSETS)),
    description="Ingestion through scoring with the current champion models, bundles, actions, "
    "drift report and report. Does not train: retraining is retrain_models' job.",
)

_retrain_keys = _existing(TRAINING_ASSETS + SCORING_ASSETS + (DRIFT_ASSET,))
retrain_models_job = dg.define_asset_job(
    "retrain_models",
    selection=dg.AssetSelection.assets(*_retrain_keys) if _retrain_keys else dg.AssetSelection.groups("monitoring"),
    description="Retrain the models (registry champion/challenger gate), rescore with the champions, "
    "re-run the drift report. The run tag customer_assets/retrain_reason is recorded in model_registry.",
)

AUTOMATION_STATUS = _automation_default_status()
SCHEDULE_STATUS = (
    dg.DefaultScheduleStatus.RUNNING
    if AUTOMATION_STATUS == dg.DefaultSensorStatus.RUNNING
    else dg.DefaultScheduleStatus.STOPPED
)

weekly_refresh_schedule = dg.ScheduleDefinition(
    name="weekly_refresh_schedule",
    job=weekly_refresh_job,
    cron_schedule="0 6 * * 1",
    execution_timezone=_timezone(),
    default_status=SCHEDULE_STATUS,
    description="weekly_refresh every Monday at 06:00 (time zone: CUSTOMER_ASSETS_TIMEZONE, default UTC).",
)


def _latest_materialization(instance: dg.DagsterInstance, key: str):
    records = instance.fetch_materializations(dg.AssetKey(key), limit=1).records
    if not records:
        return None
    rec = records[0]
    mat = rec.asset_materialization
    metadata = {k: v.value for k, v in (mat.metadata if mat else {}).items()}
    return {"storage_id": rec.storage_id, "run_id": rec.run_id, "metadata": metadata}


@dg.sensor(
    job=weekly_refresh_job,
    minimum_interval_seconds=60,
    default_status=AUTOMATION_STATUS,
    description="Requests weekly_refresh once per new set of files in the landing folder (files whose "
    "sha256 is not in ingested_files). Reads ingested_files' materialization metadata, never the warehouse.",
)
def new_data_sensor(context: dg.SensorEvaluationContext, source: SourceConfig):
    cursor = load_cursor(context.cursor)
    latest = _latest_materialization(context.instance, INGESTED_FILES_ASSET)
    ingested = None
    if latest is not None and isinstance(latest["metadata"].get(INGESTED_SHA_KEY), list):
        ingested = set(latest["metadata"][INGESTED_SHA_KEY])
    decision = decide_new_data(source.landing_dir, ingested, cursor, settle_seconds=_settle_seconds())
    cursor_json = json.dumps(decision.cursor, sort_keys=True)
    if decision.run_key is None:
        context.log.info(decision.skip_reason)
        return dg.SensorResult(skip_reason=decision.skip_reason, cursor=cursor_json)
    names = ", ".join(sorted(os.path.basename(p) for p in decision.new_files))
    context.log.info(f"new files: {names}")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=decision.run_key,
                tags={NEW_FILES_TAG: names[:500]},
            )
        ],
        cursor=cursor_json,
    )


@dg.sensor(
    job=retrain_models_job,
    minimum_interval_seconds=60,
    default_status=AUTOMATION_STATUS,
    description="Requests retrain_models once per drift_report materialization that breaches the PSI or "
    "AUC-drop threshold, with the reason in the run tags (recorded in model_registry).",
)
def drift_retrain_sensor(context: dg.SensorEvaluationContext):
    cursor = load_cursor(context.cursor)
    latest = _latest_materialization(context.instance, DRIFT_ASSET)
    decision = decide_retrain(latest, cursor)
    cursor_json = json.dumps(decision.cursor, sort_keys=True)
    if not decision.request:
        context.log.info(decision.message)
        return dg.SensorResult(skip_reason=decision.message, cursor=cursor_json)
    context.log.info(f"requesting retrain_models: {decision.message}")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=decision.run_key,
                tags={RETRAIN_REASON_TAG: decision.message, DRIFT_REPORT_TAG: str(latest["storage_id"])},
            )
        ],
        cursor=cursor_json,
    )


JOBS: list = [all_assets_job, weekly_refresh_job, retrain_models_job]
SCHEDULES: list = [weekly_refresh_schedule]
SENSORS: list = [new_data_sensor, drift_retrain_sensor]
