"""Staged source rows -> cleaned_transactions + quarantined_transactions, in DuckDB SQL.

Every source row gets exactly one outcome: clean, or quarantined with the first reason that applies
(precedence in schema.REASONS). Duplicates are decided last, among otherwise valid rows: the first
occurrence (lowest source file, source row) is kept, later identical rows are quarantined.

Zero amounts: a line with unit price 0 is quarantined (non_positive_price: on line-level retail data
these are adjustments and damaged stock, not sales). A whole-order total of 0 (order_total sources,
e.g. CDNOW's free orders) is kept as a purchase: the order happened, and the published BG/NBD fits
count such orders. A negative total is quarantined.
"""

from __future__ import annotations

from typing import Optional

from customer_assets.common.db import quote_ident, replace_table, transaction
from customer_assets.ingestion.mapping import Mapping
from customer_assets.ingestion.schema import CLEANED_COLUMNS, QUARANTINE_COLUMNS

META_COLUMNS = ("source_file", "source_sha256", "source_row", "malformed_line")

# Without a date_format: ISO (and anything DuckDB casts) first, then these, in this order.
# Day-first and month-first are ambiguous for days <= 12: set "date_format" in the mapping.
FALLBACK_DATE_FORMATS = (
    "%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y",
    "%d/%m/%Y %H:%M", "%d/%m/%Y %H:%M:%S", "%d/%m/%Y",
    "%d.%m.%Y %H:%M", "%d.%m.%Y", "%Y%m%d", "%Y/%m/%d %H:%M:%S", "%Y/%m/%d",
)


NUMERIC_TYPES = ("DOUBLE", "FLOAT", "REAL", "BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT",
                 "UBIGINT", "UINTEGER", "USMALLINT", "UTINYINT")


def _is_numeric(typ: str) -> bool:
    return typ.upper().startswith(NUMERIC_TYPES) or typ.upper().startswith("DECIMAL")


def _is_temporal(typ: str) -> bool:
    return typ.upper().startswith(("TIMESTAMP", "DATE"))


class Parser:
    """SQL expressions that turn one raw column into a canonical value.

    Type-aware: CSV columns arrive as text and are parsed; typed (Parquet) columns are used as
    they are, which avoids a costly number -> text -> number round trip on large files."""

    def __init__(self, types: dict):
        self.types = {k: v.upper() for k, v in types.items()}

    def typ(self, col: str) -> str:
        return self.types.get(col, "VARCHAR")

    def is_text(self, col: str) -> bool:
        return not (_is_numeric(self.typ(col)) or _is_temporal(self.typ(col)))

    def text(self, col: str, ref: Optional[str] = None) -> str:
        """The column's value as trimmed text, NULL when empty; `ref` names the column in the SQL
        (default: the column itself)."""
        q = ref or quote_ident(col)
        if self.is_text(col):
            return f"NULLIF(trim(CAST({q} AS VARCHAR)), '')"
        return f"CAST({q} AS VARCHAR)"

    def id(self, col: str) -> str:
        # IDs exported through a float column arrive as 17850.0 (or "17850.0"): keep "17850".
        q = quote_ident(col)
        if _is_numeric(self.typ(col)):
            return (f"CASE WHEN {q} = floor({q}) THEN CAST(CAST({q} AS HUGEINT) AS VARCHAR) "
                    f"ELSE CAST({q} AS VARCHAR) END")
        t = self.text(col)
        # (the LIKE pre-filter keeps the regex off the common case)
        return f"CASE WHEN {t} LIKE '%.0' THEN regexp_replace({t}, '^([0-9]+)\\.0+$', '\\1') ELSE {t} END"

    def num(self, col: str) -> str:
        if _is_numeric(self.typ(col)):
            return f"CAST({quote_ident(col)} AS DOUBLE)"
        return f"TRY_CAST({self.text(col)} AS DOUBLE)"

    def timestamp(self, col: str, date_format) -> str:
        if _is_temporal(self.typ(col)):
            return f"CAST({quote_ident(col)} AS TIMESTAMP)"
        t = self.text(col)
        if date_format:
            return f"try_strptime({t}, {_sql_str(date_format)})"
        fmts = "[" + ", ".join(_sql_str(f) for f in FALLBACK_DATE_FORMATS) + "]"
        # CASE, not coalesce: the format list is only tried on rows the ISO cast cannot read.
        return (f"CASE WHEN TRY_CAST({t} AS TIMESTAMP) IS NOT NULL THEN TRY_CAST({t} AS TIMESTAMP) "
                f"ELSE try_strptime({t}, {fmts}) END")


def _sql_str(s: str) -> str:
    return "'" + str(s).replace("'", "''") + "'"


# Canonical numeric fields whose raw text is kept (for "not a number" checks and details).
NUMERIC_FIELDS = ("quantity", "unit_price", "line_total", "order_total", "discount")


