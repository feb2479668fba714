"""Time the star-schema and metric SQL (customer_assets.warehouse.star.STAR_SQL) per table.

Ingests Online Retail (or Online Retail x N, `--n`) into a temporary DuckDB file with the real
ingestion code, then, `--repeat` times per table, reporting the best and the median:
- build: what the asset does in a full run (`star.build_table`: a table, or a view for fact_sales),
  its own state forgotten before each repeat so it is built again; the intermediates in `star_state`
  that several tables are computed from are timed once, as their own row (the first asset pays it);
- query: computing the whole result (`CREATE TEMP TABLE AS <the SQL>`), i.e. what a reader of a
  view pays. Target: < 2 s per table on the full Online Retail.

    python -m bench.metric_queries [--n 20] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from bench import generate
from bench.run_pipeline import DEFAULT_DATA_DIR, REPO, RESULTS_DIR, prepare_data

TARGET_S = 2.0


def build_cleaned(db_path: Path, source: str) -> tuple[int, float]:
    """Ingest `source` into `db_path`; return (cleaned rows, seconds)."""
    from customer_assets.ingestion.pipeline import ingest

    t0 = time.perf_counter()
    with duckdb.connect(str(db_path)) as con, tempfile.TemporaryDirectory() as landing:
        ingest(con, source, str(REPO / "data" / "online_retail_mapping.json"), landing)
        rows = con.execute("SELECT count(*) FROM cleaned_transactions").fetchone()[0]
    return rows, time.perf_counter() - t0


def _timed(fn, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def time_queries(db_path: Path, repeat: int) -> list[dict]:
    from customer_assets.warehouse import star

    from customer_assets.common.data_version import data_fingerprint

    out = []
    with duckdb.connect(str(db_path)) as con:
        con.execute("SET enable_progress_bar = false")

        def full_state():
            con.execute(f"DROP SCHEMA IF EXISTS {star.STATE} CASCADE")
            star.sync_intermediates(con, data_fingerprint(con))

        state = _timed(full_state, repeat)
        out.append({"table": f"{star.STATE} (intermediates)", "rows": None, "view": False,
                    "build_median_s": statistics.median(state), "best_s": min(state),
                    "median_s": statistics.median(state), "build_runs": state, "runs": state})

        def build(name):
            con.execute(f"DELETE FROM {star.BUILT} WHERE name = ?", [name])
            star.build_table(con, name)

        for name, sql in star.STAR_SQL.items():
            build_runs = _timed(lambda: build(name), repeat)
            query = _timed(lambda: con.execute(f"CREATE OR REPLACE TEMP TABLE __bench_metric AS {sql}"), repeat)
            rows = con.execute("SELECT count(*) FROM __bench_metric").fetchone()[0]
            con.execute("DROP TABLE __bench_metric")
            out.append({"table": name, "rows": rows, "view": name in getattr(star, "VIEWS", ()),
                        "build_median_s": statistics.median(build_runs), "best_s": min(query),
                        "median_s": statistics.median(query), "build_runs": build_runs, "runs": query})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Time the star-schema / metric SQL per table.")
    ap.add_argument("--n", type=int, default=1, help="Online Retail replicas (default 1: the original)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    args = ap.parse_args(argv)
    source = generate.SOURCE if args.n == 1 else Path(prepare_data(args.n, args.data_dir)[0]["path"])
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "metrics.duckdb"
        rows, ingest_s = build_cleaned(db, str(source))
        print(f"cleaned_transactions: {rows:,} rows from {source.name} (ingested in {ingest_s:.1f} s)")
        results = time_queries(db, args.repeat)
    print(f"{'table':<20} {'rows':>10} {'build s':>8} {'query best s':>13} {'query median s':>15}"
          f"  target < {TARGET_S:g} s")
    for r in results:
        flag = "ok" if r["median_s"] < TARGET_S else "SLOW"
        kind = " (view)" if r["view"] else ""
        print(f"{r['table'] + kind:<20} {r['rows'] or 0:>10,} {r['build_median_s']:8.3f} {r['best_s']:13.3f} "
              f"{r['median_s']:15.3f}  {flag}")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"metrics_x{args.n}_{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.write_text(json.dumps({"n": args.n, "cleaned_rows": rows, "ingest_s": ingest_s,
                               "queries": results}, indent=2))
    print(f"results -> {out}")
    return 0 if all(r["median_s"] < TARGET_S for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
