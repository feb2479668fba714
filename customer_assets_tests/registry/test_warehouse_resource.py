"""A failing asset must not leave the warehouse file locked for the next one."""

import pytest

from customer_assets.resources import WarehouseResource


def test_connection_closed_when_the_body_raises(tmp_path):
    res = WarehouseResource(database=str(tmp_path / "wh.duckdb"))
    held = {}
    with pytest.raises(ValueError):
        with res.get_connection() as con:
            held["con"] = con
            raise ValueError("asset failed")
    with pytest.raises(Exception, match="(?i)closed"):
        held["con"].execute("SELECT 1")
    with res.get_connection() as con:  # the next asset can open the file
        assert con.execute("SELECT 42").fetchone() == (42,)


def test_empty_inventory_variable_means_no_inventory(monkeypatch):
    from customer_assets.resources import build_resources

    monkeypatch.setenv("CUSTOMER_ASSETS_INVENTORY", "")
    assert build_resources()["source"].inventory is None
    monkeypatch.delenv("CUSTOMER_ASSETS_INVENTORY")
    assert build_resources()["source"].inventory.endswith("online_retail_inventory_SYNTHETIC.csv")


def _threads(con) -> int:
    return int(con.execute("SELECT current_setting('threads')").fetchone()[0])


def test_steps_open_at_once_share_the_duckdb_threads(tmp_path, monkeypatch):
    """Two connections open at once (two steps in threads of one run) get half the cores each; a
    step alone gets them all back, also when the other closes while it runs."""
    from customer_assets import resources

    monkeypatch.setattr(resources._ThreadShares, "cores", staticmethod(lambda: 4))
    res = WarehouseResource(database=str(tmp_path / "wh.duckdb"))
    with res.get_connection() as first:
        assert _threads(first) == 4
        with res.get_connection() as second:
            assert _threads(first) == _threads(second) == 2  # one instance: one setting
        assert _threads(first) == 4
    with res.get_connection() as again:
        assert _threads(again) == 4


def test_a_threads_setting_in_the_resource_is_left_alone(tmp_path, monkeypatch):
    from customer_assets import resources

    monkeypatch.setattr(resources._ThreadShares, "cores", staticmethod(lambda: 4))
    res = WarehouseResource(database=str(tmp_path / "wh.duckdb"), connection_config={"threads": 3})
    with res.get_connection() as first, res.get_connection() as second:
        assert _threads(first) == _threads(second) == 3


def test_the_warehouse_connections_defer_vacuum(tmp_path):
    """Every connection the resource opens sets max_vacuum_tasks = 0 (common.db.defer_vacuum)."""
    res = WarehouseResource(database=str(tmp_path / "wh.duckdb"))
    with res.get_connection() as con:
        con.execute("RESET max_vacuum_tasks")
    with res.get_connection() as con:
        assert con.execute("SELECT current_setting('max_vacuum_tasks')").fetchone()[0] == 0


def _instance_open(path) -> bool:
    """Whether this process holds a DuckDB instance of `path`: a connection with another
    configuration is refused only then."""
    import duckdb

    try:
        duckdb.connect(str(path), read_only=True).close()
        return False
    except duckdb.ConnectionException:
        return True


def test_a_run_keeps_the_duckdb_instance_open_from_its_first_connection_to_its_end(tmp_path):
    from customer_assets.resources import _INSTANCE_KEEPER

    path = tmp_path / "wh.duckdb"
    res = WarehouseResource(database=str(path))
    with res.get_connection() as con:
        con.execute("CREATE TABLE t AS SELECT 1 AS x")
    with _INSTANCE_KEEPER.run(res):
        assert not _instance_open(path)  # nothing held before a step opens the file (pool not claimed yet)
        with res.get_connection() as con:
            con.execute("SELECT 1")
        assert _instance_open(path)  # the step closed its connection; the run still holds one
        with res.get_connection() as con:
            assert con.execute("SELECT x FROM t").fetchone() == (1,)
    assert not _instance_open(path)  # released at the run's end
    with res.get_connection() as con:  # outside a run nothing is held
        con.execute("SELECT 1")
    assert not _instance_open(path)


def test_steps_opening_and_closing_at_once_do_not_collide_on_the_file(tmp_path):
    """Three threads open, write and close connections with gaps between them, as steps do. Without
    the run's connection, a new connection met the instance shutting down and failed ("Unique file
    handle conflict"): 98 failures in 10 rounds of this, 0 with it."""
    import random
    import threading
    import time

    import duckdb

    from customer_assets.resources import _INSTANCE_KEEPER

    path = tmp_path / "wh.duckdb"
    duckdb.connect(str(path)).execute("CREATE TABLE t AS SELECT range AS x FROM range(1000)").close()
    res = WarehouseResource(database=str(path))
    errors: list = []

    def step():
        for _ in range(25):
            try:
                with res.get_connection() as con:
                    con.execute("INSERT INTO t SELECT range FROM range(1000000)")
                time.sleep(random.random() * 0.03)
            except Exception as e:  # noqa: BLE001 - collected and asserted below
                errors.append(f"{type(e).__name__}: {e}")

    with _INSTANCE_KEEPER.run(res):
        threads = [threading.Thread(target=step) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    with res.get_connection() as con:
        assert con.execute("SELECT count(*) FROM t").fetchone() == (1000 + 75 * 1_000_000,)
