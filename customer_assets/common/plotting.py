"""matplotlib without a display (Dagster runs headless), loaded on first use.

Asset modules write `from customer_assets.common.plotting import plt` at the top. Importing pyplot
there put ~0.35 s into every load of the code location (each CLI run, the webserver's code server,
every test process) before any step had drawn anything. `plt` is a stand-in that imports pyplot
with the Agg backend (common/_pyplot.py) on its first use and then behaves as the module; in a run,
common/warm_imports has usually loaded it already, during ingestion.
"""

import importlib


class _Pyplot:
    """Forwards every attribute to matplotlib.pyplot, importing it on the first access."""

    _module = None

    def __getattr__(self, name):
        module = type(self)._module
        if module is None:
            module = type(self)._module = importlib.import_module("customer_assets.common._pyplot").pyplot
        return getattr(module, name)

    def __repr__(self) -> str:
        return "<matplotlib.pyplot, loaded on first use>"


plt = _Pyplot()

__all__ = ["plt"]
