import subprocess
import sys


def test_plt_loads_pyplot_with_agg_on_first_use_only():
    code = (
        "import sys\n"
        "from customer_assets.common.plotting import plt\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported at import time'\n"
        "fig, ax = plt.subplots()\n"
        "ax.plot([1, 2, 3])\n"
        "plt.close(fig)\n"
        "assert 'matplotlib.pyplot' in sys.modules\n"
        "print(plt.get_backend())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().lower() == "agg"


# --- steps take turns with matplotlib, one figure at a time -------------------------------------

import threading  # noqa: E402

from customer_assets.common import plotting  # noqa: E402
from customer_assets.common.metadata import fig_to_png_bytes  # noqa: E402


class OtherStep:
    """A thread that makes a figure as soon as it can; `.drew` is set once it has its figure."""

    def __init__(self):
        self.drew = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            fig, ax = plotting.subplots()
            self.drew.set()
            ax.plot([1, 2])
            fig_to_png_bytes(fig)
        finally:
            plotting.release_held()
            self.done.set()


def test_another_step_draws_once_this_steps_last_open_figure_is_rendered():
    try:
        first, ax1 = plotting.subplots()
        second, ax2 = plotting.subplots()
        other = OtherStep()
        assert not other.drew.wait(0.3), "drew while this thread had a figure open"
        ax1.plot([1, 2, 3])
        fig_to_png_bytes(first)
        assert not other.drew.wait(0.3), "drew while this thread still had its second figure open"
        ax2.plot([3, 2, 1])
        fig_to_png_bytes(second)
        # this thread's step has not ended (no release_held): the other step draws all the same
        assert other.drew.wait(5) and other.done.wait(5)
    finally:
        plotting.release_held()


def test_a_step_that_used_pyplot_itself_keeps_matplotlib_to_its_end():
    try:
        plotting.plt.get_backend()  # pyplot's global state: held until the step ends
        fig, ax = plotting.subplots()
        other = OtherStep()
        fig_to_png_bytes(fig)
        assert not other.drew.wait(0.3), "drew while a pyplot user's step was still running"
        plotting.release_held()
        assert other.drew.wait(5) and other.done.wait(5)
    finally:
        plotting.release_held()


def test_a_figure_left_unrendered_keeps_matplotlib_until_the_step_ends():
    try:
        plotting.subplots()
        other = OtherStep()
        assert not other.drew.wait(0.3)
        plotting.release_held()
        assert other.drew.wait(5) and other.done.wait(5)
    finally:
        plotting.release_held()


def test_first_figure_sets_the_style():
    code = (
        "import matplotlib\n"
        "from customer_assets.common import plotting\n"
        "assert matplotlib.rcParams['text.hinting'] != 'none'\n"
        "fig, ax = plotting.subplots()\n"
        "print(matplotlib.rcParams['text.hinting'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "none"
