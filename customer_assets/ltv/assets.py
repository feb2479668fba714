"""LTV assets: thin Dagster glue over training.py (fit, evaluate, register) and scoring."""

import base64
import json

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from customer_assets.registry import training_reason
from customer_assets.common.db import replace_table, resolve_as_of, table_exists
from customer_assets.common.figure_cache import table_figure_png
from customer_assets.common.metadata import df_to_markdown, fig_to_md, fig_to_png_bytes, png_to_md, table_metadata
from customer_assets.ltv.figures import clv_decile_figure
from customer_assets.ltv import evaluation as ev
from customer_assets.ltv import training as tr
from customer_assets.resources import ModelStore
from customer_assets.settings import AnalyticsSettings

GROUP = "ltv"
GG_CHECK = "gamma_gamma_independence"
FIT_CHECK = "buying_model_usable"


def _need_transactions(con) -> None:
    if not table_exists(con, "cleaned_transactions"):
        raise dg.Failure(description="cleaned_transactions does not exist: materialize the ingestion stage first")
    if con.execute("SELECT count(*) FROM cleaned_transactions").fetchone()[0] == 0:
        raise dg.Failure(description="cleaned_transactions is empty: nothing to model (see quarantined_transactions)")


def _metrics_md(metrics: dict) -> str:
    return df_to_markdown(pd.DataFrame([ev.flat_metrics(k, v) for k, v in metrics.items()]), max_rows=10)


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb", "python"},
    pool="duckdb",
    deps=["cleaned_transactions"],
    description="Probabilistic CLV models: a ladder of BG/NBD, modified BG/NBD and Pareto/NBD fits (penalizers "
    "0..0.1) and Gamma-Gamma on repeat buyers, fit on the calibration window (evaluated on the holdout "
    "horizon) and on all data (registered as clv_bgnbd / clv_gamma_gamma). The table holds every fit attempt: "
    "parameters, unpenalized log-likelihood, status, plain-words flags, error text, and which one was kept.",
    check_specs=[
        dg.AssetCheckSpec(GG_CHECK, asset="clv_model",
                          description="Gamma-Gamma assumes spend per purchase is independent of purchase frequency: "
                          "|corr(frequency, monetary value)| among repeat buyers must not exceed the setting."),
        dg.AssetCheckSpec(FIT_CHECK, asset="clv_model",
                          description="A buying model converged and its parameters are not degenerate "
                          "(e.g. dropout a -> 0: 'nobody ever stops buying')."),
    ],
)
def clv_model(context: dg.AssetExecutionContext, duckdb: DuckDBResource, settings: AnalyticsSettings,
              model_store: ModelStore):
    with duckdb.get_connection() as con:
        _need_transactions(con)
        as_of = resolve_as_of(con, settings.as_of_date())
        res = tr.train_clv(con, as_of, settings.horizon_days, str(model_store.models_path()),
                           tolerance=settings.promotion_tolerance,
                           reason=training_reason(context.run.tags if context.run else None, con, "clv_bgnbd"))
        replace_table(con, "clv_model", res.attempts)
        meta = table_metadata(con, "clv_model", preview_rows=40)
    for n in res.notes:
        context.log.warning(n)
    full = res.buying[f"all data to {as_of}"].best
    corr = res.correlation
    chosen = res.attempts[res.attempts["chosen"]][["fit_window", "model", "penalizer", "status", "log_likelihood", "flags"]]
    hold = res.metrics.get("bgnbd_gamma_gamma", {}).get("purchases", {})
    metadata = {
        **meta,
        "as_of": str(as_of),
        "holdout_window": f"{res.cutoff} < order_date <= {as_of}",
        "chosen_fits": dg.MetadataValue.md(df_to_markdown(chosen, max_rows=10)),
        "holdout_metrics": dg.MetadataValue.md(_metrics_md(res.metrics)),
        "holdout_repeat_purchases_predicted": hold.get("predicted_total"),
        "holdout_repeat_purchases_actual": hold.get("actual_total"),
        "frequency_monetary_corr": corr,
        "registered": dg.MetadataValue.json([r.__dict__ for r in res.registrations]),
        "notes": dg.MetadataValue.json(res.notes),
    }
    if res.holdout is not None and "pred_purchases_clv" in res.holdout and res.holdout["pred_purchases_clv"].notna().any():
        metadata["holdout_plot"] = dg.MetadataValue.md(fig_to_md(_purchases_plot(res.holdout), "holdout purchases"))
    gg_ok = corr is None or abs(corr) <= settings.gamma_gamma_max_corr
    if full is None:
        fit_ok, fit_text = False, "no buying model converged: " + (res.buying[f"all data to {as_of}"].reason or "")
    elif full.status == "degenerate":
        fit_ok, fit_text = False, f"kept {full.model} (penalizer {full.penalizer}) but: " + "; ".join(full.flags)
    else:
        fit_ok, fit_text = True, f"kept {full.model} (penalizer {full.penalizer}), parameters {full.params}"
    return dg.MaterializeResult(
        metadata=metadata,
        check_results=[
            dg.AssetCheckResult(
                check_name=GG_CHECK, passed=bool(gg_ok), severity=dg.AssetCheckSeverity.WARN,
                metadata={"corr": corr, "threshold": settings.gamma_gamma_max_corr},
                description=None if gg_ok else (
                    f"frequency and spend per purchase are correlated ({corr:.2f}): Gamma-Gamma's expected order "
                    "values are biased for frequent buyers"),
            ),
            dg.AssetCheckResult(check_name=FIT_CHECK, passed=fit_ok, severity=dg.AssetCheckSeverity.WARN,
                                description=fit_text[:1000]),
        ],
    )


