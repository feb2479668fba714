"""Metadata helpers: row counts, markdown previews and inline PNG plots for the Dagster UI."""

from __future__ import annotations

import base64
import io
from typing import Optional

import dagster as dg
import pandas as pd

from customer_assets.common.db import quote_ident, row_count


def df_to_markdown(df: pd.DataFrame, max_rows: int = 10, floatfmt: str = ".4g") -> str:
    """A markdown table without the optional `tabulate` dependency of DataFrame.to_markdown."""
    if df is None or len(df) == 0:
        return "_(no rows)_"
    df = df.head(max_rows)

    def fmt(v):
        if v is None or (isinstance(v, float) and pd.isna(v)):
            return ""
        if isinstance(v, float):
            return format(v, floatfmt)
        return str(v).replace("|", "\\|").replace("\n", " ")

    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(fmt(v) for v in row) + " |")
    return "\n".join(lines)


def fig_to_md(fig, alt: str = "plot", dpi: int = 90) -> str:
    """A matplotlib figure as an inline base64 PNG in markdown (the Dagster UI renders it)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode()
    return f"![{alt}](data:image/png;base64,{data})"


def fig_to_png_bytes(fig, dpi: int = 90) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def table_metadata(con, table: str, preview_rows: int = 10, order_by: Optional[str] = None) -> dict:
    """row_count + markdown preview of a warehouse table."""
    order = f" ORDER BY {order_by}" if order_by else ""
    preview = con.execute(f"SELECT * FROM {quote_ident(table)}{order} LIMIT {int(preview_rows)}").df()
    return {
        "row_count": dg.MetadataValue.int(int(row_count(con, table))),
        "preview": dg.MetadataValue.md(df_to_markdown(preview, preview_rows)),
    }
