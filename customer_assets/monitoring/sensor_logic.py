"""The decisions behind new_data_sensor and drift_retrain_sensor, as plain functions.

Neither sensor opens the DuckDB warehouse (a running job may hold its lock): they read Dagster
materialization metadata and the landing folder only, and keep their own JSON cursor.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Optional

from customer_assets.ingestion.readers import discover_files, file_sha256

RETRAIN_REASON_TAG = "customer_assets/retrain_reason"
DRIFT_REPORT_TAG = "customer_assets/drift_report_storage_id"
NEW_FILES_TAG = "customer_assets/new_files"
INGESTED_SHA_KEY = "sha256s"  # metadata entry on the ingested_files materialization: every sha256 in the table


def load_cursor(cursor: Optional[str]) -> dict:
    if not cursor:
        return {}
    try:
        value = json.loads(cursor)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


# --------------------------------------------------------------------------------------------
# new_data_sensor
# --------------------------------------------------------------------------------------------


@dataclass
class NewDataDecision:
    new_files: dict = field(default_factory=dict)  # path -> sha256
    run_key: Optional[str] = None
    skip_reason: Optional[str] = None
    cursor: dict = field(default_factory=dict)


def hash_landing_files(landing_dir: str, cache: dict) -> dict:
    """path -> sha256 of every file ingestion would load from the landing folder.

    `cache` maps path -> [size, mtime_ns, sha256] from the previous tick, so unchanged files are
    not re-read every 30 seconds."""
    out = {}
    for path in discover_files(None, landing_dir):
        try:
            st = os.stat(path)
        except FileNotFoundError:  # removed between listing and stat
            continue
        hit = cache.get(path)
        if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            out[path] = hit[2]
        else:
            out[path] = file_sha256(path)
    return out


def decide_new_data(landing_dir: str, ingested_sha256: Optional[set], cursor: dict,
                    settle_seconds: float = 0.0, now: Optional[float] = None) -> NewDataDecision:
    """Which landing files are neither ingested yet nor already requested by this sensor.

    `ingested_sha256`: every sha256 in ingested_files per its latest materialization (None when
    that metadata is not available: the sensor then relies on its cursor alone).
    `settle_seconds`: a file modified more recently than this is still being copied in: it is
    left for a later tick (so a half-copied file is never ingested)."""
    cache = cursor.get("files", {})
    now = time.time() if now is None else now
    hashes = hash_landing_files(landing_dir, cache)
    settling = []
    for p in list(hashes):
        try:
            if now - os.stat(p).st_mtime < settle_seconds:
                settling.append(os.path.basename(p))
                del hashes[p]
        except FileNotFoundError:
            del hashes[p]
    stats = {}
    for p, sha in hashes.items():
        try:
            st = os.stat(p)
            stats[p] = [st.st_size, st.st_mtime_ns, sha]
        except FileNotFoundError:
            pass
    ingested = set(ingested_sha256 or ())
    requested = set(cursor.get("requested", []))
    new = {p: s for p, s in hashes.items() if s not in ingested and s not in requested}
    # Forget requests that ingestion has confirmed (keeps the cursor small).
    requested -= ingested
    decision = NewDataDecision(cursor={"files": stats, "requested": sorted(requested)})
    wait = f"; {len(settling)} file(s) still being written ({', '.join(sorted(settling)[:5])})" if settling else ""
    if not hashes:
        decision.skip_reason = f"landing folder {landing_dir} holds no ingestible file{wait}"
        return decision
    if not new:
        decision.skip_reason = (
            f"all {len(hashes)} file(s) in {landing_dir} are already ingested or requested{wait}"
        )
        return decision
    shas = sorted(set(new.values()))
    decision.new_files = new
    decision.run_key = "new-files-" + hashlib.sha256("\n".join(shas).encode()).hexdigest()[:32]
    decision.cursor["requested"] = sorted(requested | set(shas))
    return decision


# --------------------------------------------------------------------------------------------
# drift_retrain_sensor
# --------------------------------------------------------------------------------------------


@dataclass
class RetrainDecision:
    request: bool
    message: str  # the retrain reason when request is True, else why not
    run_key: Optional[str] = None
    cursor: dict = field(default_factory=dict)


def decide_retrain(latest: Optional[dict], cursor: dict) -> RetrainDecision:
    """Whether the latest drift_report materialization calls for a retrain.

    `latest`: {"storage_id": int, "run_id": str, "metadata": {plain values}} or None.
    One request per breaching report (cursor: last storage id seen). A breaching report on the
    same data as the report that already triggered a retrain (same data_fingerprint: e.g. the
    report the retrain run itself writes when the gate kept the old champion) triggers nothing,
    so a challenger that lost the gate does not cause a retrain loop; new data does."""
    last_seen = int(cursor.get("last_storage_id", -1))
    if latest is None:
        return RetrainDecision(False, "no drift_report materialization yet", cursor=dict(cursor))
    sid = int(latest["storage_id"])
    if sid <= last_seen:
        return RetrainDecision(False, f"no new drift_report since storage id {last_seen}", cursor=dict(cursor))
    new_cursor = {**cursor, "last_storage_id": sid}
    md = latest.get("metadata") or {}
    if not md.get("retrain_recommended"):
        summary = md.get("summary") or "within thresholds"
        return RetrainDecision(False, f"drift_report {sid}: {summary}", cursor=new_cursor)
    fingerprint = md.get("data_fingerprint")
    if fingerprint and fingerprint == cursor.get("last_retrain_fingerprint"):
        return RetrainDecision(
            False,
            f"drift_report {sid} breaches, but a retrain was already requested on the same data "
            f"(fingerprint {fingerprint}); waiting for new data",
            cursor=new_cursor,
        )
    reason = md.get("retrain_reason") or "drift: thresholds breached"
    new_cursor["last_retrain_fingerprint"] = fingerprint
    return RetrainDecision(True, reason, run_key=f"drift-retrain-{sid}", cursor=new_cursor)
