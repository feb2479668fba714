"""Each ingested file's last order date, kept in ingested_files.last_order_date.

A cleaned line names its file in `source_file`: the file's path, or `path#sheet` for a sheet of a
workbook with several sheets (ingestion/readers). The drift report needs the data end of the files
loaded before a champion was trained (monitoring/drift.baseline_as_of); ingestion records it per
file when it writes the file's lines (from the appended lines only on a weekly append), so the
report reads a few rows instead of scanning every line (0.15-0.2 s at 10.8M lines, on the weekly
refresh's chain churn_scores -> drift_report -> customer_report).
"""

from __future__ import annotations

from typing import Optional

import duckdb

COLUMN = "last_order_date"


def file_of(label: str, paths) -> Optional[str]:
    """The ingested file a line's `source_file` names: the path itself, or the longest path
    followed by '#' and a sheet name; None when no path matches."""
    if label in paths:
        return label
    matches = [p for p in paths if label.startswith(p + "#")]
    return max(matches, key=len) if matches else None


def last_order_dates(con: duckdb.DuckDBPyConnection, paths, where: str = "true") -> dict:
    """{path: the latest order date of its cleaned lines} for `paths`, among the lines selected by
    the SQL condition `where`; a file without such a line is left out."""
    paths = set(paths)
    out: dict = {}
    for label, last in con.execute(
        f"SELECT source_file, max(order_date) FROM cleaned_transactions WHERE {where} GROUP BY source_file"
    ).fetchall():
        path = file_of(label, paths) if label is not None else None
        if path is not None and last is not None and (path not in out or last > out[path]):
            out[path] = last
    return out


def record_last_order_dates(con: duckdb.DuckDBPyConnection, files: dict, where: str = "true") -> None:
    """Set ingested_files.last_order_date of the rows whose sha256 is a key of `files` ({sha256:
    path}) from their lines selected by `where` (NULL for a file none of whose lines was kept)."""
    if not files:
        return
    dates = last_order_dates(con, set(files.values()), where)
    con.executemany(f"UPDATE ingested_files SET {COLUMN} = ? WHERE sha256 = ?",
                    [(dates.get(path), sha) for sha, path in files.items()])