def parsed_select(m: Mapping, types: dict) -> str:
    """SELECT list turning raw columns into canonical typed columns (+ raw text where checks need it)."""
    c = m.columns
    p = Parser(types)

    def col(field, fn, typ):
        return f"{fn(c[field])} AS {field}" if field in c else f"CAST(NULL AS {typ}) AS {field}"

    if m.amount_mode == "quantity_x_price":
        amount = f"{p.num(c['quantity'])} * {p.num(c['unit_price'])}"
    elif m.amount_mode == "line_total":
        amount = p.num(c["line_total"])
    else:
        amount = p.num(c["order_total"])
    return ",\n".join([
        "source_file", "source_sha256", "source_row", "malformed_line",
        col("customer_id", p.id, "VARCHAR"),
        # Without an order id (one row per order), each source row is its own order.
        col("order_id", p.id, "VARCHAR") if "order_id" in c
        else "left(source_sha256, 8) || ':' || CAST(source_row AS VARCHAR) AS order_id",
        f"{p.timestamp(c['order_datetime'], m.date_format)} AS order_datetime",
        f"{p.text(c['order_datetime'])} AS order_datetime_text",
        col("product_id", p.text, "VARCHAR"),
        col("product_name", p.text, "VARCHAR"),
        col("quantity", p.num, "DOUBLE"),
        col("unit_price", p.num, "DOUBLE"),
        f"{amount} AS line_total",
        col("country", p.text, "VARCHAR"),
        col("store_id", p.id, "VARCHAR"),
        col("discount", p.num, "DOUBLE"),
        # raw text of the numeric fields, to tell "missing" from "not a number"
        *[f"{p.text(c[f])} AS {f}_text" for f in NUMERIC_FIELDS if f in c],
    ])


def reason_case(m: Mapping, present: Optional[dict] = None) -> str:
    """CASE expression giving (reason) in precedence order; NULL means a valid sale line.

    `present` maps a numeric field to an SQL test equivalent to `{field}_text IS NOT NULL` (default).
    For a typed (Parquet) column that is the raw column IS NOT NULL: a number cast to text is NULL
    only when the number is, and testing the column avoids casting every row's number to text."""
    c = m.columns
    present = present or {}

    def has_text(f):
        return present.get(f, f"{f}_text IS NOT NULL")

    w = []
    w.append(("malformed_line IS NOT NULL", "malformed_row"))
    if m.cancellation_prefix:
        w.append((f"starts_with(order_id, {_sql_str(m.cancellation_prefix)})", "cancellation"))
    w.append(("order_id IS NULL", "missing_order_id"))
    w.append(("order_datetime IS NULL OR year(order_datetime) NOT BETWEEN 1970 AND 2100", "unparseable_date"))
    w.append(("customer_id IS NULL", "missing_customer"))
    if m.non_product_codes and "product_id" in c:
        codes = ", ".join(_sql_str(x) for x in m.non_product_codes)
        w.append((f"product_id IN ({codes})", "non_product_code"))
    bad_num = []
    for f in ("quantity", "unit_price", "line_total", "order_total", "discount"):
        if f in c:
            target = f if f in ("quantity", "unit_price", "discount") else "line_total"
            bad_num.append(f"({has_text(f)} AND {target} IS NULL)")
    if m.amount_mode == "quantity_x_price":
        bad_num.append(f"NOT ({has_text('quantity')}) OR NOT ({has_text('unit_price')})")
    else:
        bad_num.append("line_total IS NULL")
    w.append((" OR ".join(bad_num), "unparseable_number"))
    if "quantity" in c:
        w.append(("quantity <= 0", "non_positive_quantity"))
    if m.amount_mode == "quantity_x_price":
        w.append(("unit_price <= 0", "non_positive_price"))
    else:
        w.append(("line_total < 0 OR (unit_price IS NOT NULL AND unit_price < 0)", "non_positive_price"))
    return "CASE " + " ".join(f"WHEN {cond} THEN '{r}'" for cond, r in w) + " END"


DUPLICATE_DETAIL = "same values as an earlier row"


