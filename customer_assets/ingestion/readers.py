"""Find source files and read each one into a DuckDB staging relation (temporary: it lives only for
the ingestion step's connection; the source files themselves are the record of what was read).

Parquet is staged as a TEMP VIEW over the file (no copy: the cleaning pass reads the file directly);
CSV and Excel as a TEMP TABLE (their reading needs row bookkeeping for malformed lines and sheets).

Staging columns: source_file, source_sha256, source_row (1-based data row, header excluded),
malformed_line (the raw text of a line the CSV reader could not split, else NULL), then every
source column exactly as read: text for CSV and Excel, the file's own types for Parquet.
Nothing is parsed here, so nothing can be lost here.
"""

from __future__ import annotations

import glob
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import duckdb

from customer_assets.common.db import quote_ident
from customer_assets.ingestion.mapping import Mapping, MappingError

SUPPORTED = (".csv", ".csv.gz", ".txt", ".tsv", ".tsv.gz", ".txt.gz", ".xlsx", ".parquet", ".pq")


class IngestError(RuntimeError):
    """A source cannot be read; the message names the file and says what to do."""


@dataclass
class FileRead:
    path: str
    sha256: str
    rows: int = 0
    malformed: int = 0
    notes: list = field(default_factory=list)


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _supported(path: str) -> bool:
    low = path.lower()
    return any(low.endswith(ext) for ext in SUPPORTED)


def discover_files(source: Optional[str], landing_dir: Optional[str]) -> list[str]:
    """The configured source (a file, a glob or a folder) plus every file in the landing folder.

    A source that matches nothing is an error; an empty landing folder is normal."""
    files: list[str] = []
    if source:
        if any(ch in source for ch in "*?["):
            matched = sorted(p for p in glob.glob(source, recursive=True) if os.path.isfile(p))
            if not matched:
                raise IngestError(f"Source glob {source!r} matches no file. Check CUSTOMER_ASSETS_SOURCE.")
            files += matched
        elif os.path.isdir(source):
            files += _folder_files(source)
        elif os.path.isfile(source):
            files.append(source)
        else:
            raise IngestError(
                f"Source file not found: {source}. Set CUSTOMER_ASSETS_SOURCE to a CSV, .csv.gz, .xlsx or "
                f".parquet file, a glob such as 'exports/*.csv', or a folder."
            )
    if landing_dir and os.path.isdir(landing_dir):
        files += _folder_files(landing_dir)
    seen, unique = set(), []
    for f in files:
        key = os.path.abspath(f)
        if key not in seen:
            seen.add(key)
            unique.append(key)
    return unique


def _folder_files(folder: str) -> list[str]:
    return sorted(
        str(p) for p in Path(folder).iterdir()
        if p.is_file() and not p.name.startswith(".") and _supported(p.name)
    )


def read_into_staging(con: duckdb.DuckDBPyConnection, path: str, sha: str, mapping: Mapping, table: str) -> FileRead:
    """Read one file into `table` (created or replaced). Returns what was read."""
    info = FileRead(path=path, sha256=sha)
    if os.path.getsize(path) == 0:
        info.notes.append("empty file (0 bytes): no header, no rows")
        _create_empty_staging(con, table, list(mapping.columns.values()))
        return info
    low = path.lower()
    if low.endswith(".parquet") or low.endswith(".pq"):
        _read_parquet(con, path, sha, mapping, table)
    elif low.endswith(".xlsx"):
        _read_excel(con, path, sha, mapping, table, info)
    else:
        _read_csv(con, path, sha, mapping, table, info)
    info.rows = con.execute(f"SELECT count(*) FROM {quote_ident(table)}").fetchone()[0]
    if not (low.endswith(".parquet") or low.endswith(".pq")):  # a Parquet file has no malformed lines
        info.malformed = con.execute(
            f"SELECT count(*) FROM {quote_ident(table)} WHERE malformed_line IS NOT NULL"
        ).fetchone()[0]
    if info.rows == 0:
        info.notes.append("header only: no data rows")
    if info.malformed:
        info.notes.append(f"{info.malformed} malformed line(s) quarantined as malformed_row")
    return info


def _create_empty_staging(con, table, columns):
    cols = ", ".join(f"CAST(NULL AS VARCHAR) AS {quote_ident(c)}" for c in columns)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {quote_ident(table)} AS SELECT CAST(NULL AS VARCHAR) AS source_file, "
        f"CAST(NULL AS VARCHAR) AS source_sha256, CAST(NULL AS BIGINT) AS source_row, "
        f"CAST(NULL AS VARCHAR) AS malformed_line, {cols} WHERE false"
    )


