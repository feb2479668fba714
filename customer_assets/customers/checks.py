"""Customer stage checks: one row per customer, Champions are top spenders, tiers ordered by value,
cohorts well-formed."""

import dagster as dg
import pandas as pd
from dagster_duckdb import DuckDBResource

from customer_assets.common.db import quote_ident, table_exists
from customer_assets.customers import loyalty, rfm

CUSTOMER_TABLES = ["customer_features", "rfm_segments", "customer_personas", "loyalty_tiers"]


def customer_coverage(con, table: str) -> dict:
    """Compare `table`'s customer_id to the customers of cleaned_transactions with an order on or
    before the table's snapshot_date."""
    t = quote_ident(table)
    snap = con.execute(f"SELECT min(snapshot_date), max(snapshot_date) FROM {t}").fetchone()
    if snap[0] is None:
        expected = con.execute(
            "SELECT count(DISTINCT customer_id) FROM cleaned_transactions WHERE customer_id IS NOT NULL"
        ).fetchone()[0]
        return {"passed": expected == 0, "rows": 0, "expected_customers": int(expected)}
    # one query: the expected set (one scan of cleaned_transactions) full-joined to the table's
    # customers with their row counts. A table row with a NULL customer_id matches nothing: it
    # counts in rows and as unexpected, not as a distinct customer (as count(DISTINCT) and EXCEPT).
    rows, distinct, expected, missing, extra = con.execute(
        f"""WITH expected AS (
                SELECT DISTINCT customer_id FROM cleaned_transactions
                WHERE customer_id IS NOT NULL AND order_date <= ?),
            got AS (SELECT customer_id, count(*) AS n FROM {t} GROUP BY customer_id)
            SELECT coalesce(sum(g.n), 0), count(g.customer_id), count(e.customer_id),
                   count(*) FILTER (WHERE g.n IS NULL), count(*) FILTER (WHERE e.customer_id IS NULL)
            FROM expected e FULL OUTER JOIN got g ON g.customer_id = e.customer_id""",
        [snap[1]],
    ).fetchone()
    return {
        "passed": bool(rows == distinct == expected and missing == 0 and extra == 0 and snap[0] == snap[1]),
        "rows": int(rows), "distinct_customers": int(distinct), "expected_customers": int(expected),
        "missing_customers": int(missing), "unexpected_customers": int(extra),
        "snapshot_date": str(snap[1]), "single_snapshot": bool(snap[0] == snap[1]),
    }


def _coverage_check(table: str):
    @dg.asset_check(
        asset=table, name="one_row_per_customer", blocking=True, pool="duckdb",
        description=f"{table} has exactly one row per customer of cleaned_transactions (orders up to its snapshot).",
    )
    def _check(duckdb: DuckDBResource) -> dg.AssetCheckResult:
        with duckdb.get_connection() as con:
            res = customer_coverage(con, table)
        return dg.AssetCheckResult(passed=res.pop("passed"), metadata=res)

    return _check


@dg.asset_check(
    asset="rfm_segments", blocking=True, pool="duckdb",
    description="Do Champions genuinely represent top-spending customers? Their median monetary >= P80 and "
    "median recency <= P20 of all customers.",
)
def champions_are_top_customers(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    with duckdb.get_connection() as con:
        df = con.execute("SELECT recency_days, monetary, segment FROM rfm_segments").df()
    res = rfm.champions_validation(df)
    return dg.AssetCheckResult(passed=res.pop("passed"), metadata=res)


@dg.asset_check(
    asset="loyalty_tiers", blocking=True, pool="duckdb",
    description="Median monetary strictly decreasing Platinum > Gold > Silver > Bronze, Platinum <= 10% of customers.",
)
def tiers_ordered_by_value(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    with duckdb.get_connection() as con:
        df = con.execute("SELECT tier, monetary FROM loyalty_tiers").df()
    res = loyalty.tier_validation(df)
    return dg.AssetCheckResult(passed=res.pop("passed"), metadata={k: dg.MetadataValue.json(v) if isinstance(v, (dict, list)) else v for k, v in res.items()})


def cohort_problems(df: pd.DataFrame) -> list:
    """Invariants of cohort_retention: month 0 is 100%, active <= size, one size per cohort."""
    problems = []
    m0 = df[df["months_since_acquisition"] == 0]
    if not (m0["retention_pct"].round(9) == 100).all():
        problems.append("a cohort's month-0 retention is not 100%")
    if (df["active_customers"] > df["cohort_size"]).any():
        problems.append("active customers exceed cohort size")
    if df.groupby("cohort_month")["cohort_size"].nunique().max() > 1:
        problems.append("cohort size varies within a cohort")
    return problems


@dg.asset_check(
    asset="cohort_retention", blocking=True, pool="duckdb",
    description="Month 0 retention is 100%, active customers <= cohort size, one size per cohort.",
)
def cohorts_consistent(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    with duckdb.get_connection() as con:
        df = con.execute("SELECT * FROM cohort_retention").df()
        customers = 0
        if table_exists(con, "customer_features"):
            customers = con.execute("SELECT count(*) FROM customer_features").fetchone()[0]
    problems = cohort_problems(df)
    total = int(df.loc[df["months_since_acquisition"] == 0, "cohort_size"].sum())
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={"problems": dg.MetadataValue.json(problems), "cohort_customers": total,
                  "customer_features_rows": int(customers)},
    )


CHECKS = [_coverage_check(t) for t in CUSTOMER_TABLES] + [
    champions_are_top_customers, tiers_ordered_by_value, cohorts_consistent,
]
