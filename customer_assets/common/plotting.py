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
# that run at once in threads (executor.py) therefore take turns, one figure at a time:
# - a figure made by `subplots` takes this lock, and the thread keeps it while any of its figures is
#   open; common.metadata.fig_to_png_bytes, which renders and closes a figure, gives it back after the
#   thread's last open figure (`figure_closed`), so another step draws between this step's figures
#   (a report that draws a figure per section no longer keeps every other step's figure waiting);
# - any use of pyplot itself (the `plt` stand-in below) keeps it until the step ends, as does a figure
#   never rendered: the executor calls `release_held` when the step's thread finishes.
_LOCK = threading.RLock()
_HELD = threading.local()  # .held: the thread has the lock; .figures: its open figures; .pinned: to the end
LOCK_TIMEOUT_S = 1800
FIGURE_COUNTED = "_customer_assets_counted_open"  # set on figures made by `subplots` (counted open)


# Set once, before the first figure: text is rasterised without snapping glyphs to the pixel grid
# (font hinting off). Most of a figure's rendering time is its text: a 30-bar chart with its labels
# renders in 0.16 s instead of 0.21 s; the charts look the same at the 80-90 dpi we draw at (PSI chart
# compared side by side; text a hair narrower).
STYLE = {"text.hinting": "none"}
_STYLED: list = []


def _take() -> None:
    if getattr(_HELD, "held", False):
        return
    if not _LOCK.acquire(timeout=LOCK_TIMEOUT_S):
        raise RuntimeError(f"matplotlib was held by another step for {LOCK_TIMEOUT_S} s: is a step stuck while drawing?")
    _HELD.held = True
    apply_style()  # under the lock: no figure is being drawn


def apply_style() -> None:
    """matplotlib's rcParams for every figure of the project (STYLE), set once."""
    if not _STYLED:
        import matplotlib

        matplotlib.rcParams.update(STYLE)
        _STYLED.append(True)


def hold_matplotlib() -> None:
    """Take matplotlib for the current thread until `release_held` (the step's end)."""
    _take()
    _HELD.pinned = True


def figure_opened() -> None:
    """A figure is being made on this thread: take matplotlib until it is closed (`figure_closed`)."""
    _take()
    _HELD.figures = getattr(_HELD, "figures", 0) + 1


def figure_closed() -> None:
    """A figure of this thread was rendered and closed: give matplotlib back if it was the last one
    open and the thread has not used pyplot itself."""
    _HELD.figures = max(getattr(_HELD, "figures", 0) - 1, 0)
    if not _HELD.figures and not getattr(_HELD, "pinned", False) and getattr(_HELD, "held", False):
        _HELD.held = False
        _LOCK.release()


def release_held() -> None:
    """Give matplotlib back if the current thread holds it (the executor, at the end of a step)."""
    _HELD.figures = 0
    _HELD.pinned = False
    if getattr(_HELD, "held", False):
        _HELD.held = False
        _LOCK.release()


def subplots(nrows: int = 1, ncols: int = 1, *, sharex=False, sharey=False, squeeze: bool = True,
             width_ratios=None, height_ratios=None, subplot_kw=None, gridspec_kw=None, **fig_kw):
    """pyplot.subplots' signature and result, without pyplot's global figure list."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure_opened()
    fig = Figure(**fig_kw)
    setattr(fig, FIGURE_COUNTED, True)
    FigureCanvasAgg(fig)
    axs = fig.subplots(nrows=nrows, ncols=ncols, sharex=sharex, sharey=sharey, squeeze=squeeze,
                       subplot_kw=subplot_kw, gridspec_kw=gridspec_kw, height_ratios=height_ratios,
                       width_ratios=width_ratios)
    return fig, axs


def plain_number(value, _pos=None) -> str:
    """A tick label as a plain number (1, 10, 100): a FuncFormatter that pickles (see common/side_process)."""
    return f"{value:g}"


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

__all__ = ["plt", "subplots", "plain_number", "hold_matplotlib", "figure_opened", "figure_closed", "release_held", "apply_style"]
