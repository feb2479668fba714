"""The PSI chart, drawn from the drift_report table alone: the asset's metadata and the report show
the same picture, rendered once per run (common/figure_cache)."""

from __future__ import annotations

import duckdb

from customer_assets.common.plotting import plt

PSI_BARS = 20  # the largest PSI values shown; the asset's psi_table metadata lists every feature


def psi_rows_sql(limit: int = PSI_BARS) -> str:
    return f"""SELECT model, feature, value AS psi, threshold, coalesce(breached, false) AS breached,
                      coalesce(exempt, false) AS exempt
               FROM drift_report WHERE check_name = 'psi' AND feature IS NOT NULL AND NOT isnan(value)
               ORDER BY value DESC, model, feature LIMIT {int(limit)}"""


def psi_figure(con: duckdb.DuckDBPyConnection):
    """Horizontal bars of the largest PSI values per model feature, with the threshold; breaches
    red, exempt features grey. Callers draw it only when drift_report has such rows."""
    d = con.execute(psi_rows_sql()).df().iloc[::-1]  # largest on top
    threshold = float(d["threshold"].iloc[-1]) if len(d) else 0.2
    colors = ["#bbbbbb" if e else ("#d62728" if b else "#1f77b4") for e, b in zip(d["exempt"], d["breached"])]
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(d) + 1.2))
    ax.barh(d["model"] + ": " + d["feature"], d["psi"].clip(upper=max(2.0, threshold * 2)), color=colors)
    ax.axvline(threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    ax.set_xlabel("PSI (clipped at 2; grey = exempt, red = breach)")
    ax.legend(loc="lower right")
    ax.set_title(f"Feature drift vs the champion's deployment population (largest {PSI_BARS})")
    return fig
