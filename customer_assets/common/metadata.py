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
    return png_to_md(fig_to_png_bytes(fig, dpi), alt)


def png_to_md(png: bytes, alt: str = "plot") -> str:
    """PNG bytes as an inline base64 image in markdown."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"


# zlib level of the PNGs written by fig_to_png_bytes (Pillow's default is 6): the decoded pixels are the
# same at every level; at 3 the 9 report images encode in ~0.05 instead of ~0.08 CPU s, ~2% more bytes
PNG_COMPRESS_LEVEL = 3


def close_figure(fig) -> None:
    """Close a figure made by pyplot (drops it from pyplot's figure list); a figure made without
    pyplot (common.plotting.plt.subplots) needs nothing."""
    import sys

    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None and getattr(fig.canvas, "manager", None) is not None:
        pyplot.close(fig)


def fig_to_png_bytes(fig, dpi: int = 90) -> bytes:
    """The figure as PNG bytes, cropped to its tight bounding box (as savefig(bbox_inches="tight")).

    savefig(bbox_inches="tight") lays the figure out twice (a draw without rendering to measure it,
    then the real draw on a new renderer, measuring every text again). Here the tight box is
    measured once on the canvas' own renderer (as tight_layout does) and, when it lies inside the
    figure, the figure is drawn once on that same renderer (text sizes cached) and the image
    cropped to the box; a box reaching outside the figure (labels wider than the margin) is saved
    with that explicit box. Same picture, up to the sub-pixel position of the crop.

    A figure after `fig.tight_layout()` keeps a PlaceHolderLayoutEngine, whose execute() does
    nothing: it is measured here too and saved with the explicit box (two layouts; savefig(
    bbox_inches="tight") made three for it), same pixels.
    The PNG is written with zlib level PNG_COMPRESS_LEVEL: the same pixels, encoded faster."""
    from customer_assets.common.plotting import FIGURE_COUNTED, figure_closed, figure_opened

    # matplotlib is not thread-safe (see common/plotting): held while rendering. A figure made by
    # plotting.subplots was counted open when it was made; any other is counted now. Closed below.
    if not getattr(fig, FIGURE_COUNTED, False):
        figure_opened()
    import matplotlib as mpl
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.layout_engine import PlaceHolderLayoutEngine

    buf = io.BytesIO()
    try:
        engine = fig.get_layout_engine()
        if not isinstance(fig.canvas, FigureCanvasAgg) or not (engine is None or type(engine) is PlaceHolderLayoutEngine):
            fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight",
                        pil_kwargs={"compress_level": PNG_COMPRESS_LEVEL})
            return buf.getvalue()
        fig.set_dpi(dpi)
        canvas = fig.canvas
        tight = fig.get_tightbbox(canvas.get_renderer())
        box = tight.padded(mpl.rcParams["savefig.pad_inches"])
        width, height = fig.get_size_inches()
        face = mpl.colors.to_rgba(fig.get_facecolor())
        if (tight.x0 < 0 or tight.y0 < 0 or tight.x1 > width or tight.y1 > height or face[3] != 1.0
                or engine is not None):
            # something is drawn outside the figure: only a new layout shows it. After tight_layout
            # (placeholder engine) this path too, so that the picture stays pixel-identical to
            # savefig(bbox_inches="tight"); without the engine savefig skips the extra draw it makes
            # for a layout engine (the placeholder's execute() does nothing, so nothing changes)
            saved = fig._layout_engine
            fig._layout_engine = None
            try:
                fig.savefig(buf, format="png", dpi=dpi, bbox_inches=box,
                            pil_kwargs={"compress_level": PNG_COMPRESS_LEVEL})
            finally:
                fig._layout_engine = saved
            return buf.getvalue()
        canvas.draw()
        image = np.asarray(canvas.buffer_rgba())
        left, top = int(round(box.x0 * dpi)), int(round((height - box.y1) * dpi))
        out = np.empty((int(box.height * dpi), int(box.width * dpi), 4), dtype=np.uint8)
        out[:] = np.round(np.asarray(face) * 255).astype(np.uint8)  # the padding outside the figure
        r0, r1 = max(top, 0), min(top + out.shape[0], image.shape[0])
        c0, c1 = max(left, 0), min(left + out.shape[1], image.shape[1])
        out[r0 - top:r1 - top, c0 - left:c1 - left] = image[r0:r1, c0:c1]
        mpl.image.imsave(buf, out, format="png", dpi=dpi, pil_kwargs={"compress_level": PNG_COMPRESS_LEVEL})
        return buf.getvalue()
    finally:
        close_figure(fig)
        figure_closed()


def table_metadata(con, table: str, preview_rows: int = 10, order_by: Optional[str] = None) -> dict:
    """row_count + markdown preview of a warehouse table."""
    order = f" ORDER BY {order_by}" if order_by else ""
    preview = con.execute(f"SELECT * FROM {quote_ident(table)}{order} LIMIT {int(preview_rows)}").df()
    return {
        "row_count": dg.MetadataValue.int(int(row_count(con, table))),
        "preview": dg.MetadataValue.md(df_to_markdown(preview, preview_rows)),
    }
