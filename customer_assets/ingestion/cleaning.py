"""raw_transactions -> cleaned_transactions + quarantined_transactions, in DuckDB SQL.

Every raw row gets exactly one outcome: clean, or quarantined with the first reason that applies
(precedence in schema.REASONS). Duplicates are decided last, among otherwise valid rows: the first
occurrence (lowest source file, source row) is kept, later identical rows are quarantined.

Zero amounts: a line with unit price 0 is quarantined (non_positive_price: on line-level retail data
these are adjustments and damaged stock, not sales). A whole-order total of 0 (order_total sources,
e.g. CDNOW's free orders) is kept as a purchase: the order happened, and the published BG/NBD fits
count such orders. A negative total is quarantined.
"""

from __future__ import annotations

from customer_assets.common.db import quote_ident, replace_table
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


def _text(col: str) -> str:
    return f"NULLIF(trim(CAST({quote_ident(col)} AS VARCHAR)), '')"


def _id(col: str) -> str:
    # IDs exported through a float column arrive as "17850.0": keep them as "17850".
    return f"regexp_replace({_text(col)}, '^([0-9]+)\\.0+$', '\\1')"


def _num(col: str) -> str:
    return f"TRY_CAST({_text(col)} AS DOUBLE)"


def _sql_str(s: str) -> str:
    return "'" + str(s).replace("'", "''") + "'"


def _timestamp(col: str, date_format) -> str:
    t = _text(col)
    if date_format:
        return f"try_strptime({t}, {_sql_str(date_format)})"
    fmts = "[" + ", ".join(_sql_str(f) for f in FALLBACK_DATE_FORMATS) + "]"
    return f"coalesce(TRY_CAST({t} AS TIMESTAMP), try_strptime({t}, {fmts}))"


def parsed_select(m: Mapping, source_columns: list[str]) -> str:
    """SELECT list turning raw text into canonical typed columns (+ raw text where checks need it)."""
    c = m.columns

    def col(field, fn, typ):
        return f"{fn(c[field])} AS {field}" if field in c else f"CAST(NULL AS {typ}) AS {field}"

    if m.amount_mode == "quantity_x_price":
        amount = f"{_num(c['quantity'])} * {_num(c['unit_price'])}"
    elif m.amount_mode == "line_total":
        amount = _num(c["line_total"])
    else:
        amount = _num(c["order_total"])
    raw_json = "json_object(" + ", ".join(
        f"{_sql_str(s)}, CAST({quote_ident(s)} AS VARCHAR)" for s in source_columns
    ) + ")"
    return ",\n".join([
        "source_file", "source_row", "malformed_line",
        col("customer_id", _id, "VARCHAR"),
        # Without an order id (one row per order), each source row is its own order.
        col("order_id", _id, "VARCHAR") if "order_id" in c
        else "left(source_sha256, 8) || ':' || CAST(source_row AS VARCHAR) AS order_id",
        f"{_timestamp(c['order_datetime'], m.date_format)} AS order_datetime",
        f"{_text(c['order_datetime'])} AS order_datetime_text",
        col("product_id", _text, "VARCHAR"),
        col("product_name", _text, "VARCHAR"),
        col("quantity", _num, "DOUBLE"),
        col("unit_price", _num, "DOUBLE"),
        f"{amount} AS line_total",
        col("country", _text, "VARCHAR"),
        col("store_id", _id, "VARCHAR"),
        col("discount", _num, "DOUBLE"),
        # raw text of the numeric fields, to tell "missing" from "not a number"
        *[f"{_text(c[f])} AS {f}_text" for f in ("quantity", "unit_price", "line_total", "order_total", "discount") if f in c],
        f"{raw_json} AS raw_values",
    ])


def reason_case(m: Mapping) -> str:
    """CASE expression giving (reason) in precedence order; NULL means a valid sale line."""
    c = m.columns
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
            bad_num.append(f"({f}_text IS NOT NULL AND {target} IS NULL)")
    if m.amount_mode == "quantity_x_price":
        bad_num.append("quantity_text IS NULL OR unit_price_text IS NULL")
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


def detail_case(m: Mapping) -> str:
    """A human-readable detail naming the source column and value behind the reason."""
    c = m.columns

    def show(field):
        return f"coalesce({field}_text, '(empty)')" if field in c else "''"

    parts = {
        "malformed_row": "'the line could not be split into the header''s columns: ' || left(malformed_line, 200)",
        "cancellation": f"{_sql_str(c.get('order_id', 'order id') + ' starts with ' + (m.cancellation_prefix or ''))} || ': ' || order_id",
        "missing_order_id": _sql_str(f"{c.get('order_id', 'order id')} is empty"),
        "unparseable_date": f"{_sql_str(c['order_datetime'] + ' = ')} || coalesce(order_datetime_text, '(empty)') || "
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
        "duplicate": "'same values as an earlier row'",
    }
    return "CASE reason " + " ".join(f"WHEN '{r}' THEN {e}" for r, e in parts.items()) + " END"


def clean(con, mapping: Mapping) -> dict:
    """Rebuild cleaned_transactions and quarantined_transactions from raw_transactions.

    Returns counts per reason."""
    con.execute("SET enable_progress_bar = false")
    source_columns = [
        r[0] for r in con.execute("DESCRIBE raw_transactions").fetchall() if r[0] not in META_COLUMNS
    ]
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE __classified AS
            WITH parsed AS (SELECT {parsed_select(mapping, source_columns)} FROM raw_transactions)
            SELECT *, {reason_case(mapping)} AS first_reason FROM parsed"""
    )
    dup_key = ", ".join(
        ["customer_id", "order_id", "order_datetime", "product_id", "product_name", "quantity",
         "unit_price", "line_total", "country", "store_id", "discount"]
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE __outcome AS
            SELECT * EXCLUDE (first_reason),
                   CASE WHEN first_reason IS NOT NULL THEN first_reason
                        WHEN row_number() OVER (PARTITION BY {dup_key} ORDER BY source_file, source_row) > 1
                             THEN 'duplicate' END AS reason
            FROM __classified"""
    )
    con.execute("DROP TABLE __classified")
    cleaned_cols = ", ".join(
        f"CAST({'CAST(order_datetime AS DATE)' if k == 'order_date' else k} AS {t}) AS {k}"
        for k, t in CLEANED_COLUMNS.items()
    )
    replace_table(
        con, "cleaned_transactions",
        f"SELECT {cleaned_cols} FROM __outcome WHERE reason IS NULL ORDER BY order_datetime, source_file, source_row",
    )
    q_cols = ", ".join(
        f"CAST({_q_expr(k, mapping)} AS {t}) AS {k}" for k, t in QUARANTINE_COLUMNS.items()
    )
    replace_table(
        con, "quarantined_transactions",
        f"SELECT {q_cols} FROM __outcome WHERE reason IS NOT NULL ORDER BY source_file, source_row",
    )
    con.execute("DROP TABLE __outcome")
    rows = con.execute(
        "SELECT reason, count(*) FROM quarantined_transactions GROUP BY reason ORDER BY count(*) DESC"
    ).fetchall()
    return {r: n for r, n in rows}


def _q_expr(k: str, m: Mapping) -> str:
    if k == "order_date":
        return "CAST(order_datetime AS DATE)"
    if k == "detail":
        return detail_case(m)
    return k
