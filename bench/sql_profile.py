"""Where does a stage's time go? Time every SQL statement a logic function runs, outside Dagster.

Wraps a DuckDB connection in a proxy that times each `execute` / `sql` call, then runs ingestion
(and the quality checks, the star schema) on Online Retail x N with the project's own functions,
and prints the slowest statements with the calling function.

    python -m bench.sql_profile --n 20 [--top 25] [--keep-db PATH]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
import traceback
from pathlib import Path

import duckdb

from bench.run_pipeline import DEFAULT_DATA_DIR, REPO, prepare_data


def _rss_gb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 1e9


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class TimedConnection:
    """A DuckDB connection that records (seconds, cpu seconds, caller, sql, RSS after, peak RSS so far)
    for every statement."""

    def __init__(self, con: duckdb.DuckDBPyConnection, log: list):
        self._con = con
        self._log = log

    def _timed(self, fn, sql, *args, **kwargs):
        caller = next(
            (f"{Path(f.filename).parent.name}/{Path(f.filename).name}:{f.lineno} {f.name}"
             for f in reversed(traceback.extract_stack()[:-2]) if "customer_assets" in f.filename),
            "?",
        )
        t0, c0 = time.perf_counter(), _cpu()
        out = fn(sql, *args, **kwargs)
        self._log.append((time.perf_counter() - t0, _cpu() - c0, caller, " ".join(str(sql).split()),
                          _rss_gb(), _peak_gb()))
        return self

    def execute(self, sql, *args, **kwargs):
        self._timed(self._con.execute, sql, *args, **kwargs)
        return self

    def executemany(self, sql, *args, **kwargs):
        self._timed(self._con.executemany, sql, *args, **kwargs)
        return self

    def sql(self, sql, *args, **kwargs):  # relations are lazy: time only their creation
        return self._con.sql(sql, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._con, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._con.close()


def report(log: list, top: int, title: str) -> None:
    total = sum(x[0] for x in log)
    print(f"\n{title}: {len(log)} statements, {total:.1f} s wall, {sum(x[1] for x in log):.1f} s CPU")
    for wall, cpu, caller, sql, rss, peak in sorted(log, key=lambda x: -x[0])[:top]:
        print(f"  {wall:7.2f} s  cpu {cpu:6.2f}  RSS after {rss:5.2f} GB (peak so far {peak:5.2f})  {caller}\n"
              f"           {sql[:220]}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--keep-db", type=Path, help="write the warehouse here instead of a temp file")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--memory-limit", help="DuckDB memory_limit, e.g. 2GB (default: DuckDB's, 80%% of RAM)")
    ap.add_argument("--only-ingest", action="store_true", help="stop after ingestion")
    args = ap.parse_args(argv)
    from customer_assets.ingestion.pipeline import ingest, reconciliation
    from customer_assets.ingestion.quality import run_quality
    from customer_assets.warehouse.star import STAR_SQL, build_table

    source = prepare_data(args.n, args.data_dir)[0]["path"]
    mapping = str(REPO / "data" / "online_retail_mapping.json")
    tmp = tempfile.TemporaryDirectory()
    db = args.keep_db or Path(tmp.name) / "profile.duckdb"
    with tempfile.TemporaryDirectory() as landing:
        log: list = []
        config = {"memory_limit": args.memory_limit} if args.memory_limit else {}
        con = TimedConnection(duckdb.connect(str(db), config=config), log)
        t0 = time.perf_counter()
        ingest(con, source, mapping, landing)
        report(log, args.top, f"ingest (N={args.n}, memory_limit {args.memory_limit or 'default'}) "
                              f"{time.perf_counter() - t0:.1f} s, peak RSS {_peak_gb():.2f} GB")
        if args.only_ingest:
            con._con.close()
            tmp.cleanup()
            return 0
        log.clear()
        t0 = time.perf_counter()
        reconciliation(con)
        report(log, 5, f"reconciliation {time.perf_counter() - t0:.1f} s")
        log.clear()
        t0 = time.perf_counter()
        run_quality(con)
        report(log, 5, f"run_quality (SQL part; the rest is GE) {time.perf_counter() - t0:.1f} s")
        log.clear()
        for name in STAR_SQL:
            build_table(con, name)
        report(log, 10, "star schema")
        con._con.close()
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
