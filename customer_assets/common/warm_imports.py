"""Import the heavy libraries of later steps on a background thread while a step waits on DuckDB.

A run executes its steps one after another in one process. The ingestion step spends seconds inside
DuckDB, which releases the GIL, while the steps after it start by importing great_expectations
(about 2.4 s) and matplotlib (0.7 s). Importing them on a daemon thread during ingestion takes that
time off the run's critical path (the weekly refresh at N=20: the GE suite step 2.45 -> ~0.3 s).

Safe by Python's import locks: a step that imports a module the thread is still importing waits for
it to finish, and then uses the fully initialised module. An import that fails here is ignored: the
step that needs the module imports it again and reports the real error where it belongs.
"""

from __future__ import annotations

import importlib
import sys
import threading

# what the steps after ingestion import first, in the order they need it
AFTER_INGESTION = (
    "great_expectations",
    "great_expectations.expectations",
    "customer_assets.common._pyplot",    # matplotlib.pyplot with the Agg backend
    "sklearn.cluster",
    "sklearn.linear_model",
    "xgboost",
    "lifetimes",
    "mlxtend.frequent_patterns",
)

_lock = threading.Lock()
_requested: set = set()


def warm(modules=AFTER_INGESTION) -> threading.Thread | None:
    """Start importing `modules` (those not imported or requested yet) on a daemon thread."""
    with _lock:
        todo = [m for m in modules if m not in sys.modules and m not in _requested]
        _requested.update(todo)
    if not todo:
        return None
    thread = threading.Thread(target=_import_all, args=(todo,), name="customer_assets-warm-imports", daemon=True)
    thread.start()
    return thread


def _import_all(modules) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the step that needs it raises the real error
            pass
    # the libraries' objects live as long as the process: no garbage collection needs to look at
    # them again (see executor.collect_garbage_less)
    import gc

    gc.collect(1)  # the young garbage of the moment (the older is collected before the run starts)
    gc.freeze()
