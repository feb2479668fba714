"""How many threads a model fit may use.

Pipeline steps run one at a time in one process, so on an idle machine a fit can use every core
(XGBoost on 2 threads: 0.68 s wall against 1.18 s on one, identical predictions). On a machine
that is already busy, XGBoost's threads spin waiting for each other (measured: 2 threads 6 s CPU /
23 s wall against 0.2 s on one thread), so then a fit uses one thread. The thread count changes
speed only, never the fitted model (XGBoost's hist method is deterministic across thread counts).
"""

from __future__ import annotations

import os


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity on Linux)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def fit_threads() -> int:
    """All cores available to this process when the machine is otherwise idle, else 1."""
    cores = available_cores()
    if cores <= 1:
        return 1
    try:
        load = os.getloadavg()[0]
    except OSError:
        return 1
    # this process itself accounts for about one unit of load while it runs
    return cores if load < cores - 0.5 else 1
