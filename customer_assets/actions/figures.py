"""The value-at-risk figure, drawn from the retention_actions table alone: the asset's metadata and
the report show the same picture, rendered once per run (common/figure_cache)."""

from __future__ import annotations

import duckdb

from customer_assets.actions.retention import summarize, summary_inputs
from customer_assets.common.plotting import plt


def value_at_risk_figure(con: duckdb.DuckDBPyConnection):
    """Value at risk per risk band, and the customers of each band contacted / held out.
    Callers draw it only when retention_actions has rows."""
    summary = summarize(summary_inputs(con))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    ax1.bar(summary["risk_band"], summary["value_at_risk"].fillna(0), color="#c0392b")
    ax1.set_title("Value at risk by risk band")
    ax1.set_ylabel("churn probability x CLV 12m")
    ax2.bar(summary["risk_band"], summary["contacted"], label="contacted", color="#2e86c1")
    ax2.bar(summary["risk_band"], summary["control"], bottom=summary["contacted"],
            label="control (holdout)", color="#aab7b8")
    ax2.set_title("Customers by band")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig
