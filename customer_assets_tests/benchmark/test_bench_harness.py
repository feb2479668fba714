"""The benchmark harness: replicated data keeps the source's shape, and per-step times come from a
real Dagster event log."""

import os
import subprocess
import sys
import time

from pathlib import Path

import dagster as dg
import duckdb
import pytest

# bench/ is a top-level folder of the repo, not part of the installed package
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import generate  # noqa: E402
from bench.run_pipeline import attribute_samples, step_times, tree_usage  # noqa: E402


@pytest.fixture(scope="module")
def source_sample(tmp_path_factory):
    """2,000 real Online Retail lines, including cancellations and missing customers."""
    path = tmp_path_factory.mktemp("src") / "sample.parquet"
    con = duckdb.connect()
    con.execute(
        f"""COPY (
              (SELECT * FROM read_parquet('{generate.SOURCE}') WHERE InvoiceNo LIKE 'C%' LIMIT 300)
              UNION ALL
              (SELECT * FROM read_parquet('{generate.SOURCE}') WHERE CustomerID IS NULL LIMIT 200)
              UNION ALL
              (SELECT * FROM read_parquet('{generate.SOURCE}') WHERE InvoiceNo NOT LIKE 'C%'
                 AND CustomerID IS NOT NULL LIMIT 1500)
              UNION ALL  -- the last days of the span, for the refresh week
              (SELECT * FROM read_parquet('{generate.SOURCE}') WHERE InvoiceDate >= '2011-12-05' LIMIT 300)
            ) TO '{path}' (FORMAT parquet)"""
    )
    return path


def test_replicas_have_own_ids_same_shape_dates_in_span(source_sample, tmp_path):
    res = generate.replicate(9, tmp_path, source=source_sample)
    con = duckdb.connect()
    src = f"read_parquet('{source_sample}')"
    out = f"read_parquet('{res['path']}')"
    n_src = con.execute(f"SELECT count(*) FROM {src}").fetchone()[0]
    assert res["rows"] == 9 * n_src
    # the same columns and types as the source, so the shipped mapping applies
    assert con.execute(f"DESCRIBE SELECT * FROM {out}").fetchall() == con.execute(
        f"DESCRIBE SELECT * FROM {src}").fetchall()
    # every replica has its own customers and orders
    src_c, src_o = con.execute(f"SELECT count(DISTINCT CustomerID), count(DISTINCT InvoiceNo) FROM {src}").fetchone()
    out_c, out_o = con.execute(f"SELECT count(DISTINCT CustomerID), count(DISTINCT InvoiceNo) FROM {out}").fetchone()
    assert (out_c, out_o) == (9 * src_c, 9 * src_o)
    # cancellations keep their "C" prefix, missing customers stay missing, baskets are unchanged
    assert con.execute(f"SELECT count(*) FILTER (WHERE InvoiceNo LIKE 'C%'), count(*) FILTER (WHERE CustomerID IS NULL),"
                       f" sum(Quantity * UnitPrice) FROM {out}").fetchone() == pytest.approx(
        tuple(9 * x for x in con.execute(f"SELECT count(*) FILTER (WHERE InvoiceNo LIKE 'C%'), "
                                         f"count(*) FILTER (WHERE CustomerID IS NULL), sum(Quantity * UnitPrice) FROM {src}").fetchone()))
    # replica 0 is the source itself
    assert con.execute(f"SELECT count(*) FROM (SELECT * FROM {src} EXCEPT ALL SELECT * FROM {out})").fetchone()[0] == 0
    # dates stay inside the source's span, and replicas are shifted (not all identical in time)
    lo, hi = con.execute(f"SELECT min(InvoiceDate::TIMESTAMP), max(InvoiceDate::TIMESTAMP) FROM {src}").fetchone()
    olo, ohi, days = con.execute(
        f"SELECT min(InvoiceDate::TIMESTAMP), max(InvoiceDate::TIMESTAMP), count(DISTINCT InvoiceDate[:10]) FROM {out}"
    ).fetchone()
    assert lo <= olo and ohi <= hi
    assert days > con.execute(f"SELECT count(DISTINCT InvoiceDate[:10]) FROM {src}").fetchone()[0]


def test_refresh_week_is_after_the_span_with_new_orders(source_sample, tmp_path):
    wk = generate.refresh_week(3, tmp_path, source=source_sample)
    con = duckdb.connect()
    hi = con.execute(f"SELECT max(InvoiceDate::TIMESTAMP) FROM read_parquet('{source_sample}')").fetchone()[0]
    out = f"read_parquet('{wk['path']}')"
    first, last, rows = con.execute(f"SELECT min(InvoiceDate::TIMESTAMP), max(InvoiceDate::TIMESTAMP), count(*) FROM {out}").fetchone()
    assert rows == wk["rows"] > 0
    assert hi < first and (last - hi).days <= 7
    full = generate.replicate(3, tmp_path, source=source_sample)["path"]
    assert con.execute(
        f"SELECT count(*) FROM {out} w JOIN read_parquet('{full}') f USING (InvoiceNo)").fetchone()[0] == 0
    # mostly existing customers: every week customer is a customer of the replicated data
    assert con.execute(
        f"SELECT count(*) FROM (SELECT DISTINCT CustomerID FROM {out} WHERE CustomerID IS NOT NULL "
        f"EXCEPT SELECT CustomerID FROM read_parquet('{full}'))").fetchone()[0] == 0


