"""The model registry: versioned joblib artifacts + the `model_registry` warehouse table.

- `register_model` saves an artifact, records its sha256, and applies the champion/challenger
  gate: the new version becomes champion only if its selection metric is at least as good as the
  current champion's on the same out-of-time window (minus a tolerance). Otherwise it stays
  challenger and the returned message says why.
- `load_model` is the only way to load an artifact: it verifies the hash, and if the champion's
  file is missing or corrupted it falls back to the previous good version (with a warning),
  so scoring keeps running on the last good champion.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import duckdb
import joblib

from customer_assets.common.db import shared_state, transaction

REGISTRY_DDL = """
CREATE TABLE IF NOT EXISTS model_registry (
    name                   VARCHAR NOT NULL,
    version                INTEGER NOT NULL,
    trained_at             TIMESTAMP NOT NULL,
    train_window_start     DATE,
    train_window_end       DATE,
    eval_window_start      DATE,
    eval_window_end        DATE,
    features               VARCHAR,   -- JSON list
    metrics                VARCHAR,   -- JSON object
    selection_metric       VARCHAR,
    selection_value        DOUBLE,
    artifact_path          VARCHAR NOT NULL,
    artifact_sha256        VARCHAR NOT NULL,
    status                 VARCHAR NOT NULL,  -- champion / challenger / retired
    reason                 VARCHAR,           -- first_training / schedule / drift: ... / manual
    reference_distribution VARCHAR,           -- JSON: per-feature quantile bins (for PSI)
    gate_message           VARCHAR,
    PRIMARY KEY (name, version)
)
"""


class ArtifactError(RuntimeError):
    """A model artifact is missing or does not match its registered sha256."""


@dataclass
class Registration:
    name: str
    version: int
    status: str
    promoted: bool
    message: str
    artifact_path: str
    sha256: str


@dataclass
class LoadedModel:
    obj: Any
    version: int
    row: dict
    warnings: list = field(default_factory=list)


def ensure_registry(con: duckdb.DuckDBPyConnection) -> None:
    # Check first: readers (scoring, the report) may hold a read-only connection, where even
    # CREATE TABLE IF NOT EXISTS is refused.
    with shared_state("model_registry"):
        exists = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'model_registry'"
        ).fetchone()[0]
        if not exists:
            con.execute(REGISTRY_DDL)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _window(w):
    if w is None:
        return None, None
    return w[0], w[1]


RETRAIN_REASON_TAG = "customer_assets/retrain_reason"


def training_reason(run_tags: Optional[dict], con: duckdb.DuckDBPyConnection, name: str) -> str:
    """Why a model is being trained: the drift sensor's run tag when present, else the first
    training of this name, else a scheduled refresh."""
    tag = (run_tags or {}).get(RETRAIN_REASON_TAG)
    if tag:
        return tag
    return "first_training" if current_champion(con, name) is None else "scheduled"


def current_champion(con: duckdb.DuckDBPyConnection, name: str) -> Optional[dict]:
    ensure_registry(con)
    df = con.execute(
        "SELECT * FROM model_registry WHERE name = ? AND status = 'champion' ORDER BY version DESC LIMIT 1",
        [name],
    ).df()
    return None if df.empty else _row_to_dict(df.iloc[0])


def _row_to_dict(row) -> dict:
    d = row.to_dict()
    for key in ("features", "metrics", "reference_distribution"):
        if d.get(key):
            d[key] = json.loads(d[key])
    return d


def register_model(
    con: duckdb.DuckDBPyConnection,
    models_dir: str | Path,
    name: str,
    artifact: Any,
    *,
    metrics: dict,
    features: list,
    selection_metric: str,
    train_window: Optional[tuple] = None,
    eval_window: Optional[tuple] = None,
    reason: str = "first_training",
    higher_is_better: bool = True,
    tolerance: float = 0.0,
    champion_metric_same_window: Optional[float] = None,
    reference_distribution: Optional[dict] = None,
) -> Registration:
    """Save `artifact`, add a registry row and apply the champion/challenger gate.

    `champion_metric_same_window`: the current champion's selection metric evaluated by the
    caller on this model's evaluation window. When None, the champion's stored metric is used
    if its evaluation window is the same; otherwise the gate cannot compare and the new model
    is promoted with a message that says so.
    """
    # one registration at a time in this process (training steps run in threads, executor.py):
    # the version number and the champion swap must not interleave
    with shared_state("model_registry"):
        return _register(con, models_dir, name, artifact, metrics, features, selection_metric, train_window,
                         eval_window, reason, higher_is_better, tolerance, champion_metric_same_window,
                         reference_distribution)


def _register(con, models_dir, name, artifact, metrics, features, selection_metric, train_window, eval_window,
              reason, higher_is_better, tolerance, champion_metric_same_window, reference_distribution):
    ensure_registry(con)
    version = con.execute(
        "SELECT coalesce(max(version), 0) + 1 FROM model_registry WHERE name = ?", [name]
    ).fetchone()[0]
    folder = Path(models_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"v{version}.joblib"
    tmp = path.with_suffix(".joblib.tmp")
    joblib.dump(artifact, tmp)
    tmp.replace(path)  # atomic: a crash never leaves a half-written artifact under the real name
    digest = sha256_file(path)

    new_value = metrics.get(selection_metric)
    champion = current_champion(con, name)
    promoted, message = _gate(
        champion, new_value, selection_metric, eval_window, higher_is_better, tolerance,
        champion_metric_same_window,
    )
    status = "champion" if promoted else "challenger"
    tw0, tw1 = _window(train_window)
    ew0, ew1 = _window(eval_window)
    with transaction(con):
        if promoted and champion is not None:
            con.execute(
                "UPDATE model_registry SET status = 'retired' WHERE name = ? AND status = 'champion'",
                [name],
            )
        con.execute(
            "INSERT INTO model_registry VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                name, version, dt.datetime.now(), tw0, tw1, ew0, ew1,
                json.dumps(list(features)), json.dumps(_jsonable(metrics)), selection_metric,
                None if new_value is None else float(new_value), str(path), digest, status, reason,
                json.dumps(_jsonable(reference_distribution)) if reference_distribution else None,
                message,
            ],
        )
    return Registration(name, version, status, promoted, message, str(path), digest)


def _gate(champion, new_value, metric, eval_window, higher_is_better, tolerance, champ_same_window):
    if champion is None:
        return True, "first model of this name: champion"
    if new_value is None:
        return False, f"new model has no {metric}: stays challenger"
    champ_value = champ_same_window
    if champ_value is None:
        same = (
            eval_window is not None
            and str(champion.get("eval_window_start"))[:10] == str(eval_window[0])[:10]
            and str(champion.get("eval_window_end"))[:10] == str(eval_window[1])[:10]
        )
        if same:
            champ_value = champion.get("selection_value")
    if champ_value is None:
        return True, (
            f"champion v{champion['version']} could not be evaluated on this window; "
            f"promoted on its own {metric}={new_value:.4f}"
        )
    better = new_value >= champ_value - tolerance if higher_is_better else new_value <= champ_value + tolerance
    verdict = "promoted to champion" if better else "stays challenger"
    return better, (
        f"{metric}: new {new_value:.4f} vs champion v{champion['version']} {champ_value:.4f} "
        f"on the same window (tolerance {tolerance}): {verdict}"
    )


def load_model(con: duckdb.DuckDBPyConnection, name: str, version: Optional[int] = None) -> LoadedModel:
    """Load the champion (or a given version), verifying its sha256.

    Without `version`: if the champion's artifact is missing or corrupted, fall back to the
    newest earlier version whose artifact verifies, and say so in `warnings`. Raises
    ArtifactError naming the file when nothing usable is left.
    """
    ensure_registry(con)
    if version is not None:
        df = con.execute("SELECT * FROM model_registry WHERE name = ? AND version = ?", [name, version]).df()
        if df.empty:
            raise ArtifactError(f"model {name!r} has no version {version} in model_registry")
        row = _row_to_dict(df.iloc[0])
        return LoadedModel(_load_verified(row), row["version"], row)

    df = con.execute(
        """SELECT * FROM model_registry WHERE name = ?
           ORDER BY (status = 'champion') DESC, (status = 'retired') DESC, version DESC""",
        [name],
    ).df()
    if df.empty:
        raise ArtifactError(f"no model named {name!r} in model_registry: materialize its training asset first")
    warnings, errors = [], []
    for _, r in df.iterrows():
        row = _row_to_dict(r)
        if row["status"] == "challenger" and errors == [] and warnings == []:
            continue  # a challenger is only a fallback once the champion has failed
        try:
            obj = _load_verified(row)
        except ArtifactError as e:
            errors.append(str(e))
            continue
        if errors:
            warnings.append(
                f"champion unusable ({'; '.join(errors)}); using {name} v{row['version']} ({row['status']}) instead"
            )
        return LoadedModel(obj, row["version"], row, warnings)
    raise ArtifactError(f"no usable artifact for model {name!r}: " + "; ".join(errors))


def _load_verified(row: dict) -> Any:
    path = Path(row["artifact_path"])
    if not path.exists():
        raise ArtifactError(f"artifact file {path} for {row['name']} v{row['version']} is missing")
    digest = sha256_file(path)
    if digest != row["artifact_sha256"]:
        raise ArtifactError(
            f"artifact file {path} for {row['name']} v{row['version']} is corrupted "
            f"(sha256 {digest[:12]}... != registered {row['artifact_sha256'][:12]}...)"
        )
    return joblib.load(path)


def _jsonable(obj):
    """Make numpy / pandas scalars and dates JSON-serialisable."""
    import numpy as np

    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return None if np.isnan(obj) else float(obj)
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, (dt.date, dt.datetime)):
        return obj.isoformat()
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    return obj
