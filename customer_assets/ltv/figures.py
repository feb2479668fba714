"""Figures of customer_ltv drawn from the table alone: the asset's metadata and the report show the
same picture, rendered once per run (common/figure_cache)."""

from __future__ import annotations

import duckdb

from customer_assets.common.plotting import plt


def clv_decile_figure(con: duckdb.DuckDBPyConnection):
    """Share of the predicted 12-month CLV held by each value decile (customer_ltv)."""
    df = con.execute(
        """SELECT value_decile, sum(clv_12m) / sum(sum(clv_12m)) OVER () AS clv_share
           FROM customer_ltv GROUP BY value_decile ORDER BY value_decile""").df()
    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.bar(df["value_decile"].astype(str), df["clv_share"].fillna(0.0), color="#3b7dd8")
    ax.set_title("Share of predicted 12-month CLV by value decile")
    ax.set_xlabel("value decile")
    return fig
