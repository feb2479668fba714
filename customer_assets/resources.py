"""Resources: the warehouse, the sources, the model store, the settings.

Every setting comes from an environment variable through `dg.EnvVar` when it is set, and falls
back to the shipped sample otherwise. All of them show (and can be overridden per run) in the
launchpad under `resources:`.
"""

from __future__ import annotations

import os
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Optional

import dagster as dg
from dagster_duckdb import DuckDBResource
from pydantic import Field

from customer_assets import paths
from customer_assets.common.db import defer_vacuum
from customer_assets.common.threads import available_cores
from customer_assets.settings import AnalyticsSettings


def env_or_default(name: str, default):
    """`dg.EnvVar(name)` when the variable is set, else the default.

    `dg.EnvVar` alone fails to load when the variable is unset; the product must run with no
    configuration at all on the shipped sample.
    """
    return dg.EnvVar(name) if os.environ.get(name) else default


class WarehouseResource(DuckDBResource):
    """DuckDBResource whose connection is closed even when the asset raises.

    dagster-duckdb 0.29 closes it only on a normal exit, so after a failed asset the next
    connection to the same file in that process failed on the lock."""

    @contextmanager
    def yield_for_execution(self, context):
        # the data fingerprint is kept for the run (common/data_version): only ingestion changes it
        from customer_assets.common.data_version import kept_for_run

        with kept_for_run(), super().yield_for_execution(context) as resource:
            yield resource

    @contextmanager
    def get_connection(self):
        with ExitStack() as stack:
            conn = _open_retrying(stack, lambda: super(WarehouseResource, self).get_connection())
            shares = None if "threads" in (self.connection_config or {}) else _THREAD_SHARES
            try:
                if shares is not None:
                    shares.opened(conn)
                defer_vacuum(conn)  # appends write their own rows only; ingestion compacts now and then
                yield conn
            finally:
                try:
                    if shares is not None:
                        shares.closed(conn)
                finally:
                    conn.close()


class _ThreadShares:
    """DuckDB's worker threads, shared by the steps that have the warehouse open at once.

    Steps run several at a time in threads of one process (executor.py), and their connections share
    one DuckDB instance, whose `threads` setting is the instance's. With every core given to each
    of two steps, four DuckDB workers and the two steps' Python compete for two cores, and a
    parallel query pays for partitioned hash tables and their merge. One thread for every step
    costs the steps that run alone (ingestion of a full build). So `threads` is the cores divided
    by the connections open in this process, set again whenever one opens or closes: a step alone
    keeps every core. Only the number of threads changes, never a result. Measured at N=20 (2
    cores), all cores / one thread / this: weekly refresh 21.1 / 19.7 / 19.9 s (user CPU 26.5 /
    23.4 / 24.4 s), full build 50.0 / 56.8 / 48.1 s."""

    def __init__(self):
        import threading

        self._lock = threading.Lock()
        self._open = 0

    @staticmethod
    def cores() -> int:
        return available_cores()

    def _set(self, conn, n_open: int) -> None:
        conn.execute(f"SET threads = {max(1, self.cores() // max(1, n_open))}")

    def opened(self, conn) -> None:
        with self._lock:
            self._open += 1
            self._set(conn, self._open)

    def closed(self, conn) -> None:
        with self._lock:
            self._open -= 1
            if self._open:
                self._set(conn, self._open)  # the setting is the instance's: the others get the cores back


_THREAD_SHARES = _ThreadShares()

# DuckDB's refusal to open a file whose instance in this process is still shutting down
FILE_HANDLE_CONFLICT = "Unique file handle conflict"
CONFLICT_RETRY_SECONDS = 60.0


def _open_retrying(stack: ExitStack, open_connection, deadline_seconds: float = CONFLICT_RETRY_SECONDS):
    """The connection of `open_connection()` (a context manager, entered on `stack`), opened again
    while DuckDB answers that the file is still attached.

    Steps run in threads of one process and share its DuckDB instance. When a step closes the last
    connection, DuckDB shuts the instance down (a checkpoint); a step opening a connection to the
    same file meanwhile is refused: "Binder Error: Unique file handle conflict: Cannot attach ... -
    the database file ... is already attached by database ...". It failed regional_extracts in one
    of two N=1 runs at three steps at a time (and may be session 8's one unexplained refresh
    failure, at two). dagster-duckdb retries only IOException and RuntimeError; this retries
    that refusal, from 10 ms up to 0.5 s apart, until the shutdown is over or `deadline_seconds`
    have passed. (Holding a connection for the whole run instead avoids the race but keeps the
    instance's buffers between steps: peak memory at N=20 rose from ~2.1 to 2.8 GB.)"""
    import time

    import duckdb

    deadline = time.monotonic() + deadline_seconds
    delay = 0.01
    while True:
        try:
            return stack.enter_context(open_connection())
        except duckdb.Error as e:
            if FILE_HANDLE_CONFLICT not in str(e) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


