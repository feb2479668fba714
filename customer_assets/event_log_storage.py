"""The project instance's event log: Dagster's SQLite event log storage, without reconnecting from scratch.

Dagster's `SqliteEventLogStorage` builds a new SQLAlchemy engine and a new SQLite connection for
every statement it runs (`_connect`: `create_engine`, connect, commit, close, `dispose`), and asks
SQLite again, on a new engine each time, whether schema migrations are done (`has_secondary_index`,
`has_asset_key_col`) before most asset reads. Closing the last connection to a WAL-mode file makes
SQLite checkpoint the WAL into the database and delete it, so every stored event also rewrote and
synced the main file and its directory. A run writes about 200 events (8 per step, plus the planned
materializations before the first step) and reads the asset records of every step's inputs: a
weekly refresh spent about 2 s of CPU there, in the step threads, beside the steps' own work
(py-spy; per stored event 4.5 ms of CPU, of which 1.5 ms built the engine and 1.3 ms the connection
and its close).

`CachedSqliteEventLogStorage` keeps, for the last `MAX_ENGINES` SQLite files it used (a run uses
two: its own shard and the index), one engine holding one open connection. Every use still goes
through the parent's lock and its own transaction (begin, commit), so only one thread uses a
connection at a time, and other processes (the webserver, the daemon) read and write the same
files as before: WAL lets them, and commits are synced as before. It also remembers a migration
check once it has passed (a migration, once done, is not undone; a check that fails is asked
again). The files, tables and transactions are Dagster's: the same `history/runs/` directory,
readable by the stock storage and vice versa. `wipe` (which deletes run files) and `dispose` close
the connections first.

Used through `.dagster_home/dagster.yaml` (`event_log_storage`); `base_dir` defaults to Dagster's
own location for the instance, `$DAGSTER_HOME/history/runs/`.
"""

import os
from collections import OrderedDict
from contextlib import contextmanager
from typing import Iterator, Optional

import sqlalchemy
from dagster._config import Field, StringSource
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    SQLITE_BUSY_TIMEOUT_SECONDS,
    SqliteEventLogStorage,
)
from dagster._serdes import ConfigurableClassData
from sqlalchemy.pool import QueuePool

MAX_ENGINES = 32  # a run uses two files (its own shard and the index)


def default_base_dir() -> str:
    """Where Dagster's default instance keeps its event log (`InstanceRef.config_defaults`)."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        raise ValueError("CachedSqliteEventLogStorage needs base_dir in its config or DAGSTER_HOME set")
    return os.path.join(os.path.abspath(os.path.expanduser(home)), "history", "runs", "")


class CachedSqliteEventLogStorage(SqliteEventLogStorage):
    """SqliteEventLogStorage keeping one engine and one open connection per file, and passed migration checks."""

    def __init__(self, base_dir: Optional[str] = None, inst_data: Optional[ConfigurableClassData] = None):
        # set before the parent's __init__, which may already connect (a new instance's index shard)
        self._engines: OrderedDict = OrderedDict()
        self._passed_checks: set = set()
        super().__init__(base_dir or default_base_dir(), inst_data=inst_data)

    @classmethod
    def config_type(cls):
        return {"base_dir": Field(StringSource, is_required=False)}

    @classmethod
    def from_config_value(cls, inst_data: Optional[ConfigurableClassData], config_value) -> "CachedSqliteEventLogStorage":
        return cls(inst_data=inst_data, **dict(config_value or {}))

    def _engine(self, shard: str) -> sqlalchemy.engine.Engine:
        """The shard's engine (called under `_db_lock`)."""
        engine = self._engines.get(shard)
        if engine is not None:
            self._engines.move_to_end(shard)
            return engine
        # the parent's timeout; one pooled connection, used under `_db_lock` by one thread at a time
        # (hence check_same_thread off); overflow connections, if ever needed, close on return
        engine = sqlalchemy.create_engine(
            self.conn_string_for_shard(shard),
            poolclass=QueuePool,
            pool_size=1,
            max_overflow=4,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
        )
        self._engines[shard] = engine
        while len(self._engines) > MAX_ENGINES:
            self._engines.popitem(last=False)[1].dispose()
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[sqlalchemy.Connection]:
        # as the parent's, apart from where the engine comes from (same lock, same transaction)
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn:
                with conn.begin():
                    yield conn

    def _passed_once(self, key: tuple, check, *args) -> bool:
        """`check(*args)`, remembered once it passed (a migration, once done, is not undone)."""
        if key in self._passed_checks:
            return True
        passed = check(*args)
        if passed:
            self._passed_checks.add(key)
        return passed

    def has_secondary_index(self, name: str) -> bool:
        return self._passed_once(("index", name), super().has_secondary_index, name)

    def has_asset_key_col(self, column_name: str) -> bool:
        return self._passed_once(("column", column_name), super().has_asset_key_col, column_name)

    def _close_engines(self) -> None:
        with self._db_lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()

    def wipe(self) -> None:
        self._close_engines()  # no connection left open on a run file about to be deleted
        super().wipe()
        self._passed_checks.clear()

    def dispose(self) -> None:
        super().dispose()
        self._close_engines()
