"""Shared fixtures.

- `con`: a fresh DuckDB file in tmp_path.
- `resources_for(tmp_path, **settings)`: the Dagster resource dict pointed at a tmp warehouse.
- `retail_db` (session): the real Online Retail data ingested once by the real ingestion code into
  a session-wide warehouse; tests must treat it as read-only (open with `duckdb.connect(path, read_only=True)`).
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pytest

os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RETAIL_PARQUET = PROJECT_ROOT / "data" / "online_retail.parquet"
RETAIL_MAPPING = PROJECT_ROOT / "data" / "online_retail_mapping.json"


@pytest.fixture
def con(tmp_path):
    c = duckdb.connect(str(tmp_path / "test.duckdb"))
    yield c
    c.close()


def make_resources(tmp_path: Path, source=None, mapping=None, landing=None, inventory=None, **settings):
    from customer_assets.actions.notifier import Notifier
    from customer_assets.resources import ModelStore, SourceConfig, WarehouseResource
    from customer_assets.settings import AnalyticsSettings

    landing_dir = Path(landing) if landing else tmp_path / "incoming"
    landing_dir.mkdir(parents=True, exist_ok=True)
    return {
        "duckdb": WarehouseResource(database=str(tmp_path / "warehouse.duckdb")),
        "source": SourceConfig(
            source=str(source or RETAIL_PARQUET),
            mapping=str(mapping or RETAIL_MAPPING),
            landing_dir=str(landing_dir),
            inventory=None if inventory is None else str(inventory),
        ),
        "model_store": ModelStore(models_dir=str(tmp_path / "models"), reports_dir=str(tmp_path / "reports")),
        "settings": AnalyticsSettings(**settings),
        "notifier": Notifier(),  # dry run: no TWILIO_* credentials
    }


@pytest.fixture
def resources_for():
    return make_resources


@pytest.fixture(scope="session")
def retail_db(tmp_path_factory) -> Path:
    """Online Retail ingested by the real ingestion logic (no Dagster), read-only for tests."""
    from customer_assets.ingestion.pipeline import ingest

    folder = tmp_path_factory.mktemp("retail")
    path = folder / "warehouse.duckdb"
    c = duckdb.connect(str(path))
    ingest(c, source=str(RETAIL_PARQUET), mapping_path=str(RETAIL_MAPPING), landing_dir=None)
    c.close()
    return path
