import numpy as np
import pytest

from customer_assets.common import threads


def test_busy_machine_gets_one_thread(monkeypatch):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda _pid: {0, 1})
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (5.0, 5.0, 5.0))
    assert threads.fit_threads() == 1
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (0.3, 0.3, 0.3))
    assert threads.fit_threads() == 2
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda _pid: {0})
    assert threads.fit_threads() == 1


@pytest.mark.parametrize("objective", ["binary:logistic", "reg:tweedie"])
def test_thread_count_never_changes_the_model(objective):
    # the claim fit_threads relies on: XGBoost's hist trees are the same on 1 and 2 threads
    import xgboost as xgb

    rng = np.random.default_rng(0)
    X = rng.normal(size=(20_000, 12))
    y = (X[:, 0] + rng.normal(size=len(X)) > 0).astype(float)
    if objective == "reg:tweedie":
        y = y * np.exp(X[:, 1])
    preds = []
    for n in (1, 2):
        m = xgb.XGBRegressor(objective=objective, n_estimators=100, max_depth=4, subsample=0.8,
                             colsample_bytree=0.8, n_jobs=n, random_state=0, tree_method="hist")
        m.fit(X, y)
        preds.append(m.predict(X))
    assert np.array_equal(preds[0], preds[1])
