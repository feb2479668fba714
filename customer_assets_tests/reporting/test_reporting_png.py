"""common.metadata.fig_to_png_bytes draws a figure once and crops it: the same picture as
savefig(bbox_inches="tight") (same size, same pixels up to a sub-pixel shift of the crop)."""

import io

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from customer_assets.common import plotting
from customer_assets.common.metadata import fig_to_md, fig_to_png_bytes

# the project's style, as every figure of a run has it (the first figure sets it): the references
# below are drawn by pyplot directly, which would otherwise draw before it is set
plotting.apply_style()


def _bars(long_labels: bool):
    fig, ax = plt.subplots(figsize=(6, 3))
    labels = [("a rather long label number %d that overflows the margin" if long_labels else "f%d") % i
              for i in range(8)]
    ax.barh(labels, np.arange(8.0))
    ax.set_title("title")
    return fig


def _two_panels():
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3))
    a.bar(["High", "Medium", "Low"], [3, 1, 2])
    b.plot([0, 1], [0, 1], "--", label="diagonal")
    b.legend()
    fig.tight_layout()
    return fig


def _constrained():
    fig, ax = plt.subplots(figsize=(4, 3), layout="constrained")
    ax.plot([1, 2, 3])
    return fig


def _reference(make, dpi):
    buf = io.BytesIO()
    fig = make()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return np.asarray(Image.open(buf).convert("RGBA"))


@pytest.mark.parametrize("make", [lambda: _bars(False), lambda: _bars(True), _two_panels, _constrained])
@pytest.mark.parametrize("dpi", [80, 90])
def test_same_picture_as_savefig_tight(make, dpi):
    expected = _reference(make, dpi)
    fig = make()
    got = np.asarray(Image.open(io.BytesIO(fig_to_png_bytes(fig, dpi))).convert("RGBA"))
    assert not plt.fignum_exists(fig.number)  # closed, as before
    assert got.shape == expected.shape
    # identical, or the same drawing shifted by less than a pixel: few pixels differ
    assert (np.abs(got.astype(int) - expected.astype(int)).sum(axis=2) > 0).mean() < 0.1


def test_markdown_image():
    md = fig_to_md(_bars(False), "bars")
    assert md.startswith("![bars](data:image/png;base64,") and md.endswith(")")


def test_tight_layout_figure_is_pixel_identical_to_savefig_tight():
    # after tight_layout the figure keeps a placeholder layout engine: saved with the measured box
    # (one layout fewer than savefig(bbox_inches="tight")), the very same pixels
    for dpi in (80, 90):
        expected = _reference(_two_panels, dpi)
        fig = _two_panels()
        engine = fig.get_layout_engine()
        assert type(engine).__name__ == "PlaceHolderLayoutEngine"
        got = np.asarray(Image.open(io.BytesIO(fig_to_png_bytes(fig, dpi))).convert("RGBA"))
        assert fig.get_layout_engine() is engine  # restored after the save
        assert got.shape == expected.shape and (got == expected).all()


def _draw_on(fig, ax):
    ax.barh([f"label {i}" for i in range(6)], np.arange(6.0))
    ax.set_title("bars")
    fig.tight_layout()
    return fig


def test_plotting_subplots_makes_the_pyplot_picture_without_pyplot_state():
    from customer_assets.common.plotting import plt as lazy_plt

    before = plt.get_fignums()
    fig, ax = lazy_plt.subplots(figsize=(6, 3))
    assert plt.get_fignums() == before  # not in pyplot's figure list, not the "current figure"
    got = fig_to_png_bytes(_draw_on(fig, ax), 80)
    ref_fig, ref_ax = plt.subplots(figsize=(6, 3))
    expected = fig_to_png_bytes(_draw_on(ref_fig, ref_ax), 80)
    assert not plt.fignum_exists(ref_fig.number)
    a = np.asarray(Image.open(io.BytesIO(got)))
    b = np.asarray(Image.open(io.BytesIO(expected)))
    assert a.shape == b.shape and (a == b).all()
    # the subplot grid arguments as pyplot's
    fig2, axes = lazy_plt.subplots(2, 3, figsize=(4, 3), sharex=True)
    assert axes.shape == (2, 3) and fig2.get_size_inches().tolist() == [4.0, 3.0]


def test_figures_drawn_in_two_threads_are_each_their_own():
    from concurrent.futures import ThreadPoolExecutor

    from customer_assets.common.plotting import plt as lazy_plt
    from customer_assets.common.plotting import release_held

    def draw(n):
        try:
            fig, ax = lazy_plt.subplots(figsize=(4, 2))
            ax.bar([str(i) for i in range(n)], np.arange(n) + 1.0)
            return np.asarray(Image.open(io.BytesIO(fig_to_png_bytes(fig, 60))))
        finally:
            release_held()  # as the executor does at the end of a step

    expected = {n: draw(n) for n in (3, 7)}
    with ThreadPoolExecutor(2) as pool:
        got = list(pool.map(draw, [3, 7] * 6))
    for n, img in zip([3, 7] * 6, got):
        assert img.shape == expected[n].shape and (img == expected[n]).all()
