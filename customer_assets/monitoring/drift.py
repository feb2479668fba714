"""The drift report: feature drift (PSI) of each champion model, and the churn champion's AUC decay.

PSI: for every registered model that stores a reference distribution (churn_model, ltv_xgb), the
current scoring features (the model's own feature function at as_of) are binned on the reference
quantile bins of, and compared with, the deployment baseline: the population the champion scored
when it was trained (the features at the data end the champion saw). The stored training shares come from stacked past snapshots; on a short
history they differ from today's population by construction (measured in docs/monitoring.md), so
PSI against them is reported (psi_vs_training) but does not trigger.

AUC decay: the churn champion scores the customers as they were at as_of - horizon (the latest
snapshot whose label window (as_of - horizon, as_of] has fully matured), the ROC AUC against who
then churned is compared with the AUC recorded at training, as a relative drop:
(training_auc - current_auc) / training_auc.

Everything here takes a DuckDB connection and plain values; the asset only glues it to Dagster.
"""

from __future__ import annotations

import datetime as dt
import importlib
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Optional

import pandas as pd

from customer_assets.common import source_files
from customer_assets.common.db import is_read_only, table_columns, table_exists
from customer_assets.monitoring import baselines
from customer_assets.monitoring.psi import psi_table
from customer_assets.registry import ArtifactError, current_champion, load_model, reference_distribution

REPORT_COLUMNS = ["model", "model_version", "check_name", "feature", "value", "threshold", "breached",
                  "exempt", "psi_vs_training", "baseline", "detail", "as_of"]

# model name -> "module:function" computing its scoring features: f(con, snapshot_date) -> DataFrame
MODEL_FEATURE_FRAMES = {
    "churn_model": "customer_assets.churn.features:churn_feature_frame",
    "ltv_xgb": "customer_assets.customers.features:compute_customer_features",
}
CHURN_LABELS = "customer_assets.churn.features:churn_labels"


def _resolve(path: str) -> Optional[Callable]:
    module, fn = path.split(":")
    try:
        return getattr(importlib.import_module(module), fn)
    except (ImportError, AttributeError):
        return None


@dataclass
class DriftResult:
    as_of: dt.date
    table: pd.DataFrame                      # REPORT_COLUMNS
    psi: pd.DataFrame                        # model, model_version, feature, psi, ..., exempt, breached
    auc: dict                                # status, current_auc, training_auc, relative_drop, ...
    psi_breaches: list = field(default_factory=list)   # rows (dict) of breaching features
    auc_breached: bool = False
    notes: list = field(default_factory=list)
    fingerprint: str = ""

    @property
    def retrain_recommended(self) -> bool:
        return bool(self.psi_breaches) or self.auc_breached

    def reason(self, psi_threshold: float, auc_drop_threshold: float) -> str:
        """The retrain reason recorded in model_registry: which features / the AUC drop, with values."""
        parts = []
        by_model: dict = {}
        for b in sorted(self.psi_breaches, key=lambda r: -r["psi"]):
            by_model.setdefault((b["model"], b["model_version"]), []).append(b)
        texts: dict = {}  # models whose breaches read the same (shared features) share one part
        for (model, version), rows in by_model.items():
            shown = ", ".join(f"{r['feature']}={r['psi']:.3f}" for r in rows[:4])
            more = f" (+{len(rows) - 4} more)" if len(rows) > 4 else ""
            texts.setdefault(f"PSI {shown}{more} > {psi_threshold:g}", []).append(f"{model} v{version}")
        parts += [f"{text} ({', '.join(models)})" for text, models in texts.items()]
        if self.auc_breached:
            a = self.auc
            parts.append(
                f"AUC drop {a['relative_drop']:.1%} ({a['training_auc']:.3f} -> {a['current_auc']:.3f}) "
                f"> {auc_drop_threshold:.0%} (churn_model v{a['model_version']})"
            )
        return "drift: " + "; ".join(parts) if parts else ""

    def summary(self, psi_threshold: float, auc_drop_threshold: float) -> str:
        checked = self.psi[~self.psi["exempt"] & self.psi["psi"].notna()] if len(self.psi) else self.psi
        if len(checked):
            top = checked.sort_values("psi", ascending=False).iloc[0]
            psi_part = f"max PSI {top['psi']:.3f} ({top['feature']}, {top['model']})"
        else:
            psi_part = "no PSI computed"
        if self.auc.get("status") == "ok":
            auc_part = f"AUC {self.auc['current_auc']:.3f} vs {self.auc['training_auc']:.3f} at training " \
                       f"(drop {self.auc['relative_drop']:.1%})"
        else:
            auc_part = f"AUC check skipped: {self.auc.get('note')}"
        verdict = "RETRAIN" if self.retrain_recommended else "within thresholds"
        return f"{verdict}: {psi_part} vs {psi_threshold:g}; {auc_part} vs {auc_drop_threshold:.0%}"