def test_tree_usage_counts_children():
    child = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "
                              "p = subprocess.Popen([sys.executable, '-c', 'import time; x = bytearray(50_000_000); time.sleep(5)']); "
                              "time.sleep(5)"])
    try:
        time.sleep(1.5)
        rss, procs, cpu = tree_usage(child.pid)
        assert procs == 2
        assert rss > 50_000_000  # the grandchild's 50 MB buffer is counted
        assert cpu >= 0
    finally:
        child.kill()
        child.wait()


def test_tree_usage_does_not_count_a_fork_before_its_exec_twice():
    """A child that still runs its parent's program (forked, not exec'd yet) shares its parent's
    pages: the tree's RSS is the parent's, not twice it. A child that exec'd is counted."""
    code = ("import os, sys, time; x = bytearray(200_000_000); pid = os.fork()\n"
            "if pid == 0:\n    time.sleep(0.6); os._exit(0)\n"
            "time.sleep(0.3); print('forked', flush=True); os.waitpid(pid, 0); time.sleep(5)")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert parent.stdout.readline().strip() == b"forked"
        rss, procs, _ = tree_usage(parent.pid)
        assert procs == 2
        assert 200_000_000 < rss < 300_000_000  # the 200 MB buffer once, not twice
    finally:
        parent.kill()
        parent.wait()


def test_step_times_from_event_log(tmp_path, monkeypatch):
    @dg.asset
    def first_asset():
        time.sleep(0.3)
        return 1

    @dg.asset(deps=[first_asset])
    def second_asset():
        return 2

    home = tmp_path / "home"
    home.mkdir()
    with dg.DagsterInstance.local_temp(str(home)) as instance:
        assert dg.materialize([first_asset, second_asset], instance=instance).success
    monkeypatch.setenv("DAGSTER_HOME", os.environ.get("DAGSTER_HOME", ""))
    result = step_times(home)
    assert result["status"] == "SUCCESS"
    steps = {s["step"]: s for s in result["steps"]}
    assert set(steps) == {"first_asset", "second_asset"}
    assert steps["first_asset"]["assets"] == ["first_asset"]
    assert steps["first_asset"]["seconds"] >= 0.3
    assert steps["first_asset"]["start"] < steps["second_asset"]["start"]
    assert result["run_wall_s"] >= steps["first_asset"]["seconds"]
    # CPU and peak RSS attributed from /proc samples by time
    t0 = steps["first_asset"]["start"]
    samples = [(t0 - 1, 10.0, 100), (t0 + 0.1, 10.5, 300), (steps["second_asset"]["end"] + 1, 11.0, 200)]
    attribute_samples(result["steps"], samples)
    assert steps["first_asset"]["cpu_s"] == pytest.approx(0.5)
    assert steps["first_asset"]["peak_rss_gb"] == pytest.approx(300 / 1e9)


def _run(label, n, wall, rss=1.0, rc=0, ratio=None):
    r = {"label": f"{label}_x{n}", "n": n, "wall_s": wall, "peak_rss_gb": rss, "returncode": rc}
    if ratio is not None:
        r["ratio_to_full"] = ratio
    return r


def test_repeated_runs_summary_gives_spread_and_counts_every_run():
    from bench.summary import summarize

    results = [
        _run("full", 20, 45.0, 2.1), _run("refresh", 20, 14.0, ratio=14.0 / 45.0),
        _run("full", 20, 42.0, 3.2), _run("refresh", 20, 14.7, ratio=14.7 / 42.0),  # over 1/3, over 3 GB
        _run("full", 20, 61.0, 2.0), _run("refresh", 20, 15.0, ratio=15.0 / 61.0),  # over 60 s
        _run("full", 20, 44.0), _run("refresh", 20, 99.0, rc=1, ratio=99.0 / 44.0),  # a failed refresh
        _run("full", 1, 17.0), _run("refresh", 1, 9.0, ratio=9.0 / 17.0),
    ]
    by_n = {s["n"]: s for s in summarize(results)}
    s = by_n[20]
    assert s["full_wall_s"]["values"] == [45.0, 42.0, 61.0, 44.0]
    assert s["full_wall_s"]["median"] == 44.5 and s["full_wall_s"]["max"] == 61.0
    assert s["full_runs_under_wall_target"] == 3
    assert s["full_runs_under_rss_target"] == 3
    # the failed refresh is named, and neither its time nor its ratio is counted
    assert s["failed_runs"] == ["refresh_x20"]
    assert s["refresh_wall_s"]["values"] == [14.0, 14.7, 15.0]
    assert s["refreshes_under_ratio_target"] == 2
    assert s["refresh_ratio"]["median"] == 14.0 / 45.0
    # the refresh's target is set for N=20 only: at N=1 its ratio is shown, not judged
    assert by_n[1]["full_runs_under_wall_target"] == 1 and by_n[1]["refresh_ratio"]["values"] == [9.0 / 17.0]
    assert "refresh_ratio_target" not in by_n[1] and "refreshes_under_ratio_target" not in by_n[1]