def _staging_select(columns: list[str], row_expr: str, as_text: bool = True, path: Optional[str] = None,
                    sha: Optional[str] = None) -> str:
    """The staging SELECT list; source file and sha256 as `?` parameters, or as literals (views
    cannot hold parameters) when `path` and `sha` are given."""
    casts = ", ".join(
        f"CAST({quote_ident(c)} AS VARCHAR) AS {quote_ident(c)}" if as_text else quote_ident(c) for c in columns
    )
    file_expr, sha_expr = ("?", "?") if path is None else (_sql_str(path), _sql_str(sha))
    return (
        f"CAST({file_expr} AS VARCHAR) AS source_file, CAST({sha_expr} AS VARCHAR) AS source_sha256, "
        f"CAST({row_expr} AS BIGINT) AS source_row, CAST(NULL AS VARCHAR) AS malformed_line, {casts}"
    )


def _read_parquet(con, path, sha, mapping, table):
    try:
        cols = [r[0] for r in con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [path]).fetchall()]
    except duckdb.Error as e:
        raise IngestError(f"{path}: not a readable Parquet file ({e.__class__.__name__}: {str(e).splitlines()[0]})") from e
    mapping.check_columns(cols, path)
    # A view, not a copy: Parquet columns keep their types (the values as read, without a text round
    # trip), and writing 54M staged rows cost more than the cleaning itself.
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {quote_ident(table)} AS SELECT "
        f"{_staging_select(cols, 'file_row_number + 1', False, path, sha)} "
        f"FROM read_parquet({_sql_str(path)}, file_row_number = true)"
    )


def _csv_options(mapping: Mapping, encoding: Optional[str]) -> str:
    opts = ["all_varchar = true", f"header = {'true' if mapping.header else 'false'}", "store_rejects = true"]
    if mapping.column_names:
        opts.append("names = [" + ", ".join(_sql_str(n) for n in mapping.column_names) + "]")
    if mapping.delimiter:
        opts.append("delim = " + _sql_str(mapping.delimiter))
    if encoding:
        opts.append("encoding = " + _sql_str(encoding))
    return ", ".join(opts)


def _sql_str(s: str) -> str:
    return "'" + str(s).replace("'", "''") + "'"


def _read_csv(con, path, sha, mapping, table, info: FileRead):
    if mapping.delimiter == "whitespace":
        return _read_whitespace(con, path, sha, mapping, table)
    encoding = mapping.encoding
    try:
        bad_unicode_line = _read_csv_with(con, path, sha, mapping, table, encoding)
        if bad_unicode_line is not None and encoding is None:
            # Not UTF-8: read the whole file again as latin-1 (every byte decodes, nothing is lost)
            # and say so, rather than quarantining the lines with accented characters.
            info.notes.append(
                f"not valid UTF-8 (first bad byte on line {bad_unicode_line}): decoded as latin-1; "
                f"set \"encoding\" in the mapping if that is wrong"
            )
            _read_csv_with(con, path, sha, mapping, table, "latin-1")
    except duckdb.Error as e:
        raise IngestError(f"{path}: cannot be read as CSV: {str(e).splitlines()[0]}") from e


def _error_line(msg: str) -> Optional[str]:
    import re

    m = re.search(r"Line: (\d+)", msg)
    return m.group(1) if m else None


