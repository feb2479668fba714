"""drift report logic on hand-made transactions with real registry entries and real sklearn models."""

import datetime as dt

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from customer_assets.customers.features import compute_customer_features
from customer_assets.ingestion.schema import write_cleaned
from customer_assets.monitoring.drift import build_drift_report
from customer_assets.registry import reference_distribution, register_model

AS_OF = dt.date(2011, 6, 30)
SNAP = AS_OF - dt.timedelta(days=90)  # 2011-04-01
FEATURES = ["recency_days", "frequency", "monetary", "tenure_days"]


def _rows():
    rows = []
    for i in range(80):
        loyal = i < 40
        last = AS_OF if loyal else dt.date(2011, 3, 1)
        d, k = dt.date(2011, 1, 1) + dt.timedelta(days=i % 7), 0
        while d <= last:
            rows.append({"customer_id": f"c{i}", "order_id": f"o{i}_{k}", "order_datetime": str(d),
                         "product_id": "p1", "quantity": 2, "unit_price": 5.0 + i % 5})
            d += dt.timedelta(days=20)
            k += 1
    return rows


def labels(con, snapshot, horizon_days):
    return con.execute(
        """SELECT customer_id, CAST(count(*) FILTER (WHERE order_date > ? AND order_date <= ? + ?) = 0 AS INT) AS churned
           FROM cleaned_transactions GROUP BY customer_id HAVING min(order_date) <= ?""",
        [snapshot, snapshot, horizon_days, snapshot],
    ).df()


@pytest.fixture
def db(con, tmp_path):
    write_cleaned(con, _rows())
    return con


def _register_churn(con, tmp_path, flip=False, training_auc=0.9):
    X = compute_customer_features(con, SNAP)
    y = labels(con, SNAP, 90).set_index("customer_id").loc[X["customer_id"], "churned"].to_numpy()
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(X[["recency_days"]], 1 - y if flip else y)
    ref = reference_distribution(compute_customer_features(con, AS_OF), FEATURES)
    return register_model(con, tmp_path / "models", "churn_model", {"pipeline": pipe, "features": ["recency_days"]},
                          metrics={"roc_auc": training_auc}, features=FEATURES, selection_metric="roc_auc",
                          reference_distribution=ref)


def report(con, **kw):
    return build_drift_report(con, AS_OF, 90, 0.2, 0.10, exempt={"tenure_days"}, models=("churn_model",),
                              feature_frames={"churn_model": compute_customer_features}, labels=labels, **kw)


def test_no_champion_is_skipped_with_reasons(db):
    r = report(db)
    assert not r.retrain_recommended
    assert any("no champion" in n for n in r.notes)
    assert r.auc["status"] == "skipped" and "no model named 'churn_model'" in r.auc["note"]
    assert list(r.table["check_name"]) == ["auc_drop"]


def test_stable_data_and_good_model_do_not_breach(db, tmp_path):
    _register_churn(db, tmp_path)
    r = report(db)
    assert r.psi.set_index("feature")["psi"].abs().max() < 1e-12  # the reference is this very population
    assert r.auc["status"] == "ok" and r.auc["current_auc"] == pytest.approx(1.0)
    assert r.auc["relative_drop"] == pytest.approx((0.9 - 1.0) / 0.9)
    assert r.auc["n"] == 80 and r.auc["churn_rate"] == pytest.approx(0.5)
    assert not r.retrain_recommended and r.reason(0.2, 0.1) == ""
    assert len(r.table) == len(FEATURES) + 1 and not r.table["breached"].any()


def test_tripled_prices_breach_psi_and_decayed_model_breaches_auc(db, tmp_path):
    _register_churn(db, tmp_path, flip=True)
    fp_before = build_drift_report(db, AS_OF, 90, 0.2, 0.1, models=()).fingerprint
    db.execute("UPDATE cleaned_transactions SET unit_price = unit_price * 3, line_total = line_total * 3")
    r = report(db)
    assert r.fingerprint != fp_before
    psi = r.psi.set_index("feature")
    assert psi.loc["monetary", "psi"] > 1 and psi.loc["monetary", "breached"]
    assert psi.loc["frequency", "psi"] < 1e-12 and not psi.loc["frequency", "breached"]
    assert r.auc["current_auc"] == pytest.approx(0.0) and r.auc_breached
    reason = r.reason(0.2, 0.1)
    assert reason.startswith("drift: PSI monetary=") and "(churn_model v1)" in reason
    assert "AUC drop 100.0% (0.900 -> 0.000) > 10%" in reason
    auc_row = r.table[r.table["check_name"] == "auc_drop"].iloc[0]
    assert auc_row["breached"] and auc_row["value"] == pytest.approx(1.0)


def test_exempt_feature_is_reported_but_does_not_breach(db, tmp_path):
    _register_churn(db, tmp_path)
    # 200 new one-order customers on the last day: tenure (exempt) and recency both shift
    new = [{"customer_id": f"n{i}", "order_id": f"n{i}", "order_datetime": str(AS_OF), "product_id": "p1",
            "quantity": 2, "unit_price": 6.0} for i in range(200)]
    old = db.execute("SELECT * FROM cleaned_transactions").df()
    from customer_assets.ingestion.schema import cleaned_frame
    write_cleaned(db, pd.concat([old, cleaned_frame(new)], ignore_index=True))
    r = report(db)
    psi = r.psi.set_index("feature")
    assert psi.loc["tenure_days", "psi"] > 0.2 and psi.loc["tenure_days", "exempt"]
    assert not psi.loc["tenure_days", "breached"]
    assert "tenure_days" not in r.reason(0.2, 0.1)


