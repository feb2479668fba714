"""The XGBoost spend models are fit on a bounded customer sample; evaluation uses every customer."""

import base64

import dagster as dg
import duckdb
import pandas as pd
from ltv_synthetic import synthetic_rows

from customer_assets.common.sampling import sample_customers
from customer_assets.ingestion.schema import write_cleaned
from customer_assets.ltv import gbm
from customer_assets.ltv import training as tr
from customer_assets.ltv.assets import ltv_model


def test_xgboost_fits_on_max_fit_customers_and_evaluates_on_all(con, monkeypatch):
    write_cleaned(con, synthetic_rows(n_customers=300, seed=5).to_dict("records"))
    as_of = con.execute("SELECT max(order_date) FROM cleaned_transactions").fetchone()[0]
    fitted = []
    real_fit = gbm.fit_xgb
    monkeypatch.setattr(gbm, "fit_xgb", lambda frame, features: fitted.append(frame) or real_fit(frame, features))

    full = tr.train_ltv(con, as_of, 90, 4)
    assert full.fit_rows == full.train_rows and full.fit_customers > 120
    fitted.clear()
    res = tr.train_ltv(con, as_of, 90, 4, max_fit_customers=60)
    assert res.train_rows == full.train_rows
    assert res.fit_customers == 60 and res.fit_rows < res.train_rows
    assert [f["customer_id"].nunique() for f in fitted] == [60, 60]  # evaluation model and production model
    train = gbm.training_frame(con, res.train_snapshots, 90)
    pd.testing.assert_frame_equal(fitted[0], sample_customers(train, 60))  # common.sampling's customers
    # every customer of a sampled model is in it at every one of its snapshots
    for f in fitted:
        per_snapshot = f.groupby("snapshot_date")["customer_id"].apply(set).tolist()
        assert all(a <= b for a, b in zip(per_snapshot, per_snapshot[1:]))  # customers only join, never leave
    n_known = con.execute("SELECT count(DISTINCT customer_id) FROM cleaned_transactions WHERE order_date <= ?",
                          [res.cutoff]).fetchone()[0]
    assert res.metrics["xgboost"]["revenue"]["n"] == n_known == full.metrics["xgboost"]["revenue"]["n"]


def test_ltv_model_asset_uses_the_setting(tmp_path, resources_for):
    resources = resources_for(tmp_path, max_fit_customers=50)
    c = duckdb.connect(resources["duckdb"].database)
    write_cleaned(c, synthetic_rows(n_customers=200, seed=9).to_dict("records"))
    c.close()
    result = dg.materialize([ltv_model], resources=resources, instance=dg.DagsterInstance.ephemeral())
    assert result.success
    meta = result.asset_materializations_for_node("ltv_model")[0].metadata
    assert meta["fit_customers"].value == 50
    assert meta["fit_rows"].value < meta["train_rows"].value
    png = (tmp_path / "reports" / "ltv_holdout_deciles.png").read_bytes()  # the UI chart is the saved PNG
    assert meta["decile_chart"].value == f"![decile chart](data:image/png;base64,{base64.b64encode(png).decode()})"


def test_train_ltv_builds_each_distinct_snapshot_once_with_the_same_result(con, monkeypatch):
    write_cleaned(con, synthetic_rows(n_customers=200, seed=7).to_dict("records"))
    as_of = con.execute("SELECT max(order_date) FROM cleaned_transactions").fetchone()[0]
    built = []
    real = gbm.labelled_snapshot
    monkeypatch.setattr(gbm, "labelled_snapshot", lambda c, s, h: built.append(s) or real(c, s, h))
    res = tr.train_ltv(con, as_of, 90, 4)
    wanted = res.train_snapshots + [res.cutoff] + res.production_snapshots
    assert sorted(built) == sorted(set(wanted)) and len(built) < len(wanted)  # the lists overlap
    # without the memo (every list built on its own): the same holdout, comparison and model
    monkeypatch.setattr(gbm, "labelled_snapshot_memo", lambda c, s, h, memo: real(c, s, h))
    plain = tr.train_ltv(con, as_of, 90, 4)
    pd.testing.assert_frame_equal(res.holdout, plain.holdout)
    pd.testing.assert_frame_equal(res.comparison, plain.comparison)
    assert res.model.get_booster().save_raw("json") == plain.model.get_booster().save_raw("json")
