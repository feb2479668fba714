"""drift_report: PSI of the champions' features and the churn champion's AUC decay, with two checks.

The materialization metadata carries what drift_retrain_sensor needs (retrain_recommended,
retrain_reason, data_fingerprint), so the sensor never opens the warehouse.
"""

import math

import dagster as dg
from dagster_duckdb import DuckDBResource

from customer_assets.common.db import replace_table, resolve_as_of, table_exists
from customer_assets.common.figure_cache import table_figure_png
from customer_assets.common.metadata import df_to_markdown, png_to_md, table_metadata
from customer_assets.monitoring.drift import REPORT_COLUMNS, build_drift_report
from customer_assets.monitoring.figures import psi_figure, psi_rows_sql
from customer_assets.settings import AnalyticsSettings

GROUP = "monitoring"
PSI_CHECK = "psi_within_threshold"
AUC_CHECK = "auc_drop_within_threshold"


def exempt_set(settings: AnalyticsSettings) -> set:
    return {f.strip() for f in (settings.psi_exempt_features or "").split(",") if f.strip()}


def psi_chart(con) -> str:
    """The PSI chart of the drift_report just written (monitoring/figures; the report shows the same PNG)."""
    if not con.execute(f"SELECT count(*) FROM ({psi_rows_sql(1)})").fetchone()[0]:
        return "_(no PSI computed)_"
    return png_to_md(table_figure_png(con, ("drift_report",), psi_figure), "PSI per feature")


def psi_markdown(psi) -> str:
    if psi is None or len(psi) == 0:
        return "_(no PSI computed)_"
    cols = ["model", "model_version", "feature", "psi", "breached", "exempt", "psi_vs_training", "baseline",
            "current_n", "note"]
    return df_to_markdown(psi.sort_values("psi", ascending=False)[cols], max_rows=60)


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb"},
    pool="duckdb",
    deps=["cleaned_transactions", "churn_scores", "customer_ltv"],
    description="Drift of the champion models: PSI per model feature between the champion's training "
    "reference distribution and the current scoring features, and the churn champion's ROC AUC on the "
    "latest matured window (features at as_of - horizon, labels in (as_of - horizon, as_of]) against its "
    "AUC at training. One row per (model, feature) plus one auc_drop row.",
    check_specs=[
        dg.AssetCheckSpec(PSI_CHECK, asset="drift_report",
                          description="No non-exempt model feature has PSI above settings.psi_threshold."),
        dg.AssetCheckSpec(AUC_CHECK, asset="drift_report",
                          description="The churn champion's AUC has not dropped by more than "
                          "settings.auc_drop_threshold (relative) since training."),
    ],
)
def drift_report(context: dg.AssetExecutionContext, duckdb: DuckDBResource, settings: AnalyticsSettings):
    with duckdb.get_connection() as con:
        if not table_exists(con, "cleaned_transactions"):
            raise dg.Failure("drift_report needs cleaned_transactions: run ingestion first")
        as_of = resolve_as_of(con, settings.as_of_date())
        result = build_drift_report(
            con, as_of, settings.horizon_days, settings.psi_threshold, settings.auc_drop_threshold,
            exempt=exempt_set(settings), bins=settings.psi_bins,
        )
        replace_table(con, "drift_report", result.table[REPORT_COLUMNS])
        base_md = table_metadata(con, "drift_report", preview_rows=60,
                                 order_by="breached DESC, value DESC NULLS LAST")
        chart_md = psi_chart(con)

    reason = result.reason(settings.psi_threshold, settings.auc_drop_threshold)
    summary = result.summary(settings.psi_threshold, settings.auc_drop_threshold)
    for note in result.notes:
        context.log.warning(note)
    context.log.info(summary)
    table_md = psi_markdown(result.psi)
    checked = result.psi[~result.psi["exempt"].astype(bool)] if len(result.psi) else result.psi
    max_psi = checked["psi"].max() if len(checked) else math.nan
    auc = result.auc
    shared = {"psi_table": dg.MetadataValue.md(table_md), "psi_chart": dg.MetadataValue.md(chart_md)}

    psi_skipped = len(result.psi) == 0
    psi_check = dg.AssetCheckResult(
        check_name=PSI_CHECK,
        passed=not result.psi_breaches,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            **shared,
            "status": "skipped" if psi_skipped else ("breach" if result.psi_breaches else "ok"),
            "max_psi": dg.MetadataValue.float(float(max_psi) if not math.isnan(max_psi) else -1.0),
            "threshold": settings.psi_threshold,
            "breaching_features": dg.MetadataValue.json(
                [f"{b['model']}:{b['feature']}={b['psi']:.3f}" for b in result.psi_breaches]),
            "skipped_reason": "; ".join(n for n in result.notes if not n.startswith("AUC")) if psi_skipped else "",
        },
    )
    auc_check = dg.AssetCheckResult(
        check_name=AUC_CHECK,
        passed=not result.auc_breached,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            **shared,
            "status": "skipped" if auc["status"] != "ok" else ("breach" if result.auc_breached else "ok"),
            "current_auc": dg.MetadataValue.float(float(auc["current_auc"])),
            "training_auc": dg.MetadataValue.float(float(auc["training_auc"])),
            "relative_drop": dg.MetadataValue.float(float(auc["relative_drop"])),
            "threshold": settings.auc_drop_threshold,
            "window": auc.get("window", ""),
            "skipped_reason": auc["note"] if auc["status"] != "ok" else "",
        },
    )
    return dg.MaterializeResult(
        metadata={
            **base_md,
            "as_of": str(as_of),
            "summary": summary,
            "retrain_recommended": dg.MetadataValue.bool(result.retrain_recommended),
            "retrain_reason": reason,
            "data_fingerprint": result.fingerprint,
            "max_psi": dg.MetadataValue.float(float(max_psi) if not math.isnan(max_psi) else -1.0),
            "auc_current": dg.MetadataValue.float(float(auc["current_auc"])),
            "auc_training": dg.MetadataValue.float(float(auc["training_auc"])),
            "auc_relative_drop": dg.MetadataValue.float(float(auc["relative_drop"])),
            "notes": dg.MetadataValue.json(result.notes),
            **shared,
        },
        check_results=[psi_check, auc_check],
    )