def data_fingerprint(con) -> str:
    """Identifies the data a report was computed on: the transactions' fingerprint
    (common.data_version: any change to the cleaned or quarantined rows changes it; kept for the run,
    so it costs nothing here, where a count and sum over every line took 0.19 s at N=20)."""
    from customer_assets.common.data_version import data_fingerprint as transactions_fingerprint

    return transactions_fingerprint(con)[:16]


def baseline_as_of(con, champion: dict, as_of: dt.date, memo: Optional[dict] = None) -> Optional[dt.date]:
    """The data end the champion was trained on: the latest order date among the files that were
    ingested before it was registered (ingested_files.loaded_at <= model_registry.trained_at).
    None when that cannot be told (no ingested_files, e.g. hand-made data).

    Read from ingested_files.last_order_date, which ingestion records per file (common/
    source_files). A warehouse whose ingested_files predates that column (read here before any
    ingestion since) is scanned: each file's cleaned lines, a workbook's sheets (`path#sheet`)
    included; `memo` (a dict the caller keeps for one report) shares that scan between champions
    whose training saw the same files."""
    if not (table_exists(con, "ingested_files") and champion.get("trained_at") is not None):
        return None
    trained_at = pd.Timestamp(champion["trained_at"]).to_pydatetime()
    if source_files.COLUMN in table_columns(con, "ingested_files"):
        files, d = con.execute(
            f"SELECT count(*), max({source_files.COLUMN}) FROM ingested_files "
            "WHERE loaded_at <= ? AND path IS NOT NULL", [trained_at]).fetchone()
        return None if not files or d is None else min(d, as_of)
    paths = tuple(sorted(p for (p,) in con.execute(
        "SELECT DISTINCT path FROM ingested_files WHERE loaded_at <= ? AND path IS NOT NULL", [trained_at],
    ).fetchall()))
    if memo is not None and paths in memo:
        d = memo[paths]
    else:
        d = max(source_files.last_order_dates(con, paths).values(), default=None) if paths else None
        if memo is not None:
            memo[paths] = d
    return None if d is None else min(d, as_of)


def model_psi(con, name: str, as_of: dt.date, exempt: set,
              feature_frame: Optional[Callable] = None, bins: int = 10,
              baseline_memo: Optional[dict] = None) -> tuple[pd.DataFrame, Optional[str]]:
    """PSI of every feature of `name`'s champion at as_of. Returns (rows, note-if-skipped).

    Two PSI columns:
    - psi (the trigger): current features vs the deployment baseline, the population the champion
      scored when it was trained (features at baseline_as_of), in `bins` quantile bins of that
      baseline (registry.reference_distribution, the same binning the registry uses). Falls back
      to the stored training reference when the baseline date cannot be told.
    - psi_vs_training: current features vs the reference stored in the registry at training
      (stacked training snapshots; informational: on a short history it differs from today's
      population by construction, see docs/monitoring.md).
    """
    champion = current_champion(con, name)
    if champion is None:
        return pd.DataFrame(), f"{name}: no champion in model_registry (train it first)"
    ref = champion.get("reference_distribution")
    if not ref:
        return pd.DataFrame(), f"{name} v{champion['version']}: no reference distribution stored"
    fn = feature_frame or _resolve(MODEL_FEATURE_FRAMES.get(name, ""))
    if fn is None:
        return pd.DataFrame(), f"{name}: no feature function known to compute its current features"
    features = list(champion.get("features") or ref.keys())
    current = fn(con, as_of)
    vs_training = psi_table(ref, current, features)
    base_date = baseline_as_of(con, champion, as_of, baseline_memo)
    if base_date is None:
        t = vs_training.copy()
        t["baseline"] = "training reference (deployment date unknown)"
    else:
        t = psi_table(_baseline(con, name, champion, base_date, as_of, current, fn, features, bins,
                                stored=feature_frame is None), current, features)
        t["baseline"] = f"population at {base_date}"
    t["psi_vs_training"] = vs_training["psi"].to_numpy()
    t.insert(0, "model_version", int(champion["version"]))
    t.insert(0, "model", name)
    t["exempt"] = t["feature"].isin(exempt)
    return t, None


