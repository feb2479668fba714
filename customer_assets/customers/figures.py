"""Figures of the customer tables, drawn from the tables alone: the assets' metadata and the report
show the same picture, rendered once per run (common/figure_cache)."""

from __future__ import annotations

import duckdb
import numpy as np

from customer_assets.common.plotting import plt
from customer_assets.customers import cohorts, rfm


def segments_figure(con: duckdb.DuckDBPyConnection):
    """Share of customers and of revenue per RFM segment (rfm_segments), in rule-table order."""
    summary = rfm.segment_summary(con.execute(
        "SELECT customer_id, segment, recency_days, frequency, monetary FROM rfm_segments").df())
    fig, ax = plt.subplots(figsize=(10, 4))
    x = np.arange(len(summary))
    ax.bar(x - 0.2, summary["customer_share"] * 100, 0.4, label="% of customers", color="#3b75af")
    ax.bar(x + 0.2, summary["revenue_share"] * 100, 0.4, label="% of revenue", color="#ef8636")
    ax.set_xticks(x, summary["segment"], rotation=35, ha="right")
    ax.set_ylabel("%")
    ax.legend()
    ax.set_title("RFM segments: share of customers and of revenue")
    return fig


def cohort_heatmap_figure(con: duckdb.DuckDBPyConnection):
    """The retention matrix of cohort_retention (cohorts.heatmap)."""
    return cohorts.heatmap(con.execute(
        "SELECT * FROM cohort_retention ORDER BY cohort_month, months_since_acquisition").df())
