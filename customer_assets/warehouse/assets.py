"""Star schema and core metric assets (group "warehouse"): one asset per table in star.STAR_SQL."""


import dagster as dg
from dagster_duckdb import DuckDBResource

from customer_assets.common.metadata import fig_to_md, table_metadata
from customer_assets.warehouse.star import DESCRIPTIONS, READS, STAR_SQL, build_table

GROUP = "warehouse"


def _trend_plot(con) -> str:
    from customer_assets.common.plotting import plt

    df = con.execute("SELECT period_start, revenue, active_customers FROM sales_trends WHERE grain = 'month'").df()
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.bar(df["period_start"].astype(str).str[:7], df["revenue"], color="#3b7dd8")
    ax.set_title("Monthly revenue")
    ax.tick_params(axis="x", rotation=60, labelsize=7)
    return fig_to_md(fig, "monthly revenue")


def _region_plot(con) -> str:
    from customer_assets.common.plotting import plt

    df = con.execute("SELECT country, revenue FROM revenue_by_region ORDER BY revenue DESC LIMIT 12").df()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.barh(df["country"][::-1], df["revenue"][::-1], color="#2a9d8f")
    ax.set_xscale("log")
    ax.set_title("Revenue by country (top 12, log scale)")
    return fig_to_md(fig, "revenue by region")


PLOTS = {"sales_trends": _trend_plot, "revenue_by_region": _region_plot}


def _make_asset(name: str):
    @dg.asset(
        name=name,
        group_name=GROUP,
        kinds={"duckdb"},
        pool="duckdb",
        deps=["cleaned_transactions", *READS.get(name, [])],
        description=DESCRIPTIONS[name],
    )
    def _asset(duckdb: DuckDBResource) -> dg.MaterializeResult:
        with duckdb.get_connection() as con:
            build_table(con, name)
            metadata = table_metadata(con, name)
            if name in PLOTS:
                metadata["plot"] = dg.MetadataValue.md(PLOTS[name](con))
        return dg.MaterializeResult(metadata=metadata)

    return _asset


WAREHOUSE_ASSETS = [_make_asset(n) for n in STAR_SQL]