class SourceConfig(dg.ConfigurableResource):
    """Where the transactions come from and how their columns map to the canonical schema."""

    source: str = Field(
        default=paths.DEFAULT_SOURCE,
        description="A file (CSV/.csv.gz/.xlsx/.parquet), a glob, or a folder. Env: CUSTOMER_ASSETS_SOURCE.",
    )
    mapping: str = Field(
        default=paths.DEFAULT_MAPPING,
        description="Path to the JSON column mapping. Env: CUSTOMER_ASSETS_MAPPING.",
    )
    landing_dir: str = Field(
        default=paths.DEFAULT_LANDING,
        description="Landing folder; every file in it is ingested too. Env: CUSTOMER_ASSETS_LANDING.",
    )
    inventory: Optional[str] = Field(
        default=paths.DEFAULT_INVENTORY,
        description="Optional inventory file (product_id, units_stocked[, date]). "
        "Env: CUSTOMER_ASSETS_INVENTORY. Empty: dead stock uses a sales-velocity proxy.",
    )
    contacts: Optional[str] = Field(
        default=None,
        description="Optional contact file (customer_id, phone) for SMS. Env: CUSTOMER_ASSETS_CONTACTS.",
    )


class ModelStore(dg.ConfigurableResource):
    """Where model artifacts and reports are written (the registry table lives in the warehouse)."""

    models_dir: str = Field(default=paths.DEFAULT_MODELS, description="Env: CUSTOMER_ASSETS_MODELS.")
    reports_dir: str = Field(default=paths.DEFAULT_REPORTS, description="Env: CUSTOMER_ASSETS_REPORTS.")

    def models_path(self) -> Path:
        p = Path(self.models_dir)
        p.mkdir(parents=True, exist_ok=True)
        return p

    def reports_path(self) -> Path:
        p = Path(self.reports_dir)
        p.mkdir(parents=True, exist_ok=True)
        return p


def build_resources(**overrides) -> dict:
    """The resource dict used by Definitions (and by tests, with overrides for tmp paths)."""
    warehouse = env_or_default("CUSTOMER_ASSETS_WAREHOUSE", paths.DEFAULT_WAREHOUSE)
    resources = {
        # DuckDB's default memory limit is 80% of RAM: at tens of millions of lines ingestion then
        # held ~9 GB. With a limit it spills sorts, joins and temp tables next to the database file.
        "duckdb": WarehouseResource(
            database=warehouse,
            connection_config={"memory_limit": os.environ.get("CUSTOMER_ASSETS_DUCKDB_MEMORY_LIMIT", "2GB")},
        ),
        "source": SourceConfig(
            source=env_or_default("CUSTOMER_ASSETS_SOURCE", paths.DEFAULT_SOURCE),
            mapping=env_or_default("CUSTOMER_ASSETS_MAPPING", paths.DEFAULT_MAPPING),
            landing_dir=env_or_default("CUSTOMER_ASSETS_LANDING", paths.DEFAULT_LANDING),
            # Set but empty means "no inventory file": dead stock then uses the sales-velocity proxy.
            inventory=(None if os.environ.get("CUSTOMER_ASSETS_INVENTORY") == ""
                       else env_or_default("CUSTOMER_ASSETS_INVENTORY", paths.DEFAULT_INVENTORY)),
            contacts=env_or_default("CUSTOMER_ASSETS_CONTACTS", None),
        ),
        "model_store": ModelStore(
            models_dir=env_or_default("CUSTOMER_ASSETS_MODELS", paths.DEFAULT_MODELS),
            reports_dir=env_or_default("CUSTOMER_ASSETS_REPORTS", paths.DEFAULT_REPORTS),
        ),
        "settings": AnalyticsSettings(as_of=env_or_default("CUSTOMER_ASSETS_AS_OF", None)),
        "notifier": _notifier(),
    }
    resources.update(overrides)
    return resources


def _notifier():
    """SMS notifier: dry run unless all three Twilio variables are set (values never shown)."""
    from customer_assets.actions.notifier import Notifier  # lazy: actions imports this module

    return Notifier(
        account_sid=env_or_default("TWILIO_ACCOUNT_SID", None),
        auth_token=env_or_default("TWILIO_AUTH_TOKEN", None),
        from_number=env_or_default("TWILIO_PHONE_NUMBER", None),
    )
