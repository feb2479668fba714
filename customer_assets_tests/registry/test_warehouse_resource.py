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