def _baseline(con, name: str, champion: dict, base_date: dt.date, as_of: dt.date, current: pd.DataFrame,
              fn: Callable, features: list, bins: int, stored: bool) -> dict:
    """The reference distribution of the features at the baseline date. With the stage's own
    feature function (`stored`) it is frozen in the warehouse when first computed (monitoring.
    baselines): usually by the run that trains the champion, where the baseline is that run's own
    population (`current`); the weekly refreshes after it read it."""

    def compute() -> dict:
        frame = current if base_date == as_of else fn(con, base_date)
        return reference_distribution(frame, features, bins)

    if not stored or is_read_only(con):
        return compute()
    key = baselines.baseline_key(name, champion, base_date, bins, features)
    return baselines.stored_reference(con, key, compute)[0]


# (database, data fingerprint, snapshot, horizon, model version, artifact sha256) -> (frame, p):
# drift_report's AUC and the report's reliability diagram score the same matured window with the
# same champion; in one process (a run) the second asks this cache instead of recomputing the
# labels and the predictions.
_MATURED: "OrderedDict" = OrderedDict()
_MATURED_SIZE = 4
_MATURED_LOCK = threading.Lock()  # steps may run at once in threads of one process (executor.py)


def matured_window_scores(con, loaded, snapshot: dt.date, horizon_days: int,
                          feature_frame: Optional[Callable] = None, labels: Optional[Callable] = None):
    """(df, p) for the churn champion `loaded` (registry.load_model) on the window after `snapshot`:
    df = features at the snapshot inner-joined with churn labels (customer_id, churned) of
    (snapshot, snapshot + horizon]; p = the champion's churn probability per row of df, or None when
    the data lacks one of its features. Cached in-process (key: the database, its data fingerprint,
    snapshot, horizon, model version and artifact hash) when the stage's own functions are used."""
    from customer_assets.common.data_version import data_fingerprint as data_version

    default = feature_frame is None and labels is None
    feature_frame = feature_frame or _resolve(MODEL_FEATURE_FRAMES["churn_model"])
    labels = labels or _resolve(CHURN_LABELS)
    key = None
    if default:
        path = con.execute(
            "SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchone()[0]
        if path:
            key = (path, data_version(con), snapshot, int(horizon_days), int(loaded.version),
                   loaded.row.get("artifact_sha256"))
            with _MATURED_LOCK:
                hit = _MATURED.get(key)
            if hit is not None:
                df, p = hit
                return df.copy(), (None if p is None else p.copy())
    X = feature_frame(con, snapshot)
    y = labels(con, snapshot, horizon_days)
    df = X.merge(y[["customer_id", "churned"]], on="customer_id", how="inner")
    art = loaded.obj
    features = list(art.get("features") or loaded.row.get("features"))
    p = None
    if len(df) and not [f for f in features if f not in df.columns]:
        p = art["pipeline"].predict_proba(df[features].astype(float))[:, 1]
    if key is not None:
        with _MATURED_LOCK:
            _MATURED[key] = (df.copy(), None if p is None else p.copy())
            while len(_MATURED) > _MATURED_SIZE:
                _MATURED.popitem(last=False)
    return df, p


def champion_auc(con, as_of: dt.date, horizon_days: int, min_customers: int = 50,
                 feature_frame: Optional[Callable] = None, labels: Optional[Callable] = None) -> dict:
    """The churn champion's ROC AUC on the latest matured window vs its AUC at training."""
    from sklearn.metrics import roc_auc_score

    out = {"status": "skipped", "model_version": None, "current_auc": math.nan, "training_auc": math.nan,
           "relative_drop": math.nan, "n": 0, "churn_rate": math.nan, "note": ""}
    snapshot = as_of - dt.timedelta(days=horizon_days)
    out["window"] = f"features at {snapshot}, labels ({snapshot}, {as_of}]"
    try:
        loaded = load_model(con, "churn_model")
    except ArtifactError as e:
        out["note"] = str(e)
        return out
    out["model_version"] = int(loaded.version)
    training_auc = (loaded.row.get("metrics") or {}).get("roc_auc")
    if training_auc is None:
        out["note"] = f"churn_model v{loaded.version} has no roc_auc in its metrics"
        return out
    out["training_auc"] = float(training_auc)
    first = con.execute("SELECT min(order_date) FROM cleaned_transactions").fetchone()[0]
    if first is None or snapshot <= first:
        out["note"] = f"no matured window: as_of - horizon ({snapshot}) is not after the first order ({first})"
        return out
    if (feature_frame or _resolve(MODEL_FEATURE_FRAMES["churn_model"])) is None or \
            (labels or _resolve(CHURN_LABELS)) is None:
        out["note"] = "churn feature/label functions are not available"
        return out
    df, p = matured_window_scores(con, loaded, snapshot, horizon_days, feature_frame, labels)
    out["n"] = int(len(df))
    if len(df) < min_customers:
        out["note"] = f"only {len(df)} customers at {snapshot} (< {min_customers})"
        return out
    yv = df["churned"].astype(int)
    out["churn_rate"] = float(yv.mean())
    if yv.nunique() < 2:
        out["note"] = f"every customer at {snapshot} has churned={int(yv.iloc[0])}: AUC undefined"
        return out
    art = loaded.obj
    features = list(art.get("features") or loaded.row.get("features"))
    missing = [f for f in features if f not in df.columns]
    if missing:
        out["note"] = f"churn_model v{loaded.version} needs features the data no longer provides: {missing}"
        return out
    auc = float(roc_auc_score(yv, p))
    out.update(status="ok", current_auc=auc,
               relative_drop=(out["training_auc"] - auc) / out["training_auc"] if out["training_auc"] else math.nan)
    return out


def build_drift_report(con, as_of: dt.date, horizon_days: int, psi_threshold: float,
                       auc_drop_threshold: float, exempt: set = frozenset(),
                       models: tuple = ("churn_model", "ltv_xgb"), feature_frames: Optional[dict] = None,
                       labels: Optional[Callable] = None, bins: int = 10) -> DriftResult:
    """`feature_frames` / `labels` override the stage functions (name -> f(con, snapshot))."""
    feature_frames = feature_frames or {}
    notes, frames, baseline_memo = [], [], {}
    for name in models:
        t, note = model_psi(con, name, as_of, set(exempt), feature_frames.get(name), bins, baseline_memo)
        if note:
            notes.append(note)
        if len(t):
            frames.append(t)
    psi = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["model", "model_version", "feature", "psi", "reference_n", "current_n", "note", "baseline",
                 "psi_vs_training", "exempt"])
    psi["breached"] = (psi["psi"] > psi_threshold) & ~psi["exempt"].astype(bool)
    auc = champion_auc(con, as_of, horizon_days, feature_frame=feature_frames.get("churn_model"), labels=labels)
    if auc["status"] != "ok":
        notes.append(f"AUC check skipped: {auc['note']}")
    auc_breached = auc["status"] == "ok" and auc["relative_drop"] > auc_drop_threshold

    rows = [
        {"model": r.model, "model_version": int(r.model_version), "check_name": "psi", "feature": r.feature,
         "value": r.psi, "threshold": psi_threshold, "breached": bool(r.breached), "exempt": bool(r.exempt),
         "psi_vs_training": r.psi_vs_training, "baseline": r.baseline,
         "detail": r.note or f"reference n={r.reference_n}, current n={r.current_n}", "as_of": as_of}
        for r in psi.itertuples()
    ]
    rows.append({
        "model": "churn_model", "model_version": auc["model_version"], "check_name": "auc_drop", "feature": None,
        "value": auc["relative_drop"], "threshold": auc_drop_threshold, "breached": bool(auc_breached),
        "exempt": False, "psi_vs_training": None, "baseline": auc.get("window"),
        "detail": (f"AUC {auc['current_auc']:.4f} ({auc['window']}, n={auc['n']}) vs {auc['training_auc']:.4f} "
                   f"at training" if auc["status"] == "ok" else f"skipped: {auc['note']}"),
        "as_of": as_of,
    })
    table = pd.DataFrame(rows, columns=REPORT_COLUMNS)
    table["model_version"] = table["model_version"].astype("Int64")
    table["value"] = table["value"].astype(float)
    breaches = psi[psi["breached"]].to_dict("records")
    fp = data_fingerprint(con) if table_exists(con, "cleaned_transactions") else ""
    return DriftResult(as_of, table, psi, auc, breaches, bool(auc_breached), notes, fp)
