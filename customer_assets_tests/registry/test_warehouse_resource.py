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


def test_the_database_stays_open_between_the_steps_of_a_run(tmp_path):
    """Two assets run one after the other: the first one's close does not checkpoint (its writes
    are still in the WAL when the second starts), the run's end does; both see the data."""
    import dagster as dg

    db = tmp_path / "wh.duckdb"
    wal = tmp_path / "wh.duckdb.wal"
    seen = {}

    @dg.asset
    def first(duckdb: WarehouseResource):
        with duckdb.get_connection() as con:
            con.execute("CREATE TABLE t AS SELECT range AS x FROM range(1000)")

    @dg.asset(deps=[first])
    def second(duckdb: WarehouseResource):
        seen["wal_between_steps"] = wal.exists()
        with duckdb.get_connection() as con:
            seen["rows"] = con.execute("SELECT count(*) FROM t").fetchone()[0]

    result = dg.materialize([first, second], resources={"duckdb": WarehouseResource(database=str(db))})
    assert result.success
    assert seen == {"wal_between_steps": True, "rows": 1000}
    assert not wal.exists()  # checkpointed when the run ended
