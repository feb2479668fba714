"""Customer stage checks: one row per customer, Champions are top spenders, tiers ordered by value,
cohorts well-formed.

They are `check_specs` of their assets (see the *_SPEC constants), evaluated inside the asset's
step on its connection from what the asset already holds: a separate `@dg.asset_check` step cost
~0.1-0.2 s of step time plus Dagster's per-step bookkeeping, for each of the 7 checks, in every run.
The logic functions (`customer_coverage`, `rfm.champions_validation`, `loyalty.tier_validation`,
`cohort_problems`) are plain functions that tests call without Dagster."""

import dagster as dg
import pandas as pd

from customer_assets.common.db import quote_ident, table_exists
from customer_assets.customers import loyalty

CUSTOMER_TABLES = ["customer_features", "rfm_segments", "customer_personas", "loyalty_tiers"]


def customer_coverage(con, table: str, orders: str = "cleaned_transactions") -> dict:
    """Compare `table`'s customer_id to the customers of cleaned_transactions with an order on or
    before the table's snapshot_date. `orders`: where those customers are read from, any table with
    (customer_id, order_date) holding the same customers and dates as cleaned_transactions: the
    assets pass the feature base's order_days (one row per order, ~20x fewer rows than lines)."""
    t = quote_ident(table)
    snap = con.execute(f"SELECT min(snapshot_date), max(snapshot_date) FROM {t}").fetchone()
    if snap[0] is None:
        expected = con.execute(
            f"SELECT count(DISTINCT customer_id) FROM {orders} WHERE customer_id IS NOT NULL"
        ).fetchone()[0]
        return {"passed": expected == 0, "rows": 0, "expected_customers": int(expected)}
    # one query: the expected set (one scan of cleaned_transactions) full-joined to the table's
    # customers with their row counts. A table row with a NULL customer_id matches nothing: it
    # counts in rows and as unexpected, not as a distinct customer (as count(DISTINCT) and EXCEPT).
    rows, distinct, expected, missing, extra = con.execute(
        f"""WITH expected AS (
                SELECT DISTINCT customer_id FROM {orders}
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


def coverage_spec(table: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        "one_row_per_customer", asset=table, blocking=True,
        description=f"{table} has exactly one row per customer of cleaned_transactions (orders up to its snapshot).",
    )


def coverage_result(con, table: str, orders: str) -> dg.AssetCheckResult:
    """one_row_per_customer of `table`, the expected customers read from `orders` (see customer_coverage)."""
    res = customer_coverage(con, table, orders)
    return dg.AssetCheckResult(check_name="one_row_per_customer", passed=res.pop("passed"), metadata=res)


CHAMPIONS_SPEC = dg.AssetCheckSpec(
    "champions_are_top_customers", asset="rfm_segments", blocking=True,
    description="Do Champions genuinely represent top-spending customers? Their median monetary >= P80 and "
    "median recency <= P20 of all customers.",
)


def champions_result(validation: dict) -> dg.AssetCheckResult:
    """champions_are_top_customers from rfm.champions_validation of the written table's frame."""
    res = dict(validation)
    return dg.AssetCheckResult(check_name="champions_are_top_customers", passed=res.pop("passed"), metadata=res)


TIERS_SPEC = dg.AssetCheckSpec(
    "tiers_ordered_by_value", asset="loyalty_tiers", blocking=True,
    description="Median monetary strictly decreasing Platinum > Gold > Silver > Bronze, Platinum <= 10% of customers.",
)


def tiers_result(tiers: pd.DataFrame) -> dg.AssetCheckResult:
    """tiers_ordered_by_value from loyalty.tier_validation of the written table's (tier, monetary)."""
    res = loyalty.tier_validation(tiers[["tier", "monetary"]])
    return dg.AssetCheckResult(check_name="tiers_ordered_by_value", passed=res.pop("passed"), metadata={k: dg.MetadataValue.json(v) if isinstance(v, (dict, list)) else v for k, v in res.items()})


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


COHORTS_SPEC = dg.AssetCheckSpec(
    "cohorts_consistent", asset="cohort_retention", blocking=True,
    description="Month 0 retention is 100%, active customers <= cohort size, one size per cohort.",
)


def cohorts_result(con, df: pd.DataFrame) -> dg.AssetCheckResult:
    """cohorts_consistent of the written cohort_retention (`df`: every row of it)."""
    customers = 0
    if table_exists(con, "customer_features"):
        customers = con.execute("SELECT count(*) FROM customer_features").fetchone()[0]
    problems = cohort_problems(df)
    total = int(df.loc[df["months_since_acquisition"] == 0, "cohort_size"].sum())
    return dg.AssetCheckResult(
        check_name="cohorts_consistent",
        passed=not problems,
        metadata={"problems": dg.MetadataValue.json(problems), "cohort_customers": total,
                  "customer_features_rows": int(customers)},
    )


# every check of the stage is a check_spec of its asset (customers/assets.py)
CHECKS: list = []