def _purchases_plot(hold: pd.DataFrame):
    """Mean holdout purchases by calibration frequency: predicted (BG/NBD, baseline) vs actual."""
    from customer_assets.common.plotting import plt

    h = hold.assign(freq=hold["frequency"].clip(upper=7).astype(int))
    g = h.groupby("freq")[["actual_purchases", "pred_purchases_clv", "pred_purchases_baseline"]].mean()
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.plot(g.index, g["actual_purchases"], "o-", label="actual")
    ax.plot(g.index, g["pred_purchases_clv"], "s--", label="BG/NBD family")
    ax.plot(g.index, g["pred_purchases_baseline"], "^:", label="naive baseline")
    ax.set_xlabel("repeat purchases in calibration (7 = 7+)")
    ax.set_ylabel("mean purchases in holdout")
    ax.legend(fontsize=8)
    ax.set_title("Holdout purchases by calibration frequency", fontsize=10)
    return fig


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb", "xgboost"},
    pool="duckdb",
    deps=["cleaned_transactions", "clv_model"],
    description="XGBoost (Tweedie) regressor of each customer's spend in the horizon after a snapshot, trained "
    "out-of-time on stacked snapshots of the shared customer features; registered as ltv_xgb. The table "
    "compares it with BG/NBD + Gamma-Gamma and the naive baseline (past spend rate carried forward) on "
    "the same holdout window: MAE, RMSE, Spearman, normalized Gini, predicted vs actual totals.",
)
def ltv_model(context: dg.AssetExecutionContext, duckdb: DuckDBResource, settings: AnalyticsSettings,
              model_store: ModelStore):
    with duckdb.get_connection() as con:
        _need_transactions(con)
        as_of = resolve_as_of(con, settings.as_of_date())
        res = tr.train_ltv(con, as_of, settings.horizon_days, settings.ltv_training_snapshots,
                           str(model_store.models_path()), tolerance=settings.promotion_tolerance,
                           reason=training_reason(context.run.tags if context.run else None, con, "ltv_xgb"),
                           max_fit_customers=settings.max_fit_customers)
        if res.skipped:
            context.log.warning(res.skipped)
            comparison = pd.DataFrame({"model": pd.Series([], dtype="string"), "skipped_reason": pd.Series([], dtype="string")})
        else:
            comparison = res.comparison.assign(eval_window_start=res.cutoff, eval_window_end=as_of)
        replace_table(con, "ltv_model", comparison)
        meta = table_metadata(con, "ltv_model")
    metadata = {**meta, "as_of": str(as_of), "notes": dg.MetadataValue.json(res.notes)}
    if res.skipped:
        metadata["skipped"] = res.skipped
        return dg.MaterializeResult(metadata=metadata)
    cols = {"XGBoost": "pred_revenue_xgb", "BG/NBD + Gamma-Gamma": "pred_revenue_clv", "naive baseline": "pred_revenue_baseline"}
    fig = ev.decile_chart(res.holdout, cols, f"Holdout {res.cutoff} .. {as_of}: predicted vs actual revenue by decile")
    png = fig_to_png_bytes(fig)  # rendered once: the same PNG goes to the reports folder and the UI
    path = model_store.reports_path() / "ltv_holdout_deciles.png"
    path.write_bytes(png)
    metadata.update({
        "decile_chart": dg.MetadataValue.md(f"![decile chart](data:image/png;base64,{base64.b64encode(png).decode()})"),
        "decile_chart_png": dg.MetadataValue.path(str(path)),
        "train_snapshots": dg.MetadataValue.json([str(s) for s in res.train_snapshots]),
        "production_snapshots": dg.MetadataValue.json([str(s) for s in res.production_snapshots]),
        "train_rows": res.train_rows,
        "fit_rows": res.fit_rows,
        "fit_customers": res.fit_customers,
        "features": dg.MetadataValue.json(res.features),
        "registered": dg.MetadataValue.json(res.registration.__dict__),
    })
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb"},
    pool="duckdb",
    # customer_features: the XGBoost model scores the features as of as_of, that asset's snapshot
    # (read from the run's feature cache when it ran first; see churn_scores)
    deps=["cleaned_transactions", "clv_model", "ltv_model", "customer_features"],
    description="One row per current customer: expected purchases in the horizon and probability alive "
    "(BG/NBD family), expected average order value (Gamma-Gamma), discounted CLV over clv_months months "
    "(clv_12m), XGBoost predicted horizon spend, historical spend, and value decile (10 = most valuable, "
    "by value_basis). Models are loaded only from the registry, so this scores without retraining.",
    check_specs=[dg.AssetCheckSpec(
        "customer_ltv_valid", asset="customer_ltv", blocking=True,
        description="One row per customer; probabilities in [0, 1]; no negative or infinite values.")],
)
def customer_ltv(context: dg.AssetExecutionContext, duckdb: DuckDBResource, settings: AnalyticsSettings):
    with duckdb.get_connection() as con:
        _need_transactions(con)
        as_of = resolve_as_of(con, settings.as_of_date())
        df, info = tr.score_customers(con, as_of, settings.horizon_days, settings.clv_months,
                                      settings.monthly_discount_rate)
        replace_table(con, "customer_ltv", df)
        meta = table_metadata(con, "customer_ltv", order_by="clv_12m DESC NULLS LAST, predicted_spend_gbm DESC")
        deciles = con.execute(
            """SELECT value_decile, count(*) AS customers, round(avg(clv_12m), 2) AS mean_clv_12m,
                      round(avg(predicted_spend_gbm), 2) AS mean_predicted_spend_gbm,
                      round(avg(historical_spend), 2) AS mean_historical_spend, round(avg(prob_alive), 3) AS mean_prob_alive
               FROM customer_ltv GROUP BY 1 ORDER BY 1 DESC"""
        ).df()
        valid = _ltv_valid_result(con)
        # the report shows the same figure: rendered once per run (common/figure_cache)
        plot = png_to_md(table_figure_png(con, ("customer_ltv",), clv_decile_figure), "CLV share by value decile")
    for name, reason in info["null_reasons"].items():
        context.log.warning(f"{name} unavailable, its columns are NULL: {reason}")
    for w in info.get("warnings", []):
        context.log.warning(w)
    return dg.MaterializeResult(metadata={
        **meta,
        "as_of": str(as_of),
        "value_basis": info["value_basis"],
        "models_used": dg.MetadataValue.json(info["models"]),
        "null_columns_because": dg.MetadataValue.json(info["null_reasons"]),
        "model_warnings": dg.MetadataValue.json(info.get("warnings", [])),
        "by_value_decile": dg.MetadataValue.md(df_to_markdown(deciles, max_rows=10)),
        "clv_by_decile_plot": dg.MetadataValue.md(plot),
        "total_clv_12m": None if df["clv_12m"].isna().all() else float(df["clv_12m"].sum()),
    }, check_results=[valid])


