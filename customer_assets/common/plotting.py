"""matplotlib without a display (Dagster runs headless), loaded on first use.

Asset modules write `from customer_assets.common.plotting import plt` at the top. Importing pyplot
there put ~0.35 s into every load of the code location (each CLI run, the webserver's code server,
every test process) before any step had drawn anything. `plt` is a stand-in that imports pyplot
with the Agg backend (common/_pyplot.py) on its first use and then behaves as the module; in a run,
common/warm_imports has usually loaded it already, during ingestion.

`plt.subplots` is the exception: it makes the figure without pyplot (a `Figure` on its own Agg
canvas, as pyplot's Agg backend makes it, so the same picture). pyplot keeps one global list of
open figures and a "current figure"; steps that run at the same time in threads of one process
would share them (figure numbers, `plt.close`), a figure of its own shares nothing. Such a figure
needs no `plt.close` (common.metadata.fig_to_png_bytes closes only pyplot's figures); draw on the
returned `fig` / `ax` objects, never through pyplot's current-figure functions (`plt.title`, ...).
"""

import importlib
import threading

# matplotlib is not thread-safe even across separate figures: font objects, text-size caches and the
# mathtext parser are shared (two steps drawing at once broke a tick label's mathtext parse). Steps
# that run at once in threads (executor.py) therefore take turns: a step's first use of matplotlib
# through this module (or common.metadata's PNG rendering) takes this lock, and the step keeps it
# until it ends (the executor calls `release_held` when the step's thread finishes), so one step's
# figures are finished before another step draws. Most steps draw at their end, after their queries.
_LOCK = threading.RLock()
_HELD = threading.local()
LOCK_TIMEOUT_S = 1800


def hold_matplotlib() -> None:
    """Take matplotlib for the current thread (once; kept until `release_held`)."""
    if getattr(_HELD, "held", False):
        return
    if not _LOCK.acquire(timeout=LOCK_TIMEOUT_S):
        raise RuntimeError(f"matplotlib was held by another step for {LOCK_TIMEOUT_S} s: is a step stuck while drawing?")
    _HELD.held = True


def release_held() -> None:
    """Give matplotlib back if the current thread holds it (the executor, at the end of a step)."""
    if getattr(_HELD, "held", False):
        _HELD.held = False
        _LOCK.release()


def subplots(nrows: int = 1, ncols: int = 1, *, sharex=False, sharey=False, squeeze: bool = True,
             width_ratios=None, height_ratios=None, subplot_kw=None, gridspec_kw=None, **fig_kw):
    """pyplot.subplots' signature and result, without pyplot's global figure list."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    hold_matplotlib()
    fig = Figure(**fig_kw)
    FigureCanvasAgg(fig)
    axs = fig.subplots(nrows=nrows, ncols=ncols, sharex=sharex, sharey=sharey, squeeze=squeeze,
                       subplot_kw=subplot_kw, gridspec_kw=gridspec_kw, height_ratios=height_ratios,
                       width_ratios=width_ratios)
    return fig, axs


class _Pyplot:
    """Forwards every attribute to matplotlib.pyplot, importing it on the first access
    (except `subplots`, which needs no pyplot: see the module docstring)."""

    _module = None
    subplots = staticmethod(subplots)

    def __getattr__(self, name):
        hold_matplotlib()
        module = type(self)._module
        if module is None:
            module = type(self)._module = importlib.import_module("customer_assets.common._pyplot").pyplot
        return getattr(module, name)

    def __repr__(self) -> str:
        return "<matplotlib.pyplot, loaded on first use>"


plt = _Pyplot()

__all__ = ["plt", "subplots", "hold_matplotlib", "release_held"]
