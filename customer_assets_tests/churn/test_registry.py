"""Model registry: promotion, refusal, tolerance, corrupted and missing artifacts, fallback."""

import json

import pytest

from customer_assets.registry import (
    ArtifactError,
    current_champion,
    load_model,
    reference_distribution,
    register_model,
)

W1 = ("2011-09-10", "2011-12-09")
W2 = ("2011-10-10", "2012-01-08")


def _register(con, tmp_path, value, obj=None, **kw):
    kw.setdefault("eval_window", W1)
    return register_model(
        con, tmp_path / "models", "m", obj if obj is not None else {"value": value},
        metrics={"roc_auc": value}, features=["a", "b"], selection_metric="roc_auc", **kw,
    )


def _statuses(con):
    return dict(con.execute("SELECT version, status FROM model_registry WHERE name = 'm' ORDER BY version").fetchall())


def test_first_model_is_champion_and_row_is_complete(con, tmp_path):
    import pandas as pd

    ref = reference_distribution(pd.DataFrame({"a": range(100), "b": [1.0] * 100}), ["a", "b"])
    reg = _register(con, tmp_path, 0.74, reason="first_training", train_window=("2011-03-14", "2011-09-10"),
                    reference_distribution=ref)
    assert reg.promoted and reg.status == "champion" and reg.version == 1
    row = current_champion(con, "m")
    assert row["version"] == 1 and row["reason"] == "first_training"
    assert row["features"] == ["a", "b"] and row["metrics"] == {"roc_auc": 0.74}
    assert str(row["eval_window_start"])[:10] == "2011-09-10" and str(row["train_window_start"])[:10] == "2011-03-14"
    assert len(row["artifact_sha256"]) == 64
    assert len(row["reference_distribution"]["a"]["proportions"]) == 10
    assert row["reference_distribution"]["b"]["edges"] == [1.0]  # a constant feature keeps one cut point


def test_better_model_is_promoted_and_old_champion_retired(con, tmp_path):
    _register(con, tmp_path, 0.74)
    reg = _register(con, tmp_path, 0.75, reason="scheduled")
    assert reg.promoted and reg.status == "champion"
    assert "promoted" in reg.message and "0.7400" in reg.message
    assert _statuses(con) == {1: "retired", 2: "champion"}
    assert load_model(con, "m").obj == {"value": 0.75}


def test_worse_model_is_refused_and_stays_challenger(con, tmp_path):
    _register(con, tmp_path, 0.74)
    reg = _register(con, tmp_path, 0.73)
    assert not reg.promoted and reg.status == "challenger"
    assert "stays challenger" in reg.message
    assert _statuses(con) == {1: "champion", 2: "challenger"}
    loaded = load_model(con, "m")
    assert loaded.version == 1 and loaded.obj == {"value": 0.74} and loaded.warnings == []


def test_equal_is_promoted_and_tolerance_applies(con, tmp_path):
    _register(con, tmp_path, 0.74)
    assert _register(con, tmp_path, 0.74).promoted  # "at least as good"
    assert not _register(con, tmp_path, 0.73).promoted  # tolerance 0
    assert _register(con, tmp_path, 0.73, tolerance=0.02).promoted  # within tolerance


def test_gate_uses_champion_metric_on_the_same_window(con, tmp_path):
    _register(con, tmp_path, 0.74, eval_window=W1)
    # a later window: the stored 0.74 is not comparable; the caller evaluated the champion at 0.80 there
    reg = _register(con, tmp_path, 0.78, eval_window=W2, champion_metric_same_window=0.80)
    assert not reg.promoted and "0.8000" in reg.message
    # without a same-window value and a different window, the gate cannot compare and says so
    reg = _register(con, tmp_path, 0.60, eval_window=W2)
    assert reg.promoted and "could not be evaluated" in reg.message


def test_lower_is_better_metric(con, tmp_path):
    register_model(con, tmp_path, "mae", {"v": 1}, metrics={"mae": 10.0}, features=[], selection_metric="mae",
                   higher_is_better=False, eval_window=W1)
    reg = register_model(con, tmp_path, "mae", {"v": 2}, metrics={"mae": 12.0}, features=[],
                         selection_metric="mae", higher_is_better=False, eval_window=W1)
    assert not reg.promoted


def test_corrupted_champion_falls_back_to_last_good_version(con, tmp_path):
    _register(con, tmp_path, 0.74)
    reg2 = _register(con, tmp_path, 0.75)
    with open(reg2.artifact_path, "ab") as f:
        f.write(b"tampered")
    loaded = load_model(con, "m")
    assert loaded.version == 1 and loaded.obj == {"value": 0.74}
    assert len(loaded.warnings) == 1
    assert "corrupted" in loaded.warnings[0] and reg2.artifact_path in loaded.warnings[0]
    # asking for the corrupted version explicitly is a clear error naming the file
    with pytest.raises(ArtifactError, match="corrupted") as e:
        load_model(con, "m", version=2)
    assert reg2.artifact_path in str(e.value)


def test_missing_champion_falls_back_and_nothing_left_is_a_clear_error(con, tmp_path):
    import os

    reg1 = _register(con, tmp_path, 0.74)
    reg2 = _register(con, tmp_path, 0.75)
    os.remove(reg2.artifact_path)
    loaded = load_model(con, "m")
    assert loaded.version == 1 and "missing" in loaded.warnings[0] and reg2.artifact_path in loaded.warnings[0]
    os.remove(reg1.artifact_path)
    with pytest.raises(ArtifactError) as e:
        load_model(con, "m")
    assert reg1.artifact_path in str(e.value) and reg2.artifact_path in str(e.value)


def test_refused_challenger_is_not_used_while_champion_is_good(con, tmp_path):
    _register(con, tmp_path, 0.74)
    _register(con, tmp_path, 0.70)  # challenger
    assert load_model(con, "m").version == 1


def test_unknown_model_and_version_are_clear_errors(con, tmp_path):
    with pytest.raises(ArtifactError, match="no model named 'nope'"):
        load_model(con, "nope")
    _register(con, tmp_path, 0.74)
    with pytest.raises(ArtifactError, match="no version 7"):
        load_model(con, "m", version=7)


def test_metrics_with_numpy_and_nan_are_stored_as_json(con, tmp_path):
    import numpy as np

    register_model(con, tmp_path, "j", {"v": 1}, metrics={"roc_auc": np.float64(0.7), "x": float("nan"),
                                                          "n": np.int64(3)},
                   features=["a"], selection_metric="roc_auc")
    stored = json.loads(con.execute("SELECT metrics FROM model_registry WHERE name = 'j'").fetchone()[0])
    assert stored == {"roc_auc": 0.7, "x": None, "n": 3}
