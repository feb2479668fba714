"""How many cores this process may use, and how many threads a model fit may use.

`available_cores`: the CPUs the process may run on, capped by a container's CPU quota. The
executor's steps at a time, DuckDB's threads (resources._ThreadShares) and the helper processes
(side_process) are sized by it.

`fit_threads`: on an idle machine a fit can use every core (XGBoost on 2 threads: 0.68 s wall
against 1.18 s on one, identical predictions). On a machine
that is already busy, XGBoost's threads spin waiting for each other (measured: 2 threads 6 s CPU /
23 s wall against 0.2 s on one thread), so then a fit uses one thread. The thread count changes
speed only, never the fitted model (XGBoost's hist method is deterministic across thread counts).
"""

from __future__ import annotations

import math
import os
from typing import Optional


def available_cores() -> int:
    """The cores this process may use: its CPU affinity on Linux, capped by its cgroup's CPU quota
    (rounded up) when it has one."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_limit()
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


CGROUP_ROOT = "/sys/fs/cgroup"
PROC_CGROUP = "/proc/self/cgroup"


def cgroup_cpu_limit(root: str = CGROUP_ROOT, proc_cgroup: str = PROC_CGROUP) -> Optional[float]:
    """The CPUs' worth of time this process's cgroup may use (quota / period), or None without a quota.

    A container's CPU limit (`docker run --cpus`, a Kubernetes limit) is such a quota: the process
    still sees every core of the host in its affinity, but gets only quota/period of CPU time, so
    three steps and their DuckDB threads sized by the host's cores would fight over one or two.
    cgroup v2: `cpu.max` ("max 100000" or "150000 100000") of the process's cgroup and of every
    ancestor, the smallest counting; v1: `cpu.cfs_quota_us` / `cpu.cfs_period_us` of the cpu
    controller's group and ancestors (-1: none). Unreadable files count as no limit."""
    try:
        with open(proc_cgroup) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":  # v2: "0::/path", the unified hierarchy (its own mount in hybrid mode)
            for base in (root, os.path.join(root, "unified")):
                limits += [_v2_limit(d) for d in _dirs_up(base, path)]
        elif "cpu" in controllers.split(","):
            limits += [_v1_limit(d) for d in _dirs_up(os.path.join(root, controllers), path)]
            limits += [_v1_limit(d) for d in _dirs_up(os.path.join(root, "cpu"), path)]
    limits = [x for x in limits if x is not None]
    return min(limits) if limits else None


def _dirs_up(base: str, path: str):
    """base/path, then each parent up to base itself."""
    parts = [p for p in path.strip("/").split("/") if p]
    for i in range(len(parts), -1, -1):
        yield os.path.join(base, *parts[:i])


def _read(path: str) -> Optional[str]:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _v2_limit(directory: str) -> Optional[float]:
    text = _read(os.path.join(directory, "cpu.max"))
    if not text:
        return None
    quota, _, period = text.partition(" ")
    try:
        return None if quota == "max" else int(quota) / int(period or 100000)
    except ValueError:
        return None


def _v1_limit(directory: str) -> Optional[float]:
    quota, period = _read(os.path.join(directory, "cpu.cfs_quota_us")), _read(os.path.join(directory, "cpu.cfs_period_us"))
    try:
        return int(quota) / int(period) if quota and period and int(quota) > 0 and int(period) > 0 else None
    except ValueError:
        return None


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