def _ltv_valid_result(con) -> dg.AssetCheckResult:
    """customer_ltv_valid's logic, run inside customer_ltv's step on its connection."""
    row = con.execute(
        """SELECT count(*) - count(DISTINCT customer_id),
                  count(*) FILTER (WHERE prob_alive < 0 OR prob_alive > 1),
                  count(*) FILTER (WHERE expected_purchases < 0 OR clv_12m < 0 OR predicted_spend_gbm < 0
                                   OR expected_avg_order_value < 0),
                  count(*) FILTER (WHERE isinf(clv_12m) OR isinf(expected_purchases)),
                  count(*) FILTER (WHERE value_decile NOT BETWEEN 1 AND 10)
           FROM customer_ltv"""
    ).fetchone()
    names = ["duplicate_customers", "prob_alive_out_of_range", "negative_values", "infinite_values", "bad_decile"]
    counts = {n: int(v) for n, v in zip(names, row)}
    bad = {k: v for k, v in counts.items() if v}
    return dg.AssetCheckResult(check_name="customer_ltv_valid", passed=not bad, metadata=counts,
                               description=None if not bad else f"invalid rows: {json.dumps(bad)}")


def customer_ltv_valid(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    """One row per customer; probabilities in [0, 1]; no negative or infinite values."""
    with duckdb.get_connection() as con:
        return _ltv_valid_result(con)


ASSETS = [clv_model, ltv_model, customer_ltv]
CHECKS = []  # customer_ltv_valid: a check_spec of customer_ltv, evaluated in its step
