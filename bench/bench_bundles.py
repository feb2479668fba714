"""Bundles stage at scale: Online Retail replicated N times (default 20), peak memory and time.

1. `bench.generate.replicate(N)` writes the replica as Parquet (every replica has its own order
   and customer ids), the real ingestion loads it into a temporary DuckDB file;
2. a fresh child process runs the stage's plain functions on that file, exactly as the assets do:
   synthetic inventory for the replica -> dead_stock (inventory method) -> association_rules at the
   default settings -> bundle_recommendations, then reports its own peak RSS
   (getrusage ru_maxrss and /proc/self/status VmHWM: Python, pandas, scipy and DuckDB together).

    .venv/bin/python -m bench.bench_bundles [--n 20] [--keep DIR] [--min-support 0.01]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _vm_hwm_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_stage(db: str, min_support: float | None) -> dict:
    """The child: the stage's logic on `db` (a DuckDB file with cleaned_transactions)."""
    import duckdb

    from customer_assets.bundles.dead_stock import compute_dead_stock, write_dead_stock
    from customer_assets.bundles.recommendations import build_recommendations, write_recommendations
    from customer_assets.bundles.rules import build_rules, write_rules
    from customer_assets.bundles.synthetic_inventory import synthetic_inventory, write_inventory_csv
    from customer_assets.common.db import resolve_as_of
    from customer_assets.settings import AnalyticsSettings

    s = AnalyticsSettings()
    ms = min_support if min_support is not None else s.min_support
    out: dict = {"rss_after_imports_mb": _vm_hwm_mb()}
    con = duckdb.connect(db)
    out["lines"], out["orders"] = con.execute(
        "SELECT count(*), count(DISTINCT order_id) FROM cleaned_transactions").fetchone()
    as_of = resolve_as_of(con, None)
    t = time.perf_counter()
    inv_path = Path(db).with_name("inventory_SYNTHETIC.csv")
    write_inventory_csv(synthetic_inventory(con, as_of, s.dead_stock_window_days), inv_path)
    dead = compute_dead_stock(con, str(inv_path), as_of, s.dead_stock_ratio, s.dead_stock_window_days,
                              s.dead_stock_baseline_days)
    write_dead_stock(con, dead.frame)
    out["dead_stock_s"] = round(time.perf_counter() - t, 2)
    out["dead_stock_products"] = int(dead.frame["is_dead_stock"].sum())
    t = time.perf_counter()
    res = build_rules(con, ms, s.min_confidence, s.min_lift, s.max_itemset_len, as_of=as_of,
                      min_orders=s.rules_min_orders)
    write_rules(con, res.rules)
    out["rules_s"] = round(time.perf_counter() - t, 2)
    out["rules"] = len(res.rules)
    out["mining"] = [vars(st) for st in res.stats]
    out["rss_after_rules_mb"] = _vm_hwm_mb()
    t = time.perf_counter()
    recs = build_recommendations(con, s.bundle_partners, s.dead_stock_ratio, s.bundle_discount_min_pct,
                                 s.bundle_discount_max_pct, s.also_bought_top_products, as_of,
                                 s.bundle_pair_fallback, s.rules_min_orders, s.min_confidence, s.min_lift)
    write_recommendations(con, recs)
    out["recommendations_s"] = round(time.perf_counter() - t, 2)
    out["recommendations"] = len(recs)
    con.close()
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["vm_hwm_mb"] = _vm_hwm_mb()
    return out


def prepare(n: int, db: Path) -> None:
    """Replica Parquet -> real ingestion -> `db` (cleaned_transactions of the replica)."""
    import duckdb

    from bench.generate import replicate
    from customer_assets import paths
    from customer_assets.ingestion.pipeline import ingest

    rep = replicate(n, db.parent)
    print(f"replica: {rep['rows']:,} source lines in {rep['seconds']:.0f} s", flush=True)
    t = time.perf_counter()
    con = duckdb.connect(str(db))
    ingest(con, source=rep["path"], mapping_path=paths.DEFAULT_MAPPING, landing_dir=None)
    con.close()
    os.remove(rep["path"])
    print(f"ingested in {time.perf_counter() - t:.0f} s", flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--keep", type=Path, help="work folder to keep (default: a temp folder, deleted)")
    ap.add_argument("--min-support", type=float, default=None, help="default: AnalyticsSettings().min_support")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--prepare", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(run_stage(args.child, args.min_support), default=str))
        return
    if args.prepare:
        prepare(args.n, Path(args.prepare))
        return

    tmp = None if args.keep else tempfile.TemporaryDirectory(prefix="bench_bundles_")
    work = args.keep or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    db = work / f"retail_x{args.n}.duckdb"
    root = Path(__file__).resolve().parents[1]
    if not db.exists():
        # In its own process: ru_maxrss survives exec, so a child started from a parent that had
        # ingested 10M lines would report the parent's peak as its own.
        subprocess.run([sys.executable, "-m", "bench.bench_bundles", "--n", str(args.n), "--prepare", str(db)],
                       check=True, cwd=root)
    cmd = [sys.executable, "-m", "bench.bench_bundles", "--child", str(db)]
    if args.min_support is not None:
        cmd += ["--min-support", str(args.min_support)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=root)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"stage run failed (exit {proc.returncode})")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    m = res["mining"][0]
    print(f"Online Retail x{args.n}: {res['lines']:,} cleaned lines, {res['orders']:,} orders")
    print(f"  dead_stock      {res['dead_stock_s']:7.1f} s  {res['dead_stock_products']:,} dead-stock products")
    print(f"  rules           {res['rules_s']:7.1f} s  {res['rules']:,} rules; {m['n_items_frequent']} of "
          f"{m['n_items_total']} items reach min support ({m['min_count']:,} orders); "
          f"{m['n_matrix_rows']:,} orders with 2+ of them ({m['n_matrix_nonzeros']:,} memberships) in "
          f"{m['n_distinct_baskets']:,} distinct baskets")
    print(f"  recommendations {res['recommendations_s']:7.1f} s  {res['recommendations']:,} rows")
    print(f"  child process wall {wall:.1f} s (incl. imports)")
    peak = max(res["peak_rss_mb"], res["vm_hwm_mb"])
    print(f"  peak RSS {peak:.0f} MB (VmHWM {res['vm_hwm_mb']:.0f} MB, ru_maxrss {res['peak_rss_mb']:.0f} MB; "
          f"{res['rss_after_imports_mb']:.0f} MB after imports, {res['rss_after_rules_mb']:.0f} MB after rules)")
    print(f"  under 4 GB: {peak < 4096}")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
