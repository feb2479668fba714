"""Star schema and core metric assets (group "warehouse"): one asset per table in star.STAR_SQL."""


import dagster as dg
from dagster_duckdb import DuckDBResource

from customer_assets.common.figure_cache import table_figure_png
from customer_assets.common.metadata import png_to_md, table_metadata
from customer_assets.warehouse.figures import region_figure, top_products_figure, trend_figure
from customer_assets.warehouse.star import DESCRIPTIONS, READS, STAR_SQL, build_table

GROUP = "warehouse"


# figures drawn from the table alone (warehouse/figures.py): the report shows the same PNG
PLOTS = {"sales_trends": (trend_figure, "monthly revenue"), "revenue_by_region": (region_figure, "revenue by region"),
         "top_products": (top_products_figure, "top products by revenue")}


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
                draw, alt = PLOTS[name]
                metadata["plot"] = dg.MetadataValue.md(png_to_md(table_figure_png(con, (name,), draw), alt))
        return dg.MaterializeResult(metadata=metadata)

    return _asset


WAREHOUSE_ASSETS = [_make_asset(n) for n in STAR_SQL]
