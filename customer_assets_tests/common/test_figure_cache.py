"""common/figure_cache: a figure drawn from a table is rendered once per content of that table."""

import shutil
from contextlib import contextmanager

import duckdb
import pytest

from customer_assets.common import figure_cache
from customer_assets.common.plotting import plt, release_held

DRAWN: list = []


def bars(con):
    DRAWN.append("bars")
    df = con.execute("SELECT k, v FROM t ORDER BY k").df()
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.bar(df["k"], df["v"])
    return fig


def other_bars(con):
    DRAWN.append("other")
    return bars(con)


@pytest.fixture
def con(tmp_path):
    figure_cache.clear()
    DRAWN.clear()
    c = duckdb.connect(str(tmp_path / "w.duckdb"))
    c.execute("CREATE TABLE t AS SELECT * FROM (VALUES ('a', 1), ('b', 2)) v(k, v)")
    yield c
    c.close()
    release_held()


def test_same_rows_same_png_drawn_once(con):
    first = figure_cache.table_figure_png(con, ("t",), bars)
    again = figure_cache.table_figure_png(con, ("t",), bars)
    assert first == again and first.startswith(b"\x89PNG")
    assert DRAWN == ["bars"]


def test_a_table_written_again_with_other_rows_is_drawn_again(con):
    first = figure_cache.table_figure_png(con, ("t",), bars)
    con.execute("CREATE OR REPLACE TABLE t AS SELECT * FROM (VALUES ('a', 1), ('b', 3)) v(k, v)")
    second = figure_cache.table_figure_png(con, ("t",), bars)
    assert DRAWN == ["bars", "bars"] and first != second
    # the same rows written again (a new table, same content): the cached picture is right, and reused
    con.execute("CREATE OR REPLACE TABLE t AS SELECT * FROM (VALUES ('b', 3), ('a', 1)) v(k, v)")
    assert figure_cache.table_figure_png(con, ("t",), bars) == second
    assert DRAWN == ["bars", "bars"]


def test_another_figure_of_the_same_table_is_its_own(con):
    figure_cache.table_figure_png(con, ("t",), bars)
    figure_cache.table_figure_png(con, ("t",), other_bars)
    assert DRAWN == ["bars", "other", "bars"]


def test_the_report_shows_the_assets_pictures_without_drawing_them_again(retail_db):
    """The report's sales trend, regions, segments and cohorts sections embed the PNG the assets
    rendered for their metadata (same bytes), drawn once."""
    from customer_assets.customers.figures import cohort_heatmap_figure, segments_figure
    from customer_assets.reporting import sections
    from customer_assets.warehouse.figures import region_figure, trend_figure
    from customer_assets.warehouse.star import build_table

    with warehouse_copy(retail_db, "figures.duckdb") as con:
        for name in ("sales_trends", "revenue_by_region"):
            build_table(con, name)
        con.execute("CREATE TABLE rfm_segments AS SELECT customer_id, 'Champions' AS segment, 10 AS recency_days, "
                    "3 AS frequency, sum(line_total) AS monetary FROM cleaned_transactions GROUP BY customer_id")
        con.execute("CREATE TABLE cohort_retention AS SELECT DATE '2011-01-01' AS cohort_month, "
                    "m AS months_since_acquisition, 100 AS cohort_size, 100 - 10 * m AS retention_pct "
                    "FROM range(4) r(m)")
        assert_report_reuses(con, [(sections.sales_trend, "sales_trends", trend_figure),
                 (sections.revenue_by_region, "revenue_by_region", region_figure),
                 (sections.segments, "rfm_segments", segments_figure),
                 (sections.cohorts, "cohort_retention", cohort_heatmap_figure)])


def test_the_report_reuses_the_top_products_clv_drift_and_actions_figures(retail_db):
    """The same for the figures the top_products, customer_ltv, drift_report and retention_actions
    assets draw: the report embeds the asset's PNG and draws none of them again."""
    from customer_assets.actions.figures import value_at_risk_figure
    from customer_assets.ltv.figures import clv_decile_figure
    from customer_assets.monitoring.figures import psi_figure
    from customer_assets.reporting import sections
    from customer_assets.warehouse.figures import top_products_figure
    from customer_assets.warehouse.star import build_table

    with warehouse_copy(retail_db, "figures2.duckdb") as con:
        for name in ("dim_product", "top_products"):
            build_table(con, name)
        customers = "SELECT DISTINCT customer_id FROM cleaned_transactions WHERE customer_id IS NOT NULL"
        con.execute(f"""CREATE TABLE customer_ltv AS SELECT customer_id, 1 + hash(customer_id) % 10 AS value_decile,
                        CAST(hash(customer_id) % 1000 AS DOUBLE) AS clv_12m, 50.0 AS historical_spend FROM ({customers})""")
        con.execute("""CREATE TABLE drift_report AS SELECT 'churn_model' AS model, 1 AS model_version,
                        'psi' AS check_name, 'feature_' || i AS feature, i / 10.0 AS value, 0.2 AS threshold,
                        i / 10.0 > 0.2 AS breached, i = 1 AS exempt FROM range(5) r(i)""")
        con.execute(f"""CREATE TABLE retention_actions AS SELECT customer_id, 'United Kingdom' AS country,
                        'Champions' AS segment, 'Gold' AS tier, ['High', 'Medium', 'Low'][CAST(1 + hash(customer_id) % 3 AS BIGINT)]
                        AS risk_band, 0.5 AS churn_probability, 100.0 AS clv_12m, 50.0 AS value_at_risk,
                        hash(customer_id) % 10 <> 0 AS contact, hash(customer_id) % 10 = 0 AS control_group,
                        'call' AS action, row_number() OVER (ORDER BY customer_id) AS priority,
                        'recency' AS reason_1 FROM ({customers})""")
        assert_report_reuses(con, [(sections.top_products, "top_products", top_products_figure),
                 (sections.clv_deciles, "customer_ltv", clv_decile_figure),
                 (sections.drift, "drift_report", psi_figure),
                 (sections.actions, "retention_actions", value_at_risk_figure)])


def assert_report_reuses(con, cases) -> None:
    """For each (section, table, draw): the section embeds the PNG the asset rendered with
    table_figure_png (same bytes) and nothing draws the figure a second time."""
    import base64
    import re

    drawn = []
    for section, table, draw in cases:
        def counting(c, draw=draw):
            drawn.append(draw.__name__)
            return draw(c)
        counting.__module__, counting.__qualname__ = draw.__module__, draw.__qualname__
        asset_png = figure_cache.table_figure_png(con, (table,), counting)  # as the asset renders it
        body = section(con).body
        shown = [base64.b64decode(b) for b in re.findall(r"base64,([^']+)'", body)]
        assert asset_png in shown, section.__name__
    assert drawn == [d.__name__ for _, _, d in cases]  # each once: the report drew none again


@contextmanager
def warehouse_copy(retail_db, name: str):
    """A connection to a copy of the Online Retail warehouse, with an empty figure cache; closed after."""
    figure_cache.clear()
    path = retail_db.parent / name
    shutil.copy(retail_db, path)
    con = duckdb.connect(str(path))
    try:
        yield con
    finally:
        con.close()
        release_held()