def detail_case(m: Mapping, reason_col: str = "reason", texts: Optional[dict] = None) -> str:
    """A human-readable detail naming the source column and value behind the reason.

    `texts` maps a field to an SQL expression equal to its `{field}_text` (default: that column). A
    branch of the CASE is evaluated only for the rows with its reason, so an expression given here
    is computed for those rows alone, where a `_text` column of the view is computed for every row."""
    c = m.columns
    texts = texts or {}

    def text(field):
        return texts.get(field, f"{field}_text")

    def show(field):
        return f"coalesce({text(field)}, '(empty)')" if field in c else "''"

    parts = {
        "malformed_row": "'the line could not be split into the header''s columns: ' || left(malformed_line, 200)",
        "cancellation": f"{_sql_str(c.get('order_id', 'order id') + ' starts with ' + (m.cancellation_prefix or ''))} || ': ' || order_id",
        "missing_order_id": _sql_str(f"{c.get('order_id', 'order id')} is empty"),
        "unparseable_date": f"{_sql_str(c['order_datetime'] + ' = ')} || coalesce({text('order_datetime')}, '(empty)') || "
        f"{_sql_str(' does not parse as a date' + (' with ' + m.date_format if m.date_format else '') + ' in 1970..2100')}",
        "missing_customer": _sql_str(f"{c['customer_id']} is empty"),
        "non_product_code": (f"{_sql_str(c['product_id'] + ' = ')} || product_id || ' is a non-product code'"
                             if "product_id" in c else "''"),
        "unparseable_number": "'a quantity, price or amount is missing or not a number: ' || "
        + " || ', ' || ".join(
            f"{_sql_str(c[f] + '=')} || {show(f)}"
            for f in ("quantity", "unit_price", "line_total", "order_total", "discount") if f in c
        ),
        "non_positive_quantity": f"{_sql_str(c.get('quantity', 'quantity') + ' = ')} || {show('quantity')}",
        "non_positive_price": (f"{_sql_str(c['unit_price'] + ' = ')} || {show('unit_price')}" if "unit_price" in c
                               else "'amount = ' || CAST(line_total AS VARCHAR)"),
        "duplicate": _sql_str(DUPLICATE_DETAIL),
    }
    return f"CASE {reason_col} " + " ".join(f"WHEN '{r}' THEN {e}" for r, e in parts.items()) + " END"


def staged_column_types(con, staged: str) -> dict:
    """Source column -> DuckDB type in the staged relation (metadata columns excluded)."""
    return {r[0]: r[1] for r in con.execute(f"DESCRIBE {quote_ident(staged)}").fetchall() if r[0] not in META_COLUMNS}


DUP_KEY = ("customer_id", "order_id", "order_datetime", "product_id", "product_name", "quantity",
           "unit_price", "line_total", "country", "store_id", "discount")


