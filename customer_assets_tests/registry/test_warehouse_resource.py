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
