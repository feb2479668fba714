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



def test_steps_opening_and_closing_at_once_do_not_collide_on_the_file(tmp_path):
    """Three threads open, write and close connections with gaps between them, as steps do. A new
    connection meeting the instance as it shuts down was refused ("Unique file handle conflict"):
    98 failures in 10 rounds of this without the retry, none with it."""
    import random
    import threading
    import time

    import duckdb

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

    threads = [threading.Thread(target=step) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with res.get_connection() as con:
        assert con.execute("SELECT count(*) FROM t").fetchone() == (1000 + 75 * 1_000_000,)


def test_only_the_file_handle_conflict_is_retried_and_not_forever():
    from contextlib import ExitStack, contextmanager

    import duckdb

    from customer_assets.resources import FILE_HANDLE_CONFLICT, _open_retrying

    attempts = []

    def opener(failures, error=f"Binder Error: {FILE_HANDLE_CONFLICT}: Cannot attach \"w\""):
        @contextmanager
        def open_connection():
            attempts.append(1)
            if len(attempts) <= failures:
                raise duckdb.BinderException(error)
            yield "connection"
        return open_connection

    with ExitStack() as stack:
        assert _open_retrying(stack, opener(2)) == "connection" and len(attempts) == 3
    attempts.clear()
    with ExitStack() as stack, pytest.raises(duckdb.BinderException, match="Referenced column"):
        _open_retrying(stack, opener(5, "Binder Error: Referenced column x not found"))
    assert len(attempts) == 1  # another error: raised at once
    attempts.clear()
    with ExitStack() as stack, pytest.raises(duckdb.BinderException, match=FILE_HANDLE_CONFLICT):
        _open_retrying(stack, opener(10_000), deadline_seconds=0.2)
    assert 2 <= len(attempts) < 10