def _retail_csv(path, rows):
    lines = ["InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"]
    lines += [f"{o},P1,THING,{q},{d} 10:00:00,{p},{c},United Kingdom" for o, q, d, p, c in rows]
    path.write_text("\n".join(lines) + "\n")


def test_deployment_baseline_is_the_data_the_champion_was_trained_on(tmp_path, con, monkeypatch):
    """PSI compares today's features with the population at the data end the champion was trained
    on (files ingested before it was registered), in the registry's reference bins."""
    from pathlib import Path

    from customer_assets.ingestion.pipeline import ingest
    from customer_assets.monitoring.drift import baseline_as_of, model_psi

    mapping = str(Path(__file__).resolve().parents[2] / "data" / "online_retail_mapping.json")
    landing = tmp_path / "landing"
    landing.mkdir()
    base = [(f"5{i}{k}", 2, f"2011-0{1 + k}-{10 + i % 9}", 5.0 + i % 4, 1000 + i) for i in range(30) for k in range(3)]
    _retail_csv(tmp_path / "base.csv", base)
    ingest(con, str(tmp_path / "base.csv"), mapping, str(landing))
    base_end = dt.date(2011, 3, 18)
    assert con.execute("SELECT max(order_date) FROM cleaned_transactions").fetchone()[0] == base_end
    # training reference from an earlier snapshot (like stacked training snapshots): 1 order each
    ref = reference_distribution(compute_customer_features(con, dt.date(2011, 1, 31)), FEATURES)
    register_model(con, tmp_path / "models", "churn_model", {"features": FEATURES}, metrics={"roc_auc": 0.8},
                   features=FEATURES, selection_metric="roc_auc", reference_distribution=ref)

    t, note = model_psi(con, "churn_model", base_end, {"tenure_days"}, compute_customer_features)
    t = t.set_index("feature")
    assert note is None and t.loc["frequency", "baseline"] == f"population at {base_end}"
    assert (t["psi"] == 0).all()  # nothing new since training: no drift, whatever the stacked reference says
    assert t.loc["frequency", "psi_vs_training"] > 1  # 3 orders now vs 1 at the early snapshot

    later = [(f"6{i}", 2, "2011-04-20", (5.0 + i % 4) * 3, 1000 + i) for i in range(30)]
    _retail_csv(landing / "later.csv", later)
    ingest(con, str(tmp_path / "base.csv"), mapping, str(landing))
    from customer_assets.registry import current_champion

    new_end = dt.date(2011, 4, 20)
    assert baseline_as_of(con, current_champion(con, "churn_model"), new_end) == base_end
    t2 = model_psi(con, "churn_model", new_end, {"tenure_days"}, compute_customer_features)[0].set_index("feature")
    assert t2.loc["monetary", "psi"] > 0.2 and t2.loc["frequency", "psi"] > 0.2
    # with the stage's own feature function the baseline is kept in the warehouse (same PSI), and
    # the next report at a later as_of reads it instead of a feature snapshot at base_end
    stored = model_psi(con, "churn_model", new_end, {"tenure_days"})[0].set_index("feature")
    assert stored["psi"].to_dict() == pytest.approx(t2["psi"].to_dict())
    assert con.execute("SELECT count(*) FROM drift_state.baselines").fetchone()[0] == 1
    import customer_assets.monitoring.drift as drift

    snapshots, resolve = [], drift._resolve

    def counting(path):  # the stage's feature function, recording the snapshots it is asked for
        f = resolve(path)
        return lambda c, d: snapshots.append(d) or f(c, d)

    monkeypatch.setattr(drift, "_resolve", counting)
    later_end = new_end + dt.timedelta(days=7)
    model_psi(con, "churn_model", later_end, {"tenure_days"})
    assert snapshots == [later_end]  # the current features only: no snapshot at base_end


def test_reason_names_features_values_and_models_once():
    from customer_assets.monitoring.drift import DriftResult

    rows = [{"model": m, "model_version": 1, "feature": f, "psi": v}
            for m in ("churn_model", "ltv_xgb") for f, v in (("spend_30d", 0.712), ("price_index", 1.026))]
    rows.append({"model": "churn_model", "model_version": 1, "feature": "gap_ratio", "psi": 0.25})
    r = DriftResult(AS_OF, pd.DataFrame(), pd.DataFrame(), {}, psi_breaches=rows)
    assert r.reason(0.2, 0.1) == (
        "drift: PSI price_index=1.026, spend_30d=0.712, gap_ratio=0.250 > 0.2 (churn_model v1); "
        "PSI price_index=1.026, spend_30d=0.712 > 0.2 (ltv_xgb v1)"
    )
    r.psi_breaches = rows[:4]
    assert r.reason(0.2, 0.1) == "drift: PSI price_index=1.026, spend_30d=0.712 > 0.2 (churn_model v1, ltv_xgb v1)"


def test_auc_check_skips_when_the_champion_needs_a_feature_that_is_gone(db, tmp_path):
    X = compute_customer_features(db, SNAP)
    y = labels(db, SNAP, 90).set_index("customer_id").loc[X["customer_id"], "churned"].to_numpy()
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(X[["recency_days"]].rename(
        columns={"recency_days": "store_visits"}), y)
    register_model(db, tmp_path / "models", "churn_model", {"pipeline": pipe, "features": ["store_visits"]},
                   metrics={"roc_auc": 0.8}, features=["store_visits"], selection_metric="roc_auc")
    r = report(db)
    assert r.auc["status"] == "skipped" and "['store_visits']" in r.auc["note"]
    assert not r.retrain_recommended