def _read_csv_with(con, path, sha, mapping, table, encoding):
    opts = _csv_options(mapping, encoding)
    cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_csv(?, {opts})", [path]).fetchall()]
    mapping.check_columns(cols, path)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE __csv_read AS SELECT * FROM read_csv(?, {opts})", [path]
    )
    # Lines the reader could not split (e.g. a truncated last line) are kept as malformed rows.
    rejects, bad_unicode = [], None
    if _has_rejects(con):
        rejects = con.execute(
            "SELECT line, any_value(csv_line) FROM reject_errors GROUP BY line ORDER BY line"
        ).fetchall()
        bad_unicode = con.execute(
            "SELECT min(line) FROM reject_errors WHERE error_type ILIKE '%encoding%' OR error_type ILIKE '%unicode%'"
        ).fetchone()[0]
    # DuckDB keeps insertion order, so rowid is the order of good rows in the file; a good row's
    # data-row number is its position plus the malformed lines before it.
    reject_rows = [int(line) - 1 for line, _ in rejects]  # header is line 1
    con.execute("CREATE OR REPLACE TEMP TABLE __rejects(data_row BIGINT, good_before BIGINT, csv_line VARCHAR)")
    if rejects:
        con.executemany(
            "INSERT INTO __rejects VALUES (?, ?, ?)",
            [(r, r - (j + 1), text) for j, (r, (_, text)) in enumerate(zip(reject_rows, rejects))],
        )
        row_expr = "rowid + 1 + (SELECT count(*) FROM __rejects WHERE good_before < __csv_read.rowid + 1)"
    else:
        row_expr = "rowid + 1"
    null_cols = ", ".join(f"CAST(NULL AS VARCHAR) AS {quote_ident(c)}" for c in cols)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {quote_ident(table)} AS
            SELECT {_staging_select(cols, row_expr)} FROM __csv_read
            UNION ALL
            SELECT ? , ?, data_row, csv_line, {null_cols} FROM __rejects""",
        [path, sha, path, sha],
    )
    con.execute("DROP TABLE IF EXISTS __csv_read")
    _clear_rejects(con)
    return bad_unicode


def _read_whitespace(con, path, sha, mapping, table):
    """Columns separated by runs of spaces or tabs (fixed-width-ish exports such as CDNOW)."""
    import pandas as pd

    try:
        df = pd.read_csv(
            path, sep=r"\s+", header=0 if mapping.header else None, names=mapping.column_names,
            dtype=str, encoding=mapping.encoding or "utf-8", encoding_errors="replace", engine="python",
        )
    except Exception as e:  # pandas raises several parser error types
        raise IngestError(f"{path}: cannot be read as whitespace-separated text: {e}") from e
    df.columns = [str(c) for c in df.columns]
    mapping.check_columns(list(df.columns), path)
    df = df.astype("string")
    df.insert(0, "malformed_line", pd.Series([None] * len(df), dtype="string"))
    df.insert(0, "source_row", range(1, len(df) + 1))
    df.insert(0, "source_sha256", sha)
    df.insert(0, "source_file", path)
    con.register("__ws_df", df)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {quote_ident(table)} AS SELECT * FROM __ws_df")
    finally:
        con.unregister("__ws_df")
    return None


def _has_rejects(con) -> bool:
    try:
        con.execute("SELECT 1 FROM reject_errors LIMIT 0")
        return True
    except duckdb.Error:
        return False


def _clear_rejects(con):
    for t in ("reject_errors", "reject_scans"):
        try:
            con.execute(f"DELETE FROM {t}")
        except duckdb.Error:
            pass


def _read_excel(con, path, sha, mapping, table, info: FileRead):
    import pandas as pd

    try:
        sheets = pd.read_excel(path, sheet_name=None, dtype=str, engine="openpyxl")
    except Exception as e:  # openpyxl raises many types for a broken workbook
        raise IngestError(f"{path}: not a readable .xlsx workbook ({e.__class__.__name__}: {e})") from e
    wanted = mapping.sheet
    if wanted:
        names = [wanted] if isinstance(wanted, str) else list(wanted)
        absent = [n for n in names if n not in sheets]
        if absent:
            raise IngestError(f"{path}: sheet(s) {absent} not found; the workbook has {list(sheets)}")
    else:
        needed = set(mapping.columns.values())
        names = [n for n, df in sheets.items() if needed <= set(map(str, df.columns))]
        skipped = [n for n in sheets if n not in names]
        if not names:
            detail = "; ".join(f"{n!r}: {list(map(str, df.columns))}" for n, df in sheets.items())
            raise MappingError(
                f"{path}: no sheet has every mapped column ({sorted(needed)}). Sheets and their columns: {detail}. "
                f"Fix the mapping or set \"sheet\" in it."
            )
        if skipped:
            info.notes.append(f"sheets without the mapped columns were not read: {skipped}")
    frames = []
    for n in names:
        df = sheets[n]
        df.columns = [str(c) for c in df.columns]
        mapping.check_columns(list(df.columns), f"{path} sheet {n!r}")
        df = df.astype("string")
        df.insert(0, "malformed_line", pd.Series([None] * len(df), dtype="string"))
        df.insert(0, "source_row", range(1, len(df) + 1))
        df.insert(0, "source_sha256", sha)
        df.insert(0, "source_file", f"{path}#{n}" if len(sheets) > 1 else path)
        frames.append(df)
    combined = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    con.register("__excel_df", combined)
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {quote_ident(table)} AS SELECT * FROM __excel_df"
        )
    finally:
        con.unregister("__excel_df")
