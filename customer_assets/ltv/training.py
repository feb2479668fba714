"""Plain-Python steps behind the LTV assets: train + evaluate + register, and score.

Windows (h = horizon_days, cutoff = as_of - h):
- holdout evaluation: models see data up to the cutoff and predict (cutoff, as_of].
- production: the probabilistic models are refit on all data up to as_of; the XGBoost model is
  retrained on snapshots whose label windows end on or before as_of. These are the registered
  artifacts; scoring (`score_customers`) loads them only through the registry.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Optional

import duckdb
import numpy as np
import pandas as pd

from customer_assets.common.sampling import sample_customers
from customer_assets.ltv import clv, gbm
from customer_assets.ltv import evaluation as ev
from customer_assets.ltv.summary import calibration_with_holdout, compute_summary, summary_from_feature_base
from customer_assets.registry import ArtifactError, load_model, reference_distribution, register_model

ATTEMPT_PARAM_COLUMNS = ["r", "alpha", "a", "b", "s", "beta", "p", "q", "v"]


def windows(as_of: dt.date, horizon_days: int) -> tuple[dt.date, dt.date]:
    return as_of - dt.timedelta(days=horizon_days), as_of


def attempts_frame(results: dict) -> pd.DataFrame:
    """One row per fit attempt; `results`: {fit_window label: LadderResult}."""
    rows = []
    for window, res in results.items():
        for a in res.attempts:
            row = {"fit_window": window, "model": a.model, "penalizer": a.penalizer, "status": a.status,
                   "chosen": a.chosen, "log_likelihood": a.log_likelihood, "n_customers": a.n_customers}
            row.update({k: a.params.get(k) for k in ATTEMPT_PARAM_COLUMNS})
            row.update({"flags": "; ".join(a.flags) or None, "error": a.error, "seconds": a.seconds})
            rows.append(row)
        if not res.attempts:
            rows.append({"fit_window": window, "model": None, "status": "skipped", "chosen": False, "error": res.reason})
    cols = ["fit_window", "model", "penalizer", "status", "chosen", "log_likelihood", "n_customers",
            *ATTEMPT_PARAM_COLUMNS, "flags", "error", "seconds"]
    df = pd.DataFrame(rows).reindex(columns=cols)
    for c in ("penalizer", "log_likelihood", "seconds", *ATTEMPT_PARAM_COLUMNS):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    df["n_customers"] = pd.to_numeric(df["n_customers"], errors="coerce").astype("Int64")
    df["chosen"] = df["chosen"].fillna(False).astype(bool)
    for c in ("fit_window", "model", "status", "flags", "error"):
        df[c] = df[c].astype("string")
    return df


def _spec(best: Optional[clv.FitAttempt]) -> Optional[dict]:
    if best is None:
        return None
    return {"model": best.model, "params": dict(best.params), "penalizer": best.penalizer,
            "status": best.status, "flags": list(best.flags)}


def clv_holdout_predictions(cal: pd.DataFrame, buying: Optional[dict], spend: Optional[dict], horizon_days: int) -> pd.DataFrame:
    pred = clv.predict_customers(cal, buying, spend, horizon_days / 7.0, with_clv=False)
    pred["pred_revenue_clv"] = pred["expected_purchases"] * pred["expected_avg_order_value"]
    return pred.rename(columns={"expected_purchases": "pred_purchases_clv"})[
        ["customer_id", "pred_purchases_clv", "pred_revenue_clv", "expected_avg_order_value"]
    ]


@dataclass
class ClvTraining:
    cutoff: dt.date
    as_of: dt.date
    attempts: pd.DataFrame
    buying: dict = field(default_factory=dict)      # fit window -> LadderResult
    spend: dict = field(default_factory=dict)
    correlation: Optional[float] = None
    holdout: Optional[pd.DataFrame] = None           # calibration summary + actuals + predictions
    metrics: dict = field(default_factory=dict)      # model -> evaluate() output
    registrations: list = field(default_factory=list)
    notes: list = field(default_factory=list)


def train_clv(
    con: duckdb.DuckDBPyConnection,
    as_of: dt.date,
    horizon_days: int,
    models_dir: Optional[str] = None,
    *,
    tolerance: float = 0.0,
    reason: str = "first_training",
    buying_ladder=clv.BUYING_LADDER,
    spend_ladder=clv.SPEND_LADDER,
) -> ClvTraining:
    """Fit the ladders on the calibration window and on all data, evaluate the calibration fit on
    the holdout against the naive baseline, and (with `models_dir`) register clv_bgnbd and
    clv_gamma_gamma. Never raises because a fit failed."""
    cutoff, _ = windows(as_of, horizon_days)
    cal = calibration_with_holdout(con, cutoff, as_of)
    full = compute_summary(con, as_of)
    cal_label, full_label = f"calibration to {cutoff}", f"all data to {as_of}"
    out = ClvTraining(cutoff=cutoff, as_of=as_of, attempts=pd.DataFrame())
    if len(cal) == 0:
        out.notes.append(f"no customer bought on or before the cutoff {cutoff}: no holdout evaluation")
    out.buying = {cal_label: clv.fit_ladder(cal, buying_ladder), full_label: clv.fit_ladder(full, buying_ladder)}
    out.spend = {cal_label: clv.fit_spend(cal, spend_ladder), full_label: clv.fit_spend(full, spend_ladder)}
    out.attempts = attempts_frame(
        {f"{k} (buying)": v for k, v in out.buying.items()} | {f"{k} (spend)": v for k, v in out.spend.items()}
    )
    out.correlation = clv.frequency_monetary_correlation(full)

    cal_buy, cal_spend = _spec(out.buying[cal_label].best), _spec(out.spend[cal_label].best)
    if len(cal):
        hold = cal.merge(clv_holdout_predictions(cal, cal_buy, cal_spend, horizon_days), on="customer_id")
        hold = hold.merge(ev.naive_baseline(cal, cutoff, horizon_days).rename(
            columns={"pred_purchases": "pred_purchases_baseline", "pred_revenue": "pred_revenue_baseline"}), on="customer_id")
        out.holdout = hold
        if cal_buy:
            out.metrics["bgnbd_gamma_gamma"] = ev.evaluate(hold, "pred_revenue_clv", "pred_purchases_clv")
        out.metrics["naive_baseline"] = ev.evaluate(hold, "pred_revenue_baseline", "pred_purchases_baseline")
    for window, res in (out.buying | out.spend).items():
        if res.best is None:
            out.notes.append(f"{window}: {res.reason}")

    if models_dir is not None:
        champ = _champion_clv_on_window(con, cal, horizon_days) if len(cal) else {}
        out.registrations = _register_clv(con, models_dir, out, cal_buy, cal_spend, horizon_days, tolerance, reason,
                                          full_label, champ)
    return out


def _champion_clv_on_window(con, cal: pd.DataFrame, horizon_days: int) -> dict:
    """The current champions' calibration fits scored on this holdout window, for the registry gate.

    Their parameters were fit on data up to their own (earlier) cutoff, so scoring them on this
    calibration summary uses no data from this holdout window."""
    try:
        buy = load_model(con, "clv_bgnbd").obj
        spend = load_model(con, "clv_gamma_gamma").obj
    except ArtifactError:
        return {}
    if not buy.get("holdout_model"):
        return {}
    try:
        hold = cal.merge(clv_holdout_predictions(cal, buy["holdout_model"], spend.get("holdout_model"), horizon_days),
                         on="customer_id")
        out = {"purchases_mae": ev.evaluate(hold, "pred_revenue_clv", "pred_purchases_clv")["purchases"]["mae"]}
        out.update({k: v for k, v in _aov_metrics(hold).items() if k == "aov_mae"})
        return out
    except Exception:  # a champion that cannot score this window is simply not compared
        return {}


def _register_clv(con, models_dir, out: ClvTraining, cal_buy, cal_spend, horizon_days, tolerance, reason, full_label,
                  champion_on_window: dict):
    regs = []
    eval_window = (out.cutoff, out.as_of)
    m = out.metrics.get("bgnbd_gamma_gamma", {})
    base = out.metrics.get("naive_baseline", {})
    full_buy, full_spend = _spec(out.buying[full_label].best), _spec(out.spend[full_label].best)
    common = {
        "holdout_window": [str(out.cutoff), str(out.as_of)],
        "baseline": base,
        "frequency_monetary_corr": out.correlation,
        "ladder": out.attempts.drop(columns=["seconds"]).to_dict(orient="records"),
    }
    if full_buy:
        metrics = {
            **{f"purchases_{k}": v for k, v in m.get("purchases", {}).items()},
            **{f"revenue_{k}": v for k, v in m.get("revenue", {}).items()},
            "chosen_model": full_buy["model"], "chosen_penalizer": full_buy["penalizer"],
            "degenerate": full_buy["status"] == "degenerate", "flags": full_buy["flags"],
            "holdout_model": cal_buy, **common,
        }
        artifact = {**full_buy, "time_unit": "weeks", "fit_end": str(out.as_of),
                    "holdout_model": cal_buy, "cutoff": str(out.cutoff), "horizon_days": horizon_days}
        regs.append(register_model(
            con, models_dir, "clv_bgnbd", artifact, metrics=metrics, features=["frequency", "recency", "T"],
            selection_metric="purchases_mae", higher_is_better=False, tolerance=tolerance,
            champion_metric_same_window=champion_on_window.get("purchases_mae"),
            train_window=(None, out.as_of), eval_window=eval_window if cal_buy else None, reason=reason,
        ))
    if full_spend:
        aov = _aov_metrics(out.holdout)
        metrics = {**aov, "chosen_penalizer": full_spend["penalizer"], "flags": full_spend["flags"],
                   "holdout_model": cal_spend, **common}
        artifact = {**full_spend, "fit_end": str(out.as_of), "holdout_model": cal_spend, "cutoff": str(out.cutoff)}
        regs.append(register_model(
            con, models_dir, "clv_gamma_gamma", artifact, metrics=metrics, features=["frequency", "monetary_value"],
            selection_metric="aov_mae", higher_is_better=False, tolerance=tolerance,
            champion_metric_same_window=champion_on_window.get("aov_mae"),
            train_window=(None, out.as_of), eval_window=eval_window if cal_spend else None, reason=reason,
        ))
    return regs


def _aov_metrics(hold: Optional[pd.DataFrame]) -> dict:
    """Gamma-Gamma on the holdout: predicted average purchase-day value vs the actual one, for the
    customers who bought in the holdout."""
    if hold is None or "expected_avg_order_value" not in hold:
        return {}
    h = hold[(hold["actual_purchases"] > 0) & hold["expected_avg_order_value"].notna()]
    if len(h) == 0:
        return {}
    actual = h["actual_revenue"] / h["actual_purchases"]
    err = h["expected_avg_order_value"] - actual
    return {"aov_mae": float(err.abs().mean()), "aov_n": int(len(h)),
            "aov_predicted_mean": float(h["expected_avg_order_value"].mean()), "aov_actual_mean": float(actual.mean())}


# ------------------------------------------------------------------------------------------------
# XGBoost


@dataclass
class LtvTraining:
    cutoff: dt.date
    as_of: dt.date
    skipped: Optional[str] = None
    features: list = field(default_factory=list)
    train_snapshots: list = field(default_factory=list)
    production_snapshots: list = field(default_factory=list)
    train_rows: int = 0
    fit_rows: int = 0                # rows the evaluation model was fit on (train_rows when not sampled)
    fit_customers: int = 0
    holdout: Optional[pd.DataFrame] = None
    comparison: pd.DataFrame = field(default_factory=pd.DataFrame)
    metrics: dict = field(default_factory=dict)
    registration: object = None
    notes: list = field(default_factory=list)
    model: object = None


MIN_TRAIN_ROWS = 30


def train_ltv(
    con: duckdb.DuckDBPyConnection,
    as_of: dt.date,
    horizon_days: int,
    n_snapshots: int,
    models_dir: Optional[str] = None,
    *,
    tolerance: float = 0.0,
    reason: str = "first_training",
    max_fit_customers: int = 0,
) -> LtvTraining:
    """`max_fit_customers` (> 0): both XGBoost models are fit on the stacked rows of at most that
    many customers (`common.sampling.sample_customers`: the same customers at every snapshot);
    holdout predictions and metrics use every customer."""
    cutoff, _ = windows(as_of, horizon_days)
    out = LtvTraining(cutoff=cutoff, as_of=as_of)
    first = con.execute("SELECT min(order_date) FROM cleaned_transactions").fetchone()[0]
    out.train_snapshots = gbm.snapshots_ending(cutoff - dt.timedelta(days=horizon_days), n_snapshots, first)
    out.production_snapshots = gbm.snapshots_ending(cutoff, n_snapshots, first)
    if not out.train_snapshots:
        out.skipped = (
            f"not enough history: the first order is {first}, but training needs a snapshot on or before "
            f"{cutoff - dt.timedelta(days=horizon_days)} (as_of {as_of} minus two horizons of {horizon_days} days)"
        )
        return out
    memo = {}  # the train, holdout and production snapshots overlap (n=4: 7 distinct of 9)
    train = gbm.training_frame(con, out.train_snapshots, horizon_days, memo)
    if len(train) < MIN_TRAIN_ROWS or train["label_spend"].sum() <= 0:
        out.skipped = (f"training set too small or without any spend in its label windows "
                       f"({len(train)} rows, total label spend {train['label_spend'].sum() if len(train) else 0:.2f})")
        return out
    out.features = gbm.feature_names(train)
    out.train_rows = len(train)
    fit = sample_customers(train, max_fit_customers)
    out.fit_rows, out.fit_customers = len(fit), int(fit["customer_id"].nunique())
    eval_model = gbm.fit_xgb(fit, out.features)
    del fit

    cal = calibration_with_holdout(con, cutoff, as_of)
    snap = gbm.labelled_snapshot_memo(con, cutoff, horizon_days, memo)
    hold = cal.merge(
        pd.DataFrame({"customer_id": snap["customer_id"], "pred_revenue_xgb": gbm.predict_xgb(eval_model, snap, out.features)}),
        on="customer_id", how="left",
    )
    hold = hold.merge(ev.naive_baseline(cal, cutoff, horizon_days).rename(
        columns={"pred_purchases": "pred_purchases_baseline", "pred_revenue": "pred_revenue_baseline"}), on="customer_id")
    clv_pred, note = _registered_clv_holdout(con, cal, cutoff, horizon_days)
    if note:
        out.notes.append(note)
    if clv_pred is not None:
        hold = hold.merge(clv_pred, on="customer_id", how="left")
    out.holdout = hold
    out.metrics["xgboost"] = ev.evaluate(hold, "pred_revenue_xgb")
    out.metrics["naive_baseline"] = ev.evaluate(hold, "pred_revenue_baseline", "pred_purchases_baseline")
    if clv_pred is not None:
        out.metrics["bgnbd_gamma_gamma"] = ev.evaluate(hold, "pred_revenue_clv", "pred_purchases_clv")
    out.comparison = pd.DataFrame([ev.flat_metrics(k, v) for k, v in out.metrics.items()])

    prod = gbm.training_frame(con, out.production_snapshots, horizon_days, memo)
    prod_fit = sample_customers(prod, max_fit_customers)
    out.model = gbm.fit_xgb(prod_fit, out.features)
    if models_dir is not None:
        xm = out.metrics["xgboost"]["revenue"]
        metrics = {**{f"revenue_{k}": v for k, v in xm.items()},
                   "baseline": out.metrics["naive_baseline"],
                   "bgnbd_gamma_gamma": out.metrics.get("bgnbd_gamma_gamma"),
                   "train_snapshots": [str(s) for s in out.train_snapshots],
                   "production_snapshots": [str(s) for s in out.production_snapshots],
                   "train_rows": out.train_rows, "production_rows": len(prod),
                   "fit_rows": out.fit_rows, "fit_customers": out.fit_customers,
                   "production_fit_rows": len(prod_fit), "max_fit_customers": max_fit_customers,
                   "params": gbm.XGB_PARAMS}
        artifact = {"model": out.model, "features": out.features, "horizon_days": horizon_days,
                    "trained_through": str(as_of), "params": gbm.XGB_PARAMS}
        out.registration = register_model(
            con, models_dir, "ltv_xgb", artifact, metrics=metrics, features=out.features,
            selection_metric="revenue_gini_normalized", higher_is_better=True, tolerance=tolerance,
            champion_metric_same_window=_champion_xgb_on_window(con, snap, hold),
            train_window=(out.production_snapshots[0], as_of), eval_window=(cutoff, as_of), reason=reason,
            reference_distribution=reference_distribution(prod, out.features),
        )
    return out


def _champion_xgb_on_window(con, snap: pd.DataFrame, hold: pd.DataFrame) -> Optional[float]:
    """The champion's normalized Gini on this holdout window, for the registry gate.

    The champion is a production model and may have seen part of this window in training, which
    can only flatter it: the gate then errs towards keeping the champion."""
    try:
        champ = load_model(con, "ltv_xgb").obj
        preds = gbm.predict_xgb(champ["model"], snap, champ["features"])
    except Exception:  # no champion, or one whose features this data no longer has
        return None
    frame = hold.merge(pd.DataFrame({"customer_id": snap["customer_id"], "pred_champion": preds}),
                       on="customer_id", how="left")
    frame["pred_champion"] = frame["pred_champion"].fillna(0.0)
    return ev.evaluate(frame, "pred_champion")["revenue"].get("gini_normalized")


def _registered_clv_holdout(con, cal, cutoff, horizon_days):
    """Holdout predictions of the registered BG/NBD + Gamma-Gamma calibration fits, when their
    cutoff is this one (so the comparison is on the same window)."""
    try:
        buy = load_model(con, "clv_bgnbd").obj
        spend = load_model(con, "clv_gamma_gamma").obj
    except ArtifactError as e:
        return None, f"BG/NBD + Gamma-Gamma not in the comparison: {e}"
    if buy.get("cutoff") != str(cutoff) or not buy.get("holdout_model"):
        return None, f"registered clv_bgnbd was evaluated at cutoff {buy.get('cutoff')}, not {cutoff}: not compared"
    return clv_holdout_predictions(cal, buy["holdout_model"], spend.get("holdout_model"), horizon_days), None


# ------------------------------------------------------------------------------------------------
# scoring

LTV_COLUMNS = ["customer_id", "expected_purchases", "prob_alive", "expected_avg_order_value", "clv_12m",
               "predicted_spend_gbm", "historical_spend", "value_decile", "value_basis"]


def value_deciles(values: pd.Series) -> pd.Series:
    """1..10 by value (10 = most valuable); equal values split by order of appearance."""
    n = values.notna().sum()
    out = pd.Series(pd.NA, index=values.index, dtype="Int64")
    if n == 0:
        return out
    ranks = values.rank(method="first")
    out[values.notna()] = np.ceil(ranks[values.notna()] * 10 / n).astype(int).clip(1, 10)
    return out


def score_customers(
    con: duckdb.DuckDBPyConnection,
    as_of: dt.date,
    horizon_days: int,
    clv_months: int = 12,
    monthly_discount_rate: float = 0.01,
) -> tuple[pd.DataFrame, dict]:
    """customer_ltv rows for every customer with an order on or before as_of, and notes
    (model versions used, and why any column is NULL). Models come only from the registry."""
    from customer_assets.customers.features import compute_customer_features

    # the day sums from the feature base (the customer features, below and in the run, use it too)
    summary = summary_from_feature_base(con, as_of)
    info = {"models": {}, "null_reasons": {}}
    specs = {}
    for name in ("clv_bgnbd", "clv_gamma_gamma", "ltv_xgb"):
        try:
            loaded = load_model(con, name)
            specs[name] = loaded.obj
            info["models"][name] = {"version": int(loaded.version), "warnings": loaded.warnings}
        except ArtifactError as e:
            specs[name] = None
            info["null_reasons"][name] = str(e)
    buy, spend = specs["clv_bgnbd"], specs["clv_gamma_gamma"]
    pred = clv.predict_customers(summary, buy, spend, horizon_days / 7.0, clv_months, monthly_discount_rate)
    df = summary[["customer_id", "historical_spend"]].merge(pred, on="customer_id")
    df = df.rename(columns={"clv": "clv_12m"})
    df["predicted_spend_gbm"] = np.nan
    if specs["ltv_xgb"] is not None and len(summary):
        art = specs["ltv_xgb"]
        feats = compute_customer_features(con, as_of)
        g = pd.DataFrame({"customer_id": feats["customer_id"], "p": gbm.predict_xgb(art["model"], feats, art["features"])})
        df = df.drop(columns="predicted_spend_gbm").merge(g.rename(columns={"p": "predicted_spend_gbm"}), on="customer_id", how="left")
    if buy and buy.get("status") == "degenerate":
        info["warnings"] = [f"clv_bgnbd v{info['models']['clv_bgnbd']['version']}: " + "; ".join(buy.get("flags", []))]
    basis = next((c for c in ("clv_12m", "predicted_spend_gbm", "historical_spend") if df[c].notna().any()), "historical_spend")
    df["value_decile"] = value_deciles(df[basis])
    df["value_basis"] = basis
    info["value_basis"] = basis
    return df[LTV_COLUMNS].sort_values("customer_id").reset_index(drop=True), info
