"""The evidence behind the churn design choices (docs/churn.md), reproducible on any warehouse:

    .venv/bin/python -m customer_assets.churn.experiments [warehouse.duckdb]

Every variant is trained on the same training snapshots and evaluated on the same out-of-time
window as `churn_model` (features at as_of - horizon, labels up to as_of). Nothing here is chosen
by looking at the evaluation window: the table is reported as measured.

A. calibration: none / cross-fitted isotonic pooled over the training snapshots (deployed) /
   recalibration on the latest matured window (base fit on the older training snapshots,
   isotonic on the newest one) / the deployed one + an EM prior-shift correction that
   re-estimates the churn rate from the unlabelled evaluation features (Saerens et al. 2002).
B. features: the RFM triple (the "plain approach"), the deployed set, and the deployed set plus
   country, gap regularity, Q4 share of purchase days and short-term activity.
C. the number of stacked training snapshots (1, 4, 6).
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from customer_assets.churn.features import model_feature_columns
from customer_assets.churn.metrics import evaluate
from customer_assets.churn.model import fit_calibrated, make_base_model
from customer_assets.churn.training import build_training_set, plan_windows, train_and_select
from customer_assets.common.db import resolve_as_of

EXTRA_SQL = """
WITH d AS (
    SELECT customer_id, order_date, any_value(country) AS country, sum(quantity) AS q, count(*) AS lines
    FROM cleaned_transactions WHERE order_date <= ? GROUP BY 1, 2
),
g AS (SELECT *, date_diff('day', lag(order_date) OVER (PARTITION BY customer_id ORDER BY order_date), order_date) AS gap FROM d)
SELECT customer_id,
       max(CASE WHEN country = 'United Kingdom' THEN 1 ELSE 0 END)::DOUBLE AS is_uk,
       coalesce(stddev_samp(gap) / nullif(avg(gap), 0), 0)::DOUBLE AS gap_cv,
       coalesce(max(gap), 0)::DOUBLE AS gap_max,
       (count(*) FILTER (WHERE month(order_date) IN (11, 12)))::DOUBLE / count(*) AS q4_share,
       (count(*) FILTER (WHERE order_date > CAST(? AS DATE) - 14))::DOUBLE AS days_14d,
       avg(q)::DOUBLE AS qty_per_day
FROM g GROUP BY 1
"""
EXTRA = ["is_uk", "gap_cv", "gap_max", "q4_share", "days_14d", "qty_per_day"]


def _em_prior_shift(p: np.ndarray, train_rate: float, iters: int = 200) -> tuple[np.ndarray, float]:
    """Saerens-Latinne-Decaestecker EM: re-estimate the class prior on unlabelled data."""
    q = train_rate
    adj = p
    for _ in range(iters):
        w1, w0 = q / train_rate, (1 - q) / (1 - train_rate)
        adj = w1 * p / (w1 * p + w0 * (1 - p))
        new = float(adj.mean())
        if abs(new - q) < 1e-7:
            break
        q = new
    return adj, q


def run(con, horizon_days: int = 90) -> pd.DataFrame:
    first = con.execute("SELECT min(order_date) FROM cleaned_transactions").fetchone()[0]
    as_of = resolve_as_of(con, None)
    rows = []

    def add(group, variant, kind, y, p, thr=0.5, note=""):
        m = evaluate(y, p, thr)
        rows.append({"group": group, "variant": variant, "model": kind, "roc_auc": m["roc_auc"], "ece": m["ece"],
                     "brier": m["brier"], "mean_predicted": float(np.mean(p)), "churn_rate": m["churn_rate"],
                     "note": note})

    w = plan_windows(first, as_of, horizon_days, 6)
    ts6 = build_training_set(con, w)
    extra = pd.concat([
        con.execute(EXTRA_SQL, [s, s]).df().assign(snapshot_date=pd.Timestamp(s))
        for s in w.train_snapshots + [w.eval_snapshot]
    ])
    ts6 = ts6.merge(extra, on=["customer_id", "snapshot_date"], how="left")
    keep4 = {pd.Timestamp(s) for s in w.train_snapshots[:4]} | {pd.Timestamp(w.eval_snapshot)}
    ts = ts6[ts6["snapshot_date"].isin(keep4)].reset_index(drop=True)
    features = model_feature_columns(con)
    train, ev = ts[ts["role"] == "train"], ts[ts["role"] == "eval"]
    y_tr, y_ev = train["churned"].to_numpy(), ev["churned"].to_numpy()

    # A. calibration
    newest = train["snapshot_date"].max()
    older, latest = train[train["snapshot_date"] < newest], train[train["snapshot_date"] == newest]
    for kind in ("logistic_regression", "xgboost"):
        raw = make_base_model(kind).fit(train[features], y_tr)
        add("A calibration", "none (base model probabilities)", kind, y_ev, raw.predict_proba(ev[features])[:, 1])
        model, _ = fit_calibrated(kind, train[features], y_tr, train["customer_id"])
        p = model.predict_proba(ev)[:, 1]
        add("A calibration", "cross-fitted isotonic, pooled snapshots (deployed)", kind, y_ev, p)
        platt, _ = fit_calibrated(kind, train[features], y_tr, train["customer_id"], method="platt")
        add("A calibration", "cross-fitted Platt, pooled snapshots", kind, y_ev, platt.predict_proba(ev)[:, 1])
        adj, q = _em_prior_shift(p, float(y_tr.mean()))
        add("A calibration", "deployed + EM prior shift on eval features", kind, y_ev, adj,
            note=f"estimated churn rate {q:.3f}")
        from sklearn.isotonic import IsotonicRegression

        base = make_base_model(kind).fit(older[features], older["churned"])
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(
            base.predict_proba(latest[features])[:, 1], latest["churned"])
        add("A calibration", f"recalibrated on the latest matured window ({newest.date()})", kind, y_ev,
            iso.predict(base.predict_proba(ev[features])[:, 1]),
            note=f"that window's churn rate {latest['churned'].mean():.3f}")

    # B. features
    for name, feats in [("RFM only (recency, frequency, monetary)", ["recency_days", "frequency", "monetary"]),
                        ("deployed features", features),
                        ("deployed + country, gap regularity, Q4 share, 14-day activity", features + EXTRA)]:
        r = train_and_select(ts, feats)
        for kind in ("logistic_regression", "xgboost"):
            add("B features", name, kind, r.eval_labels, r.eval_probabilities[kind])

    # C. stacked snapshots
    for n in (1, 4, 6):
        keep = {pd.Timestamp(s) for s in w.train_snapshots[:n]} | {pd.Timestamp(w.eval_snapshot)}
        sub = ts6[ts6["snapshot_date"].isin(keep)].reset_index(drop=True)
        r = train_and_select(sub, features)
        for kind in ("logistic_regression", "xgboost"):
            add("C snapshots", f"{n} training snapshot(s)", kind, r.eval_labels, r.eval_probabilities[kind],
                note=f"train churn rate {r.train_churn_rate:.3f}")
    return pd.DataFrame(rows)


def main(argv=None) -> None:
    import duckdb

    from customer_assets import paths
    from customer_assets.common.metadata import df_to_markdown

    argv = sys.argv[1:] if argv is None else argv
    path = argv[0] if argv else paths.DEFAULT_WAREHOUSE
    with duckdb.connect(path, read_only=True) as con:
        df = run(con)
    print(df_to_markdown(df, max_rows=100, floatfmt=".3f"))


if __name__ == "__main__":
    main()
