"""common.metadata.fig_to_png_bytes draws a figure once and crops it: the same picture as
savefig(bbox_inches="tight") (same size, same pixels up to a sub-pixel shift of the crop)."""

import io

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from customer_assets.common import plotting  # noqa: F401  (Agg backend)
from customer_assets.common.metadata import fig_to_md, fig_to_png_bytes


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
