"""A matplotlib figure as PNG bytes, cropped to its tight bounding box: the rendering itself.

Imports matplotlib and numpy only, so that a helper process (common/side_process) can render a
figure made in the run's process; `common.metadata.fig_to_png_bytes` is the function steps call
(it takes turns with matplotlib and chooses the process).
"""

from __future__ import annotations

import io
import pickle

# zlib level of the PNGs written here (Pillow's default is 6): the decoded pixels are the same at
# every level; at 3 the 9 report images encode in ~0.05 instead of ~0.08 CPU s, ~2% more bytes
PNG_COMPRESS_LEVEL = 3


def close_figure(fig) -> None:
    """Close a figure made by pyplot (drops it from pyplot's figure list); a figure made without
    pyplot (common.plotting.plt.subplots) needs nothing."""
    import sys

    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None and getattr(fig.canvas, "manager", None) is not None:
        pyplot.close(fig)


def render_png(fig, dpi: int = 90) -> bytes:
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
    The PNG is written with zlib level PNG_COMPRESS_LEVEL: the same pixels, encoded faster.
    Not thread-safe (matplotlib is not): the caller takes turns (common/plotting)."""
    import matplotlib as mpl
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.layout_engine import PlaceHolderLayoutEngine

    buf = io.BytesIO()
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


def render_pickled(payload: bytes, dpi: int = 90) -> bytes:
    """`render_png` of a figure pickled by another process (common.metadata.fig_to_png_bytes).

    An unpickled figure has a bare canvas: it gets an Agg canvas, as `plotting.subplots` gives one,
    and the project's rcParams (plotting.STYLE), so that it renders to the same pixels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from customer_assets.common.plotting import apply_style

    apply_style()
    fig = pickle.loads(payload)
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    try:
        return render_png(fig, dpi)
    finally:
        close_figure(fig)  # a pyplot figure is registered with this process' pyplot when unpickled

