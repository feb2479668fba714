"""Figures of the core metric tables, drawn from the tables alone: the assets' metadata and the
report show the same picture, rendered once per run (common/figure_cache)."""

from __future__ import annotations

import duckdb

from customer_assets.common.plotting import plt


def trend_figure(con: duckdb.DuckDBPyConnection):
    """Monthly revenue (sales_trends, grain 'month')."""
    df = con.execute(
        "SELECT period_start, revenue FROM sales_trends WHERE grain = 'month' ORDER BY period_start").df()
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.bar(df["period_start"].astype(str).str[:7], df["revenue"], color="#3b7dd8")
    ax.set_title("Monthly revenue")
    ax.tick_params(axis="x", rotation=60, labelsize=7)
    return fig


def region_figure(con: duckdb.DuckDBPyConnection):
    """Revenue of the 12 largest countries (revenue_by_region), log scale."""
    df = con.execute("SELECT country, revenue FROM revenue_by_region ORDER BY revenue DESC, country LIMIT 12").df()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.barh(df["country"][::-1], df["revenue"][::-1], color="#2a9d8f")
    ax.set_xscale("log")
    ax.set_title("Revenue by country (top 12, log scale)")
    return fig


def top_products_figure(con: duckdb.DuckDBPyConnection):
    """The 10 products with the most revenue (top_products; one bar per product name)."""
    df = con.execute(
        """SELECT product_name, revenue FROM (
               SELECT coalesce(product_name, product_id) AS product_name, revenue,
                      row_number() OVER (PARTITION BY coalesce(product_name, product_id)
                                         ORDER BY revenue DESC, product_id) AS n
               FROM top_products)
           WHERE n = 1 ORDER BY revenue DESC, product_name LIMIT 10""").df()
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.barh(df["product_name"].astype(str).str[:40][::-1], df["revenue"][::-1], color="#3b7dd8")
    ax.set_title("Top 10 products by revenue")
    return fig
