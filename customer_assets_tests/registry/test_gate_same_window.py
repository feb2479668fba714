"""Retraining LTV models compares them with the champion on the same window, never blindly."""

import datetime as dt
import shutil

import duckdb
import pytest

from customer_assets.ltv import training as tr


@pytest.mark.slow
def test_second_training_is_gated_against_the_champion_on_the_same_window(retail_db, tmp_path):
    db = tmp_path / "wh.duckdb"
    shutil.copy(retail_db, db)
    con = duckdb.connect(str(db))
    as_of = dt.date(2011, 12, 9)
    models = str(tmp_path / "models")
    first = tr.train_ltv(con, as_of, 90, 2, models)
    assert first.registration.status == "champion"
    clv_first = tr.train_clv(con, as_of, 90, models)
    assert {r.status for r in clv_first.registrations} == {"champion"}

    second = tr.train_ltv(con, as_of, 90, 2, models, reason="drift: PSI spend_30d=0.7 > 0.2")
    assert "on the same window" in second.registration.message
    clv_second = tr.train_clv(con, as_of, 90, models, reason="drift: test")
    for reg in clv_second.registrations:
        assert "on the same window" in reg.message, reg.message
    reasons = dict(con.execute(
        "SELECT name, reason FROM model_registry WHERE version = 2").fetchall())
    assert reasons["ltv_xgb"].startswith("drift: PSI") and reasons["clv_bgnbd"] == "drift: test"
