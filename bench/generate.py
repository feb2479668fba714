"""Online Retail replicated N times, written as Parquet by DuckDB (streaming, no pandas).

Replica k (0..N-1) of every source line:
- customer ids: CustomerID + k * offset (offset = the next power of ten above the largest id, 100000
  for Online Retail), so every replica has its own customers with the same purchase histories;
  missing customer ids stay missing (they are quarantined like the originals);
- order ids: InvoiceNo + "-<k>" for k >= 1 (replica 0 is the original), so the cancellation
  prefix "C" of cancelled invoices is kept;
- dates: shifted by (k mod 7) days and wrapped inside the original span [first, last] line date,
  so every replica stays within 2010-12-01 .. 2011-12-09 while replicas are not identical in time;
- products, quantities, prices, countries: unchanged (the real shape of baskets and prices).
Columns and types are those of the shipped file, so the shipped column mapping applies as is.

`refresh_week` writes one extra week after the span: the original last 7 days of lines moved 7 days
later (strictly after the last date), replicated with the same customer ids as `replicate`
(so mostly existing customers) and new order ids (InvoiceNo + "-w<k>").

    python -m bench.generate --n 20 --out /tmp/retail_x20 [--week]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import duckdb

from customer_assets import paths

SOURCE = Path(paths.DEFAULT_SOURCE)
TS_FORMAT = "%Y-%m-%d %H:%M:%S"
SHIFT_CYCLE_DAYS = 7


def _bounds(con: duckdb.DuckDBPyConnection, source: Path) -> tuple[int, int, int, int]:
    """(first line epoch second, last line epoch second, customer id offset, source rows)."""
    lo, hi, max_id, rows = con.execute(
        "SELECT epoch(min(TRY_CAST(InvoiceDate AS TIMESTAMP)))::BIGINT, "
        "epoch(max(TRY_CAST(InvoiceDate AS TIMESTAMP)))::BIGINT, max(CustomerID), count(*) "
        "FROM read_parquet(?)",
        [str(source)],
    ).fetchone()
    offset = 10 ** len(str(int(max_id)))
    return int(lo), int(hi), offset, int(rows)


def _copy(con: duckdb.DuckDBPyConnection, select_sql: str, params: list, out_file: Path) -> int:
    out_file.parent.mkdir(parents=True, exist_ok=True)
    con.execute(
        f"COPY ({select_sql}) TO '{out_file}' (FORMAT parquet)",
        params,
    )
    return con.execute("SELECT count(*) FROM read_parquet(?)", [str(out_file)]).fetchone()[0]


def _connect(threads: int | None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.execute("SET preserve_insertion_order = false")  # line order is irrelevant; less memory
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    return con


def replicate(n: int, out_dir: Path, source: Path = SOURCE, threads: int | None = None) -> dict:
    """Write `out_dir/online_retail_x<n>.parquet`; return {"path", "rows", "seconds"}."""
    if n < 1:
        raise ValueError("n must be >= 1")
    t0 = time.perf_counter()
    con = _connect(threads)
    lo, hi, offset, _ = _bounds(con, source)
    span = hi - lo + 1  # seconds; a shifted time wraps back to the first day of the span
    # The 7 shifted date strings are computed once per source line (541,909 rows), not per
    # replica: strftime on every output row is the slowest part of the copy otherwise.
    shifted = ",\n".join(
        f"CASE WHEN ep IS NULL THEN InvoiceDate ELSE strftime(to_timestamp("
        f"{lo} + (ep - {lo} + {d * 86400}) % {span})::TIMESTAMP, '{TS_FORMAT}') END AS d{d}"
        for d in range(SHIFT_CYCLE_DAYS)
    )
    con.execute(
        f"""CREATE TEMP TABLE src AS
            SELECT * EXCLUDE (ep), {shifted}
            FROM (SELECT *, epoch(TRY_CAST(InvoiceDate AS TIMESTAMP))::BIGINT AS ep
                  FROM read_parquet(?))""",
        [str(source)],
    )
    pick = " ".join(f"WHEN {d} THEN d{d}" for d in range(1, SHIFT_CYCLE_DAYS))
    sql = f"""
        SELECT
            CASE WHEN k = 0 THEN InvoiceNo ELSE InvoiceNo || '-' || k END AS InvoiceNo,
            StockCode, Description, Quantity,
            CASE k % {SHIFT_CYCLE_DAYS} {pick} ELSE InvoiceDate END AS InvoiceDate,
            UnitPrice,
            CustomerID + k * {offset} AS CustomerID,
            Country
        FROM range(?) r(k), src
    """
    out_file = Path(out_dir) / f"online_retail_x{n}.parquet"
    rows = _copy(con, sql, [n], out_file)
    con.close()
    return {"path": str(out_file), "rows": rows, "seconds": time.perf_counter() - t0}


def refresh_week(n: int, out_dir: Path, source: Path = SOURCE, days: int = 7) -> dict:
    """Write `out_dir/online_retail_week_x<n>.parquet`: the last `days` days of lines moved `days`
    days later (after the span end), per replica; return {"path", "rows", "seconds", "first", "last"}."""
    t0 = time.perf_counter()
    con = _connect(None)
    lo, hi, offset, _ = _bounds(con, source)
    sql = f"""
        SELECT
            s.InvoiceNo || '-w' || k AS InvoiceNo,
            s.StockCode, s.Description, s.Quantity,
            strftime(TRY_CAST(s.InvoiceDate AS TIMESTAMP) + INTERVAL {int(days)} DAY,
                     '{TS_FORMAT}') AS InvoiceDate,
            s.UnitPrice,
            s.CustomerID + k * {offset} AS CustomerID,
            s.Country
        FROM range(?) r(k), read_parquet(?) s
        WHERE epoch(TRY_CAST(s.InvoiceDate AS TIMESTAMP)) > {hi} - {int(days)} * 86400
    """
    out_file = Path(out_dir) / f"online_retail_week_x{n}.parquet"
    rows = _copy(con, sql, [n, str(source)], out_file)
    first, last = con.execute(
        "SELECT min(InvoiceDate), max(InvoiceDate) FROM read_parquet(?)", [str(out_file)]
    ).fetchone()
    con.close()
    return {"path": str(out_file), "rows": rows, "seconds": time.perf_counter() - t0,
            "first": first, "last": last}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, required=True, help="number of replicas")
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    ap.add_argument("--week", action="store_true", help="also write the extra refresh week")
    args = ap.parse_args(argv)
    res = replicate(args.n, args.out)
    print(f"{res['rows']:,} rows -> {res['path']} in {res['seconds']:.1f} s")
    if args.week:
        wk = refresh_week(args.n, args.out)
        print(f"{wk['rows']:,} rows ({wk['first']} .. {wk['last']}) -> {wk['path']} in {wk['seconds']:.1f} s")


if __name__ == "__main__":
    main()