def clean(con, mapping: Mapping, staged: str, incremental: bool = False) -> dict:
    """Classify the rows of the relation `staged` into cleaned_transactions and quarantined_transactions.

    Full rebuild (default): `staged` holds every source row; both tables are replaced atomically.
    Incremental (the files just loaded, with the mapping unchanged): the staged rows are classified
    and appended in one transaction; a new row that repeats a row already in cleaned_transactions is
    a duplicate (the earlier-loaded row is kept).
    Returns counts per reason over the whole quarantine."""
    con.execute("SET enable_progress_bar = false")
    types = staged_column_types(con, staged)
    source_columns = list(types)
    key = ", ".join(DUP_KEY)
    src = quote_ident(staged)
    # Source columns ride along under positional aliases (a source column may share a canonical
    # name), so a quarantined row's original values can be turned into JSON after the filter: JSON
    # for every row cost more than the rest of the classification.
    src_alias = {c: f"__src_{i}" for i, c in enumerate(source_columns)}
    src_cols = ", ".join(f"{quote_ident(c)} AS {a}" for c, a in src_alias.items())
    raw_json = "json_object(" + ", ".join(
        f"{_sql_str(c)}, CAST({a} AS VARCHAR)" for c, a in src_alias.items()) + ")"
    # For a typed (Parquet) number the "text present" tests of the reason are raw-column NULL tests
    # (same truth value, no number -> text cast per row; the text is still built for the details).
    parser = Parser(types)
    present = {f: f"{src_alias[mapping.columns[f]]} IS NOT NULL" for f in NUMERIC_FIELDS
               if f in mapping.columns and not parser.is_text(mapping.columns[f])}
    # The details read the raw text of the order date and of typed numbers from the source column
    # itself: computed only for the quarantined rows with that reason, not for every row of the view
    # (casting two Parquet number columns to text for 10.8M rows: 1.4 CPU s). CSV text numbers are
    # parsed for the reason anyway.
    detail_texts = {f: parser.text(mapping.columns[f], src_alias[mapping.columns[f]])
                    for f in ("order_datetime",) + tuple(present)}

    def classified(rel: str) -> str:
        # Per row: parse, first reason, and a 64-bit hash of the duplicate key for rows that are
        # otherwise valid.
        return f"""WITH parsed AS (SELECT {parsed_select(mapping, types)}, {src_cols} FROM {rel}),
            reasoned AS (SELECT *, {reason_case(mapping, present)} AS first_reason FROM parsed)
            SELECT *, CASE WHEN first_reason IS NULL THEN hash({key}) END AS dup_hash
            FROM reasoned"""

    # A view, not a table: materializing every parsed row spilled 21 GB at 54M lines; the writes
    # scan the staged rows again instead (parsing is ~2 CPU s per 10M rows, writing ~10x that), and
    # only the duplicates are materialized.
    con.execute(f"CREATE OR REPLACE TEMP VIEW __classified AS {classified(src)}")
    # Duplicates, exactly, without materializing every row: (1) one pass keeps the row number and
    # key hash of each otherwise valid row (16 bytes a row); (2) the key hashes that occur more than
    # once, and the row numbers carrying them; (3) the full-key window over only the valid rows with
    # such a hash, parsed again from just the staged rows with such a row number. (The row numbers
    # of several files overlap: (3) may parse a few rows more, the hash filter drops them.) In the
    # incremental case the rows already cleaned take part too, ranked first (they were loaded first).
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE __valid AS
            SELECT source_row, dup_hash{", order_id" if incremental else ""}
            FROM __classified WHERE dup_hash IS NOT NULL"""
    )
    kept_hashes, kept_rows = "", ""
    if incremental:
        # a duplicate has the same order id (part of the key): only the cleaned rows of the new
        # rows' orders need hashing (selecting by customer hashed whole histories: 5 s at N=20)
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE __kept AS
                SELECT source_file, source_row, 0 AS earlier, {key}, hash({key}) AS dup_hash
                FROM cleaned_transactions WHERE order_id IN (SELECT order_id FROM __valid)"""
        )
        kept_hashes = "UNION ALL SELECT dup_hash FROM __kept"
        kept_rows = """UNION ALL BY NAME
                   SELECT * FROM __kept WHERE dup_hash IN (SELECT dup_hash FROM __dup_hashes)"""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE __dup_hashes AS
            SELECT dup_hash FROM (SELECT dup_hash FROM __valid {kept_hashes})
            GROUP BY dup_hash HAVING count(*) > 1"""
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE __dup_rows AS
           SELECT DISTINCT source_row FROM __valid WHERE dup_hash IN (SELECT dup_hash FROM __dup_hashes)"""
    )
    con.execute("DROP TABLE __valid")
    candidates = f"(SELECT * FROM {src} WHERE source_row IN (SELECT source_row FROM __dup_rows))"
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE __duplicates AS
            WITH pool AS (
                SELECT source_file, source_row, 1 AS earlier, {key}, dup_hash, {", ".join(src_alias.values())}
                FROM ({classified(candidates)}) WHERE dup_hash IN (SELECT dup_hash FROM __dup_hashes)
                {kept_rows}),
            ranked AS (
                SELECT *, row_number() OVER (PARTITION BY {key} ORDER BY earlier, source_file, source_row) AS rn
                FROM pool)
            SELECT * EXCLUDE (rn, earlier, dup_hash) FROM ranked WHERE rn > 1 AND earlier = 1"""
    )
    cleaned_cols = ", ".join(
        f"CAST({'CAST(order_datetime AS DATE)' if k == 'order_date' else k} AS {t}) AS {k}"
        for k, t in CLEANED_COLUMNS.items()
    )
    # ANTI JOIN, not NOT EXISTS: DuckDB plans the correlated form as a mark join over every row
    # (measured at 10.8M lines: 17.7 -> 11.3 CPU s for the same rows)
    cleaned_sql = f"""SELECT {cleaned_cols} FROM __classified c
            ANTI JOIN __duplicates d USING (source_file, source_row)
            WHERE first_reason IS NULL"""

    def q_select(reason_expr: str, detail_expr: str) -> str:
        exprs = {"reason": reason_expr, "detail": detail_expr, "order_date": "CAST(order_datetime AS DATE)",
                 "raw_values": raw_json}
        return ", ".join(f"CAST({exprs.get(k, k)} AS {t}) AS {k}" for k, t in QUARANTINE_COLUMNS.items())

    quarantine_sql = f"""
            SELECT {q_select("first_reason", detail_case(mapping, "first_reason", detail_texts))}
            FROM __classified WHERE first_reason IS NOT NULL
            UNION ALL
            SELECT {q_select("'duplicate'", _sql_str(DUPLICATE_DETAIL))} FROM __duplicates"""
    if not incremental:
        replace_table(con, "cleaned_transactions", cleaned_sql)
        replace_table(con, "quarantined_transactions", quarantine_sql)
    else:
        with transaction(con):
            con.execute(f"INSERT INTO cleaned_transactions {cleaned_sql}")
            con.execute(f"INSERT INTO quarantined_transactions {quarantine_sql}")
    con.execute("DROP VIEW __classified")
    for t in ("__duplicates", "__dup_hashes", "__dup_rows", "__kept"):
        con.execute(f"DROP TABLE IF EXISTS {t}")
    rows = con.execute(
        "SELECT reason, count(*) FROM quarantined_transactions GROUP BY reason ORDER BY count(*) DESC"
    ).fetchall()
    return {r: n for r, n in rows}
