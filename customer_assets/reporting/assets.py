"""Assets of the "reporting" group: customer_report and regional_extracts (thin glue)."""

import re

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from customer_assets.actions.inputs import write_typed
from customer_assets.common.metadata import df_to_markdown, table_metadata
from customer_assets.reporting import extracts as ex
from customer_assets.reporting import report as rp
from customer_assets.resources import ModelStore
from customer_assets.settings import AnalyticsSettings

GROUP = "reporting"
REPORT_INPUTS = [
    "cleaned_transactions", "sales_trends", "top_products", "revenue_by_region", "rfm_segments",
    "cohort_retention", "churn_scores", "churn_model", "customer_ltv", "bundle_recommendations", "association_rules",
    "drift_report", "retention_actions", "notification_outbox",
]

# The two checks are check_specs of their assets: evaluated inside the asset's step on what the
# asset just wrote (a separate check step costs more in Dagster bookkeeping than the check itself).
SELF_CONTAINED_CHECK = "customer_report_is_self_contained"
SELF_CONTAINED_DESCRIPTION = ("The report file exists, has its recommendations section and makes no external "
                              "request (no http(s) src/href, <link>, remote script).")
OWN_REGION_CHECK = "regional_extracts_only_own_region"
OWN_REGION_DESCRIPTION = "Each file holds only its own region's customers, as many as the table says."


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb", "html"},
    pool="duckdb",
    deps=REPORT_INPUTS,
    description="Self-contained HTML report (warehouse/reports/customer_report.html; inline images, "
    "opens offline): KPIs, sales trend, top products, regions, segments, cohorts, churn risk and "
    "calibration, CLV deciles, bundles, drift, retention actions and strategic recommendations. "
    "The table lists each section and whether its inputs were there.",
    check_specs=[dg.AssetCheckSpec(SELF_CONTAINED_CHECK, asset="customer_report",
                                   description=SELF_CONTAINED_DESCRIPTION)],
)
def customer_report(
    duckdb: DuckDBResource, model_store: ModelStore, settings: AnalyticsSettings
) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        report = rp.build_report(con, settings.horizon_days)
        path = rp.write_report(report, model_store.reports_path())
        status = pd.DataFrame(
            [{"section": s.title, "available": s.missing is None, "note": s.missing} for s in report["sections"]]
        )
        status["path"] = str(path)
        write_typed(con, "customer_report", status,
                    {"section": "VARCHAR", "available": "BOOLEAN", "note": "VARCHAR", "path": "VARCHAR"})
        md = table_metadata(con, "customer_report", preview_rows=20)
    available = int(status["available"].sum())
    return dg.MaterializeResult(
        metadata={
            **md,
            "report_path": dg.MetadataValue.path(str(path)),
            "report_bytes": path.stat().st_size,
            "sections_available": f"{available} of {len(status)}",
            "summary": dg.MetadataValue.md(report["markdown"]),
        },
        check_results=[customer_report_is_self_contained(path)],
    )


def customer_report_is_self_contained(path) -> dg.AssetCheckResult:
    """The check of customer_report on the file it wrote (`path`, as in customer_report.path)."""
    from pathlib import Path

    p = Path(path) if path else None
    if p is None or not p.exists():
        return dg.AssetCheckResult(check_name=SELF_CONTAINED_CHECK, passed=False,
                                   metadata={"problem": f"report file {path} missing"})
    text = p.read_text(encoding="utf-8")
    external = re.findall(rp.EXTERNAL_REF, text, flags=re.IGNORECASE)
    return dg.AssetCheckResult(
        check_name=SELF_CONTAINED_CHECK,
        passed=not external and "Strategic recommendations" in text,
        metadata={"external_references": len(external), "bytes": len(text.encode())},
    )


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb", "csv"},
    pool="duckdb",
    deps=["retention_actions"],
    description="One CSV per region (country) under warehouse/reports/regions/ holding only that "
    "region's customers and their scores: the file-per-manager equivalent of row-level security. "
    "Which regions: setting `regions` (empty = every country). Table: region, path, row_count.",
    check_specs=[dg.AssetCheckSpec(OWN_REGION_CHECK, asset="regional_extracts", blocking=True,
                                   description=OWN_REGION_DESCRIPTION)],
)
def regional_extracts(
    duckdb: DuckDBResource, settings: AnalyticsSettings, model_store: ModelStore
) -> dg.MaterializeResult:
    out_dir = model_store.reports_path() / "regions"
    with duckdb.get_connection() as con:
        table, notes = ex.write_regional_extracts(con, out_dir, settings.regions)
        write_typed(con, "regional_extracts", table,
                    {"region": "VARCHAR", "path": "VARCHAR", "row_count": "BIGINT", "note": "VARCHAR"})
        md = table_metadata(con, "regional_extracts", preview_rows=15, order_by="row_count DESC")
        check = regional_extracts_only_own_region(con)
    return dg.MaterializeResult(
        metadata={
            **md,
            "folder": dg.MetadataValue.path(str(out_dir)),
            "files": int(table["path"].notna().sum()),
            "customers_in_extracts": int(table["row_count"].sum()),
            "notes": dg.MetadataValue.md("\n".join(f"- {n}" for n in notes) or "none"),
            "largest_regions": dg.MetadataValue.md(df_to_markdown(
                table.sort_values("row_count", ascending=False)[["region", "row_count"]], 10)),
        },
        check_results=[check],
    )


def regional_extracts_only_own_region(con) -> dg.AssetCheckResult:
    """The blocking check of regional_extracts: reads every file back (on the asset's connection)."""
    table = con.execute("SELECT region, path, row_count FROM regional_extracts WHERE path IS NOT NULL").fetchall()
    # every file read back by DuckDB in one scan (every field as text): its rows, the rows
    # without a country and the countries it holds
    found = {}
    if table:
        found = {f: (n, nulls, set(countries)) for f, n, nulls, countries in con.execute(
            "SELECT filename, count(*), count(*) FILTER (country IS NULL), list(DISTINCT country) "
            "FROM read_csv(?, header = true, all_varchar = true, filename = true) GROUP BY filename",
            [[path for _, path, _ in table]],
        ).fetchall()}
    bad = []
    for region, path, expected in table:
        n, nulls, countries = found.get(path, (0, 0, set()))
        if n != expected or n == 0 or nulls or countries != {region}:
            bad.append(region)
    return dg.AssetCheckResult(check_name=OWN_REGION_CHECK, passed=not bad,
                               metadata={"files_checked": len(table), "bad_regions": ", ".join(bad)})


ASSETS = [customer_report, regional_extracts]
CHECKS: list = []  # the two checks are check_specs of their assets (evaluated in the asset's step)
