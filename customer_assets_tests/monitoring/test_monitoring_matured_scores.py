"""drift.matured_window_scores: drift_report's AUC and the report's reliability diagram share one
scoring of the matured window per data version (in-process cache)."""

import datetime as dt
from types import SimpleNamespace

import numpy as np
import pandas as pd

from customer_assets.monitoring import drift


class _Pipeline:
    def predict_proba(self, X):
        p = np.clip(X["a"].to_numpy(dtype=float) / 10, 0, 1)
        return np.column_stack([1 - p, p])


def _loaded(version=1, features=("a",)):
    return SimpleNamespace(version=version, row={"artifact_sha256": f"sha{version}", "features": list(features)},
                           obj={"features": list(features), "pipeline": _Pipeline()})


def test_scores_are_computed_once_per_data_version(con, monkeypatch):
    calls = []

    def frame(c, s):
        calls.append(("X", s))
        return pd.DataFrame({"customer_id": ["1", "2", "3"], "a": [1, 5, 9]})

    def labels(c, s, h):
        calls.append(("y", s))
        return pd.DataFrame({"customer_id": ["1", "2", "4"], "churned": [0, 1, 1]})

    monkeypatch.setattr(drift, "_resolve", lambda path: labels if path == drift.CHURN_LABELS else frame)
    drift._MATURED.clear()
    con.execute("CREATE TABLE cleaned_transactions (order_date DATE)")
    con.execute("INSERT INTO cleaned_transactions VALUES ('2011-01-01')")
    con.execute("CHECKPOINT")
    s = dt.date(2011, 1, 1)
    df, p = drift.matured_window_scores(con, _loaded(), s, 90)
    assert df["customer_id"].tolist() == ["1", "2"] and np.allclose(p, [0.1, 0.5])
    df2, p2 = drift.matured_window_scores(con, _loaded(), s, 90)
    assert len(calls) == 2 and df2.equals(df) and np.array_equal(p2, p)  # cached
    drift.matured_window_scores(con, _loaded(version=2), s, 90)  # another champion: scored again
    assert len(calls) == 4
    con.execute("INSERT INTO cleaned_transactions VALUES ('2011-02-01')")
    con.execute("CHECKPOINT")
    drift.matured_window_scores(con, _loaded(), s, 90)  # new data: scored again
    assert len(calls) == 6
    drift.matured_window_scores(con, _loaded(), s, 90, feature_frame=frame, labels=labels)  # overrides: no cache
    drift.matured_window_scores(con, _loaded(), s, 90, feature_frame=frame, labels=labels)
    assert len(calls) == 10
    _, p_missing = drift.matured_window_scores(con, _loaded(version=3, features=("a", "b")), s, 90)
    assert p_missing is None  # the data lacks a model feature: not scored
    drift._MATURED.clear()
