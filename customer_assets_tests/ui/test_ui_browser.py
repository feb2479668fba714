"""The UI as a user sees it: `dagster dev` after a real run, driven by headless Debian chromium.

1. `dagster asset materialize --select '*'` (the real CLI) fills a tmp warehouse and a tmp
   DAGSTER_HOME, on a sample of Online Retail customers (every transaction of one customer in
   four, so the whole pipeline runs in a fraction of the full data's time);
2. `dagster dev` serves that instance on a free port;
3. Playwright drives /usr/bin/chromium (the system browser, never a downloaded one) to the global
   asset graph (every stage's group), the "reporting" group's graph, customer_report's asset page
   and its markdown summary, and the HTML report (file://), asserting that the key content is
   visible; screenshots go to test-artifacts/ui/ (gitignored).
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import pytest

from conftest import PROJECT_ROOT, RETAIL_MAPPING, RETAIL_PARQUET

BIN = Path(sys.executable).parent
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "ui"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]

pytestmark = pytest.mark.slow


def _sample_source(tmp_path: Path) -> Path:
    """Every row of one customer in four (by a stable hash), plus rows without a customer."""
    out = tmp_path / "online_retail_sample.parquet"
    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT * FROM read_parquet('{RETAIL_PARQUET}') "
        f"WHERE CustomerID IS NULL OR hash(CAST(CustomerID AS VARCHAR)) % 4 = 0) TO '{out}' (FORMAT parquet)"
    )
    con.close()
    return out


def _env(tmp_path: Path, source: Path) -> dict:
    env = dict(os.environ)
    for d in ("dagster_home", "incoming"):
        (tmp_path / d).mkdir(exist_ok=True)
    # the project's instance, as `make dev` uses it (its event log storage included)
    shutil.copy(PROJECT_ROOT / ".dagster_home" / "dagster.yaml", tmp_path / "dagster_home" / "dagster.yaml")
    env.update({
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "DAGSTER_DISABLE_TELEMETRY": "1",
        "CUSTOMER_ASSETS_SOURCE": str(source),
        "CUSTOMER_ASSETS_MAPPING": str(RETAIL_MAPPING),
        "CUSTOMER_ASSETS_WAREHOUSE": str(tmp_path / "wh.duckdb"),
        "CUSTOMER_ASSETS_LANDING": str(tmp_path / "incoming"),
        "CUSTOMER_ASSETS_MODELS": str(tmp_path / "models"),
        "CUSTOMER_ASSETS_REPORTS": str(tmp_path / "reports"),
    })
    for secret in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_PHONE_NUMBER"):
        env.pop(secret, None)  # the UI test never sends an SMS
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(proc: subprocess.Popen, url: str, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, "dagster dev exited early"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise AssertionError(f"{url} did not answer within {timeout}s")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A warehouse and instance filled by a real CLI run, then `dagster dev` serving them."""
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed (apt-get install chromium); .ci/run installs it")
    tmp_path = tmp_path_factory.mktemp("ui")
    env = _env(tmp_path, _sample_source(tmp_path))
    run = subprocess.run(
        [str(BIN / "dagster"), "asset", "materialize", "-m", "customer_assets", "--select", "*"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=1200,
    )
    (tmp_path / "materialize.log").write_text(run.stdout + run.stderr)
    assert run.returncode == 0, f"the CLI run failed (log: {tmp_path / 'materialize.log'}): {run.stderr[-3000:]}"
    report = tmp_path / "reports" / "customer_report.html"
    assert report.exists()
    port = _free_port()
    proc = subprocess.Popen(
        [str(BIN / "dagster"), "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"), "-p", str(port),
         "-h", "127.0.0.1"],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        # A shell's background job inherits SIGINT as ignored: restore it, or the clean stop below hangs.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        _wait_http(proc, f"http://127.0.0.1:{port}/server_info")
        yield {"url": f"http://127.0.0.1:{port}", "report": report}
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # dagster dev shuts its webserver and daemon down cleanly
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail("dagster dev did not stop within 60 s of SIGINT")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(60_000)
    yield pg
    context.close()


def _dismiss_welcome(page) -> None:
    """dagster dev greets a new browser profile with a "Join the Dagster community" dialog."""
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(state="visible", timeout=5_000)
    except Exception:  # playwright's TimeoutError: no dialog this time
        return
    skip.click()
    skip.wait_for(state="hidden")


def _shot(page, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path


def test_global_asset_graph_shows_every_stage(served, page):
    page.goto(f"{served['url']}/asset-groups")
    _dismiss_welcome(page)
    for group in ("ingestion", "warehouse", "customers", "churn", "ltv", "bundles", "monitoring", "actions",
                  "reporting"):
        page.get_by_text(group, exact=True).first.wait_for(state="visible")
    time.sleep(3)  # let the graph finish its layout before the screenshot
    assert _shot(page, "asset_graph_global").stat().st_size > 10_000


def test_asset_graph_shows_the_reporting_group(served, page):
    page.goto(f"{served['url']}/locations/customer_assets/asset-groups/reporting")
    _dismiss_welcome(page)
    for name in ("customer_report", "regional_extracts"):
        page.get_by_text(name, exact=True).first.wait_for(state="visible")
    time.sleep(2)  # let the graph finish its layout animation before the screenshot
    assert _shot(page, "asset_graph_reporting").stat().st_size > 10_000


def test_asset_page_shows_the_latest_materialization(served, page):
    page.goto(f"{served['url']}/assets/customer_report")
    _dismiss_welcome(page)
    page.get_by_text("Self-contained HTML report", exact=False).first.wait_for(state="visible")
    page.get_by_text("sections_available", exact=True).first.wait_for(state="visible")
    page.get_by_text("row_count", exact=True).first.wait_for(state="visible")
    time.sleep(1)
    assert _shot(page, "asset_customer_report").stat().st_size > 10_000
    # The markdown summary (KPIs and recommendations) opens from its metadata row.
    page.get_by_role("row").filter(has_text="summary").get_by_text("[Show Markdown]").click()
    page.get_by_text("Recommendations", exact=True).first.wait_for(state="visible")
    page.get_by_text("Revenue", exact=False).first.wait_for(state="visible")
    time.sleep(1)
    _shot(page, "asset_customer_report_summary")


def test_html_report_opens_offline_with_its_sections(served, page):
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(served["report"].as_uri())
    for heading in ("Strategic recommendations", "Headline KPIs", "Customer segments (RFM)",
                    "Cohort retention", "Churn risk", "Retention actions"):
        page.get_by_role("heading", name=heading).wait_for(state="visible")
    page.get_by_text("Revenue", exact=True).first.wait_for(state="visible")
    # Every chart decoded (inline base64 PNGs) and nothing was fetched from anywhere.
    widths = page.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth)")
    assert widths and all(w > 0 for w in widths)
    assert all(u.startswith(("file://", "data:")) for u in requests), requests
    _shot(page, "report_top")
    page.get_by_role("heading", name="Cohort retention").evaluate("e => e.scrollIntoView()")
    _shot(page, "report_cohorts")
    page.screenshot(path=str(ARTIFACTS / "report_full.png"), full_page=True)
    shutil.copy(served["report"], ARTIFACTS / "customer_report.html")
