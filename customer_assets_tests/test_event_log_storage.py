"""The project instance's event log storage (customer_assets/event_log_storage.py)."""

import shutil

import dagster as dg
import pytest
import sqlalchemy
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

from conftest import PROJECT_ROOT

from customer_assets import event_log_storage as els


@dg.asset
def tiny():
    return dg.MaterializeResult(metadata={"rows": 3})


@dg.asset(deps=[tiny])
def tinier():
    return dg.MaterializeResult(metadata={"rows": 1})


@pytest.fixture
def project_instance(tmp_path, monkeypatch):
    """A DagsterInstance from the project's own .dagster_home/dagster.yaml in a new DAGSTER_HOME."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / ".dagster_home" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        yield instance


@pytest.fixture
def engines_made(monkeypatch):
    """Counts the SQLAlchemy engines the storage builds."""
    made = []
    real = sqlalchemy.create_engine

    def counting(*args, **kwargs):
        made.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(els.sqlalchemy, "create_engine", counting)
    return made


def test_project_instance_uses_it_in_dagsters_default_place(project_instance, tmp_path):
    storage = project_instance.event_log_storage
    assert type(storage) is els.CachedSqliteEventLogStorage
    assert storage._base_dir.rstrip("/") == str(tmp_path / "dagster_home" / "history" / "runs")


def test_a_run_builds_one_engine_per_file_and_its_events_read_back(project_instance, engines_made):
    result = dg.materialize([tiny, tinier], instance=project_instance)
    assert result.success
    # the run's own shard and the index: not one engine per stored event (a run stores dozens)
    assert len(set(engines_made)) == len(engines_made) <= 2
    stored = project_instance.get_records_for_run(result.run_id, limit=1000).records
    assert len(stored) > 10
    latest = project_instance.get_latest_materialization_event(dg.AssetKey("tinier"))
    assert latest.asset_materialization.metadata["rows"].value == 1


def test_same_files_as_dagsters_storage_both_ways(tmp_path):
    """Runs stored by Dagster's own storage read back through this one, and the other way round."""
    base = str(tmp_path / "runs")
    with dg.instance_for_test(overrides={"event_log_storage": {
            "module": "dagster._core.storage.event_log", "class": "SqliteEventLogStorage",
            "config": {"base_dir": base}}}) as stock_instance:
        first = dg.materialize([tiny], instance=stock_instance)
    ours = els.CachedSqliteEventLogStorage(base)
    assert len(ours.get_records_for_run(first.run_id, limit=1000).records) > 5
    assert ours.get_latest_materialization_events([dg.AssetKey("tiny")])[dg.AssetKey("tiny")] is not None
    ours.dispose()
    with dg.instance_for_test(overrides={"event_log_storage": {
            "module": "customer_assets.event_log_storage", "class": "CachedSqliteEventLogStorage",
            "config": {"base_dir": base}}}) as our_instance:
        second = dg.materialize([tiny], instance=our_instance)
    stock = SqliteEventLogStorage(base)
    assert len(stock.get_records_for_run(second.run_id, limit=1000).records) > 5
    assert stock.get_asset_records([dg.AssetKey("tiny")])[0].asset_entry.last_materialization.run_id == second.run_id


def _dbapi_connection(storage, shard):
    with storage.run_connection(shard) as conn:
        conn.execute(sqlalchemy.text("SELECT 1"))
        return conn.connection.dbapi_connection


def test_one_connection_per_file_stays_open_and_sees_other_writers(tmp_path):
    """The held connection is reused, and a writer in another storage (another process's view of the
    same files) is seen at once, both ways."""
    base = str(tmp_path / "runs")
    ours, stock = els.CachedSqliteEventLogStorage(base), SqliteEventLogStorage(base)
    first = _dbapi_connection(ours, "run_a")
    assert _dbapi_connection(ours, "run_a") is first
    with dg.instance_for_test() as helper:
        run = dg.materialize([tiny], instance=helper)
        events = helper.get_records_for_run(run.run_id, limit=1000).records
    for record in events[:5]:
        ours.store_event(record.event_log_entry)
    assert len(stock.get_records_for_run(run.run_id, limit=1000).records) == 5
    for record in events[5:]:
        stock.store_event(record.event_log_entry)
    assert len(ours.get_records_for_run(run.run_id, limit=1000).records) == len(events)
    ours.dispose()
    # the last connection closed: SQLite has folded its write-ahead log back into the file
    assert not (tmp_path / "runs" / f"{run.run_id}.db-wal").exists()


def test_wipe_closes_the_connections_before_deleting_the_files(tmp_path):
    storage = els.CachedSqliteEventLogStorage(str(tmp_path / "runs"))
    first = _dbapi_connection(storage, "run_a")
    storage.wipe()
    assert not (tmp_path / "runs" / "run_a.db").exists()
    assert _dbapi_connection(storage, "run_a") is not first  # a new file, a new connection


def test_passed_migration_checks_are_not_asked_again(tmp_path, monkeypatch):
    storage = els.CachedSqliteEventLogStorage(str(tmp_path / "runs"))
    asked = []
    parent_col = SqliteEventLogStorage.has_asset_key_col

    def counting_col(self, name):
        asked.append(name)
        return parent_col(self, name)

    monkeypatch.setattr(SqliteEventLogStorage, "has_asset_key_col", counting_col)
    assert storage.has_asset_key_col("last_materialization_timestamp")
    assert storage.has_asset_key_col("last_materialization_timestamp")
    assert not storage.has_asset_key_col("no_such_column")
    assert not storage.has_asset_key_col("no_such_column")
    # a passed check once; a failed one every time (a migration may still add it)
    assert asked == ["last_materialization_timestamp", "no_such_column", "no_such_column"]


def test_engines_kept_are_bounded(tmp_path, engines_made):
    storage = els.CachedSqliteEventLogStorage(str(tmp_path / "runs"))
    for i in range(els.MAX_ENGINES + 5):
        with storage.run_connection(f"run_{i}") as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
    assert len(storage._engines) == els.MAX_ENGINES
    before = len(engines_made)
    with storage.run_connection(f"run_{els.MAX_ENGINES + 4}") as conn:  # the latest: still kept
        conn.execute(sqlalchemy.text("SELECT 1"))
    assert len(engines_made) == before
    storage.dispose()
    assert not storage._engines


def test_without_dagster_home_or_base_dir_it_says_what_is_missing(monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    with pytest.raises(ValueError, match="base_dir .* DAGSTER_HOME"):
        els.CachedSqliteEventLogStorage()
