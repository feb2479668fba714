"""Metadata helpers: row counts, markdown previews and inline PNG plots for the Dagster UI."""

from __future__ import annotations

import base64
import threading
from typing import Optional

import dagster as dg
import pandas as pd

from customer_assets.common.db import quote_ident, row_count
from customer_assets.common.figure_png import close_figure


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
    return png_to_md(fig_to_png_bytes(fig, dpi), alt)


def png_to_md(png: bytes, alt: str = "plot") -> str:
    """PNG bytes as an inline base64 image in markdown."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"


# where fig_to_png_bytes rendered the figures of this process: in the helper, or here (helpers off,
# a figure that does not pickle, or a helper that is not there); read by the tests
RENDERED = {"helper": 0, "here": 0}
_RENDERED_LOCK = threading.Lock()


def fig_to_png_bytes(fig, dpi: int = 90) -> bytes:
    """The figure as PNG bytes, cropped to its tight bounding box (common.figure_png.render_png), and
    closed.

    Rendering holds the GIL (~0.1-0.2 s a figure), so when helper processes are on (common/
    side_process) the figure is pickled (a few ms) and rendered in the figures helper, the same
    pixels, while this process' other step goes on; matplotlib is given back to the other steps
    meanwhile. A figure that does not pickle (a lambda tick formatter: a warning names it), or a
    helper that is not there, is rendered here."""
    from customer_assets.common import side_process
    from customer_assets.common.plotting import FIGURE_COUNTED, figure_closed, figure_opened

    # matplotlib is not thread-safe (see common/plotting): held while drawing and pickling. A figure
    # made by plotting.subplots was counted open when it was made; any other is counted now.
    if not getattr(fig, FIGURE_COUNTED, False):
        figure_opened()
    payload = None
    try:
        if side_process.enabled():
            payload = _pickled(fig)
        if payload is None:
            return _render_here(fig, dpi)
    finally:
        if payload is None:
            close_figure(fig)
        figure_closed()
    try:
        png = side_process.FIGURES.call("customer_assets.common.figure_png:render_pickled", payload, dpi)
        _count("helper")
        return png
    except side_process.Unavailable:
        figure_opened()
        try:
            return _render_here(fig, dpi)
        finally:
            figure_closed()
    finally:
        close_figure(fig)


def _render_here(fig, dpi: int) -> bytes:
    from customer_assets.common.figure_png import render_png

    png = render_png(fig, dpi)
    _count("here")
    return png


def _count(where: str) -> None:
    with _RENDERED_LOCK:
        RENDERED[where] += 1


def _pickled(fig) -> Optional[bytes]:
    import pickle

    try:
        return pickle.dumps(fig, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:  # noqa: BLE001 - rendered in this process instead
        import logging

        title = next((ax.get_title() for ax in fig.axes if ax.get_title()), "(untitled)")
        logging.getLogger(__name__).warning(
            "figure %r does not pickle (%s): rendered in the run's process, not in the figure helper", title, e)
        return None


def table_metadata(con, table: str, preview_rows: int = 10, order_by: Optional[str] = None) -> dict:
    """row_count + markdown preview of a warehouse table."""
    order = f" ORDER BY {order_by}" if order_by else ""
    preview = con.execute(f"SELECT * FROM {quote_ident(table)}{order} LIMIT {int(preview_rows)}").df()
    return {
        "row_count": dg.MetadataValue.int(int(row_count(con, table))),
        "preview": dg.MetadataValue.md(df_to_markdown(preview, preview_rows)),
    }
