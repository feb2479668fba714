"""Data-quality expectations on cleaned_transactions.

Each expectation is checked twice:
- on the whole table, in DuckDB SQL (counts of violating rows): cheap at any size;
- by a Great Expectations suite on a bounded random sample (GE validates in pandas, which would
  pull tens of millions of rows into memory if run on the whole table).
The asset check passes only when both agree that nothing is violated.

After a weekly append to a table that passed (common/data_version proves the earlier rows are
untouched, and the date-range bounds only widen), both run on the appended rows only: the earlier
rows had no violation, so the verdict is the whole table's, for the cost of the new rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd

from customer_assets.common import data_version
from customer_assets.common.db import is_read_only
from customer_assets.ingestion.pipeline import read_state, write_state

GE_SAMPLE_ROWS = 20_000
ORDER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_\-./]*$"


@dataclass
class Expectation:
    name: str
    column: str
    sql_violations: str  # a boolean SQL condition that is TRUE for a violating row


def expectations(min_date, max_date) -> list[Expectation]:
    exps = [
        Expectation(f"{c} not null", c, f"{c} IS NULL")
        for c in ("customer_id", "order_id", "order_datetime", "line_total")
    ]
    exps += [
        Expectation("quantity > 0 (when present)", "quantity", "quantity IS NOT NULL AND quantity <= 0"),
        Expectation("unit_price > 0 (when present)", "unit_price", "unit_price IS NOT NULL AND unit_price <= 0"),
        Expectation("line_total >= 0", "line_total", "line_total < 0"),
        Expectation(
            f"order_datetime within the data's range {min_date}..{max_date}",
            "order_datetime",
            f"order_datetime < TIMESTAMP '{min_date}' OR order_datetime > TIMESTAMP '{max_date}'",
        ),
        Expectation(
            "order_id well formed", "order_id", f"NOT regexp_matches(order_id, '{ORDER_ID_PATTERN}')"
        ),
        Expectation("order_date = date of order_datetime", "order_date", "order_date <> CAST(order_datetime AS DATE)"),
    ]
    return exps


def run_quality(con) -> dict:
    """Full-table SQL checks plus the Great Expectations suite on a sample. Returns a result dict."""
    min_date, max_date = con.execute(
        "SELECT min(order_datetime), max(order_datetime) FROM cleaned_transactions"
    ).fetchone()
    exps = expectations(min_date, max_date)
    total = con.execute("SELECT count(*) FROM cleaned_transactions").fetchone()[0]
    scope, checked, scope_note = "true", total, "every row"
    passed_at = read_state(con, "quality_passed")
    current = data_version.data_fingerprint(con)
    appended = data_version.appended_since(con, passed_at, current) if passed_at else None
    if appended is not None and appended.cleaned[1] > appended.cleaned[0]:
        scope = appended.where("cleaned_transactions")
        checked = appended.cleaned[1] - appended.cleaned[0]
        scope_note = f"the {checked:,} rows appended since the last passed check"
    counts = con.execute(
        "SELECT " + ", ".join(f"count(*) FILTER (WHERE {e.sql_violations})" for e in exps)
        + f" FROM cleaned_transactions WHERE {scope}"
    ).fetchone()
    sample = con.execute(
        f"SELECT * FROM (SELECT * FROM cleaned_transactions WHERE {scope}) "
        f"USING SAMPLE reservoir({GE_SAMPLE_ROWS} ROWS) REPEATABLE (42)"
    ).df()
    ge_results = _great_expectations(sample, min_date, max_date)
    rows = []
    for e, n in zip(exps, counts):
        ge = ge_results.get(e.name)
        rows.append({
            "expectation": e.name,
            "full_table_violations": int(n),
            "ge_sample_success": None if ge is None else bool(ge["success"]),
            "ge_unexpected": None if ge is None else ge["unexpected"],
        })
    table = pd.DataFrame(rows)
    passed = bool((table["full_table_violations"] == 0).all()) and all(
        r["ge_sample_success"] is not False for r in rows
    )
    if passed and not is_read_only(con):
        write_state(con, "quality_passed", current)
    return {"passed": passed, "rows": total, "rows_checked": checked, "scope": scope_note,
            "sample_rows": len(sample), "table": table}



def _great_expectations(df: pd.DataFrame, min_date, max_date) -> dict:
    """Run the GE suite on a pandas sample; name -> {success, unexpected}."""
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    import great_expectations as gx
    import great_expectations.expectations as gxe

    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    # GE's per-metric tqdm bars would otherwise print "Calculating Metrics" into the run's output
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("cleaned_sample")
    batch_def = source.add_dataframe_asset("cleaned_transactions").add_batch_definition_whole_dataframe("sample")
    suite = gx.ExpectationSuite(name="cleaned_transactions")
    named = {}
    for c in ("customer_id", "order_id", "order_datetime", "line_total"):
        named[f"{c} not null"] = gxe.ExpectColumnValuesToNotBeNull(column=c)
    named["quantity > 0 (when present)"] = gxe.ExpectColumnValuesToBeBetween(column="quantity", min_value=0, strict_min=True)
    named["unit_price > 0 (when present)"] = gxe.ExpectColumnValuesToBeBetween(column="unit_price", min_value=0, strict_min=True)
    named["line_total >= 0"] = gxe.ExpectColumnValuesToBeBetween(column="line_total", min_value=0)
    named[f"order_datetime within the data's range {min_date}..{max_date}"] = gxe.ExpectColumnValuesToBeBetween(
        column="order_datetime", min_value=pd.Timestamp(min_date), max_value=pd.Timestamp(max_date)
    )
    named["order_id well formed"] = gxe.ExpectColumnValuesToMatchRegex(column="order_id", regex=ORDER_ID_PATTERN)
    for e in named.values():
        suite.add_expectation(e)
    frame = df.copy()
    frame["order_datetime"] = pd.to_datetime(frame["order_datetime"])
    for c in ("customer_id", "order_id"):
        frame[c] = frame[c].astype(object)
    result = batch_def.get_batch(batch_parameters={"dataframe": frame}).validate(suite)
    by_config = {}
    for r in result.results:
        cfg = r.expectation_config
        by_config[(cfg.type, cfg.kwargs.get("column"))] = {
            "success": bool(r.success),
            "unexpected": int(r.result.get("unexpected_count") or 0),
        }
    out = {}
    for name, e in named.items():
        key = (e.expectation_type, e.column)
        if key in by_config:
            out[name] = by_config[key]
    return out
