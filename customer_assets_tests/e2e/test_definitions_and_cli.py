"""The code location loads, the real CLI materializes everything, and `dagster dev` serves it."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from conftest import PROJECT_ROOT, RETAIL_MAPPING

BIN = Path(sys.executable).parent


def test_definitions_load():
    from customer_assets.definitions import defs

    dg.Definitions.validate_loadable(defs)
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    expected = {"ingested_files", "cleaned_transactions", "quarantined_transactions",
                "fact_sales", "dim_customer", "dim_product", "dim_date", "sales_trends", "top_products",
                "revenue_by_region"}
    assert expected <= keys


def _env(tmp_path: Path, source: Path) -> dict:
    env = dict(os.environ)
    env.update({
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "CUSTOMER_ASSETS_SOURCE": str(source),
        "CUSTOMER_ASSETS_MAPPING": str(RETAIL_MAPPING),
        "CUSTOMER_ASSETS_WAREHOUSE": str(tmp_path / "wh.duckdb"),
        "CUSTOMER_ASSETS_LANDING": str(tmp_path / "incoming"),
        "CUSTOMER_ASSETS_MODELS": str(tmp_path / "models"),
        "CUSTOMER_ASSETS_REPORTS": str(tmp_path / "reports"),
        "DAGSTER_DISABLE_TELEMETRY": "1",
    })
    (tmp_path / "dagster_home").mkdir(exist_ok=True)
    (tmp_path / "incoming").mkdir(exist_ok=True)
    # the project's instance, as `make run` uses it (its event log storage included)
    shutil.copy(PROJECT_ROOT / ".dagster_home" / "dagster.yaml", tmp_path / "dagster_home" / "dagster.yaml")
    return env


@pytest.mark.slow
def test_cli_materializes_every_asset(tmp_path):
    """`dagster asset materialize -m customer_assets --select '*'` on the shipped Online Retail data."""
    env = _env(tmp_path, PROJECT_ROOT / "data" / "online_retail.parquet")
    proc = subprocess.run(
        [str(BIN / "dagster"), "asset", "materialize", "-m", "customer_assets", "--select", "*"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    # every figure was rendered by the figure helper (common/side_process): each one pickled
    assert "does not pickle" not in proc.stderr and "helper:" not in proc.stderr
    from customer_assets.definitions import defs

    asset_tables = {k.path[-1] for k in defs.resolve_asset_graph().get_all_asset_keys()}
    con = duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True)
    tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    missing = asset_tables - tables
    assert not missing, f"assets without a warehouse table: {missing}"
    assert con.execute(
        "SELECT (SELECT count(*) FROM cleaned_transactions) + (SELECT count(*) FROM quarantined_transactions)"
    ).fetchone()[0] == 541_909
    summary = subprocess.run([sys.executable, "-m", "customer_assets.summary"], env=env, cwd=PROJECT_ROOT,
                             capture_output=True, text=True)
    assert summary.returncode == 0 and "cleaned_transactions" in summary.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _location_status(port: int):
    query = '{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus ' \
            'locationOrLoadError { __typename } } } } }'
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        entries = json.load(r)["data"]["workspaceOrError"]["locationEntries"]
    return {e["name"]: (e["loadStatus"], (e["locationOrLoadError"] or {}).get("__typename")) for e in entries}


def start_dagster_dev(env: dict, port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "dagster"), "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"), "-p", str(port), "-h", "127.0.0.1"],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        # A shell's background job starts with SIGINT ignored and children inherit that: restore
        # the default so the SIGINT that stops dagster dev is not lost.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_loaded(proc, port: int, timeout: float = 180) -> dict:
    deadline = time.time() + timeout
    status = None
    while time.time() < deadline:
        assert proc.poll() is None, "dagster dev exited early"
        try:
            status = _location_status(port)
            if status.get("customer_assets", (None,))[0] == "LOADED":
                return status
        except OSError:
            pass
        time.sleep(1)
    raise AssertionError(f"code location not LOADED after {timeout}s: {status}")


def stop(proc: subprocess.Popen) -> int:
    os.killpg(proc.pid, signal.SIGINT)
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise


@pytest.mark.slow
def test_dagster_dev_serves_the_code_location(tmp_path):
    port = _free_port()
    proc = start_dagster_dev(_env(tmp_path, PROJECT_ROOT / "data" / "online_retail.parquet"), port)
    try:
        status = wait_loaded(proc, port)
        assert status["customer_assets"] == ("LOADED", "RepositoryLocation")
    finally:
        code = stop(proc)
    assert proc.poll() is not None and code is not None


def test_scorers_run_after_customer_features_and_reuse_its_snapshot():
    """churn_scores and customer_ltv score the features as of as_of that customer_features writes: they
    depend on it, so in a run they read the snapshot from the run's feature cache instead of computing
    it again at the same time (customers/features.py)."""
    from customer_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    for scorer in ("churn_scores", "customer_ltv"):
        assert dg.AssetKey("customer_features") in graph.get(dg.AssetKey(scorer)).parent_keys, scorer
