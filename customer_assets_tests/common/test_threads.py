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


def _cgroup(tmp_path, proc_line: str, files: dict):
    """A fake /sys/fs/cgroup under tmp_path with `files` ({relative path: text}), and a
    /proc/self/cgroup naming the process's group."""
    root = tmp_path / "cgroup"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    proc = tmp_path / "proc_cgroup"
    proc.write_text(proc_line + "\n")
    return str(root), str(proc)


def test_cgroup_v2_quota_is_the_smallest_of_the_group_and_its_ancestors(tmp_path):
    root, proc = _cgroup(tmp_path, "0::/kubepods/pod1/ctr", {
        "kubepods/pod1/ctr/cpu.max": "max 100000",         # the container itself: no limit
        "kubepods/pod1/cpu.max": "150000 100000",           # its pod: 1.5 CPUs
        "kubepods/cpu.max": "400000 100000",
    })
    assert threads.cgroup_cpu_limit(root, proc) == 1.5


def test_cgroup_v1_quota_and_no_quota(tmp_path):
    root, proc = _cgroup(tmp_path, "4:cpu,cpuacct:/docker/abc", {
        "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "50000",
        "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000",
    })
    assert threads.cgroup_cpu_limit(root, proc) == 0.5
    root, proc = _cgroup(tmp_path / "none", "1:cpu:/", {"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"})
    assert threads.cgroup_cpu_limit(root, proc) is None
    assert threads.cgroup_cpu_limit(root, str(tmp_path / "missing")) is None


def test_a_container_quota_caps_the_cores(monkeypatch):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda _pid: set(range(16)))  # a 16-core host
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: None)
    assert threads.available_cores() == 16
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: 1.5)   # docker run --cpus 1.5
    assert threads.available_cores() == 2
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: 0.5)
    assert threads.available_cores() == 1
