"""Readers hold read-only connections: loading a model must work there."""

import duckdb

from customer_assets.registry import load_model, register_model


def test_load_model_on_a_read_only_connection(tmp_path):
    db = tmp_path / "wh.duckdb"
    con = duckdb.connect(str(db))
    register_model(con, tmp_path / "models", "m", {"w": [1, 2]}, metrics={"auc": 0.8}, features=["x"],
                   selection_metric="auc")
    con.close()
    ro = duckdb.connect(str(db), read_only=True)
    loaded = load_model(ro, "m")
    assert loaded.obj == {"w": [1, 2]} and loaded.version == 1
