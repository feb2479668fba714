"""Print where the results are after `make run`: the warehouse, its tables, the report, the UI."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import duckdb

from customer_assets import paths


def main() -> int:
    warehouse = os.environ.get("CUSTOMER_ASSETS_WAREHOUSE", paths.DEFAULT_WAREHOUSE)
    reports = Path(os.environ.get("CUSTOMER_ASSETS_REPORTS", paths.DEFAULT_REPORTS))
    if not Path(warehouse).exists():
        print(f"No warehouse at {warehouse}: the run did not get far enough to create it.")
        return 1
    con = duckdb.connect(warehouse, read_only=True)
    tables = [r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY table_name"
    ).fetchall()]
    print(f"\nWarehouse: {Path(warehouse).resolve()}  ({len(tables)} tables)")
    for t in tables:
        n = con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]
        print(f"  {t:<28} {n:>10,} rows")
    if "quarantined_transactions" in tables:
        print("\nQuarantined rows by reason:")
        for reason, n in con.execute(
            "SELECT reason, count(*) FROM quarantined_transactions GROUP BY 1 ORDER BY 2 DESC"
        ).fetchall():
            print(f"  {reason:<28} {n:>10,}")
    report = reports / "customer_report.html"
    if report.exists():
        print(f"\nReport: {report.resolve()}")
    if (reports / "regions").exists():
        print(f"Regional extracts: {(reports / 'regions').resolve()}")
    print(f"\nQuery it:  duckdb {warehouse}   (or python: duckdb.connect('{warehouse}', read_only=True))")
    print("Open the UI:  make dev   then http://127.0.0.1:3000")
    return 0


if __name__ == "__main__":
    sys.exit(main())
