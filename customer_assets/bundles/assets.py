"""Bundles assets: thin Dagster glue over dead_stock.py, rules.py and recommendations.py.

The stage's two checks are check_specs of their assets, evaluated inside the asset's step on its
connection (a separate `@dg.asset_check` step costs its own step and Dagster bookkeeping every run)."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd
from dagster_duckdb import DuckDBResource

from customer_assets.bundles.dead_stock import (
    DEAD_STOCK_COLUMNS,
    InventoryError,
    compute_dead_stock,
    write_dead_stock,
)
from customer_assets.bundles.recommendations import (
    RECOMMENDATION_COLUMNS,
    SOURCE_RULES,
    build_recommendations,
    write_recommendations,
)
from customer_assets.bundles.rules import ALL_COUNTRIES, build_rules, rules_table_sql, write_rules
from customer_assets.bundles.tables import empty_sql
from customer_assets.common.db import replace_table, resolve_as_of, table_exists
from customer_assets.common.metadata import df_to_markdown, fig_to_md, table_metadata
from customer_assets.common.plotting import plt
from customer_assets.ingestion.schema import field_available
from customer_assets.resources import SourceConfig
from customer_assets.settings import AnalyticsSettings

GROUP = "bundles"


def _skip(con, table: str, empty_select: str, reason: str, check_results=None) -> dg.MaterializeResult:
    replace_table(con, table, empty_select)
    return dg.MaterializeResult(
        metadata={**table_metadata(con, table), "skipped": True, "skip_reason": reason},
        check_results=check_results,
    )


INVENTORY_COVERAGE = "dead_stock_inventory_coverage"
INVENTORY_COVERAGE_SPEC = dg.AssetCheckSpec(
    INVENTORY_COVERAGE, asset="dead_stock", blocking=False,
    description="WARN when the inventory file misses products sold in the window (their stock is unknown, "
    "so they cannot be judged) or when dead stock was judged by the proxy instead of stock levels.",
)
RULES_RECOUNT = "rules_recount_from_transactions"
RULES_RECOUNT_SPEC = dg.AssetCheckSpec(
    RULES_RECOUNT, asset="association_rules", blocking=False,
    description="The 10 highest-lift rules recounted straight from cleaned_transactions: order counts, "
    "support, confidence and lift must match the table.",
)


def _dead_stock_plot(df: pd.DataFrame, ratio: float, method: str) -> str:
    fig, ax = plt.subplots(figsize=(7, 3.5))
    vals = df["sold_ratio"].dropna().clip(upper=2.0).to_numpy()
    # the stacked histogram as two filled step artists (the second on top of the first) instead of
    # a Rectangle per bin and dataset: the same counts and bins as ax.hist(stacked=True), and the
    # same picture (pixel-identical at N=20), drawn ~30% faster
    edges = np.linspace(0, 2, 41)
    dead, _ = np.histogram(vals[vals < ratio], edges)
    selling, _ = np.histogram(vals[vals >= ratio], edges)
    ax.stairs(dead, edges, fill=True, color="#c0392b", label=f"dead stock (< {ratio:g})")
    ax.stairs(dead + selling, edges, baseline=dead, fill=True, color="#7f8c8d", label="selling")
    ax.axvline(ratio, color="black", ls="--", lw=1)
    ax.set_xlabel("sold ratio (clipped at 2)")
    ax.set_ylabel("products")
    ax.set_title(f"Sold ratio per product ({method})")
    ax.legend(loc="upper center")
    return fig_to_md(fig, "sold ratio histogram")


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb"},
    pool="duckdb",
    deps=["cleaned_transactions"],
    description="Per product: units sold in the window / units available (inventory file), or, without "
    "an inventory file, recent sales velocity / the product's own earlier velocity (method 'proxy: "
    "velocity'). sold_ratio < dead_stock_ratio (0.6) is dead stock.",
    check_specs=[INVENTORY_COVERAGE_SPEC],
)
def dead_stock(duckdb: DuckDBResource, settings: AnalyticsSettings, source: SourceConfig) -> dg.MaterializeResult:
    empty = empty_sql(DEAD_STOCK_COLUMNS)
    with duckdb.get_connection() as con:
        for f in ("product_id", "quantity"):
            if not field_available(con, f):
                return _skip(con, "dead_stock", empty, f"the source has no {f}: units sold per product are unknown",
                             [inventory_coverage(con)])
        as_of = resolve_as_of(con, settings.as_of_date())
        try:
            res = compute_dead_stock(con, source.inventory, as_of, settings.dead_stock_ratio,
                                     settings.dead_stock_window_days, settings.dead_stock_baseline_days)
        except InventoryError as e:
            raise dg.Failure(description=f"{e}. Fix the file, or set the inventory path empty to use the "
                             "sales-velocity proxy.") from None
        write_dead_stock(con, res.frame)
        df = res.frame
        n_dead = int(df["is_dead_stock"].sum())
        return dg.MaterializeResult(
            metadata={
                **table_metadata(con, "dead_stock", order_by="is_dead_stock DESC, sold_ratio, product_id"),
                "method": res.method,
                "is_proxy": res.method != "inventory",
                "dead_stock_products": n_dead,
                "products_judged": len(df),
                "dead_share": float(n_dead / len(df)) if len(df) else 0.0,
                "as_of": str(as_of),
                "dead_stock_ratio": settings.dead_stock_ratio,
                "notes": dg.MetadataValue.json(res.notes),
                "stats": dg.MetadataValue.json(res.stats),
                "plot": dg.MetadataValue.md(_dead_stock_plot(df, settings.dead_stock_ratio, res.method)),
            },
            check_results=[inventory_coverage(con)],
        )


def _rules_plot(rules: pd.DataFrame) -> str:
    fig, ax = plt.subplots(figsize=(7, 4))
    r = rules[rules["country"] == ALL_COUNTRIES]
    sc = ax.scatter(r["support"], r["confidence"], c=np.log10(r["lift"]), s=12, cmap="viridis", alpha=0.8)
    cb = fig.colorbar(sc, ax=ax)
    cb.set_label("log10(lift)")
    ax.set_xscale("log")
    ax.set_xlabel("support (share of orders, log scale)")
    ax.set_ylabel("confidence")
    ax.set_title(f"{len(r)} association rules (all countries)")
    return fig_to_md(fig, "rules: support vs confidence")


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb", "mlxtend"},
    pool="duckdb",
    # no dependency on the star schema, whose per-product totals the bundle steps read when they are
    # up to date (bundles/rules.product_counts): waiting for them held a thread idle for 5 s while the
    # full build rebuilt them (N=20: 52.9 s against 48.5-51 s)
    deps=["cleaned_transactions"],
    description="Association rules from Apriori with exact order counts over every basket (baskets built "
    "in DuckDB, identical baskets counted once with their number of orders; mlxtend enumerates the rules): "
    "antecedents, consequents (+ names), support, confidence, lift, leverage, conviction, order counts; "
    "country 'ALL' plus one run per large country when rules_per_country.",
    check_specs=[RULES_RECOUNT_SPEC],
)
def association_rules(duckdb: DuckDBResource, settings: AnalyticsSettings) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        if not field_available(con, "product_id"):
            return _skip(con, "association_rules", rules_table_sql(), "the source has no product_id: no baskets",
                         [rules_recount(con, None)])
        as_of = resolve_as_of(con, settings.as_of_date())
        try:
            res = build_rules(con, settings.min_support, settings.min_confidence, settings.min_lift,
                              settings.max_itemset_len, settings.rules_per_country,
                              settings.rules_country_min_orders, as_of=as_of,
                              min_orders=settings.rules_min_orders)
        except ValueError as e:  # invalid thresholds
            raise dg.Failure(description=str(e)) from None
        write_rules(con, res.rules)
        stats = pd.DataFrame([vars(s) for s in res.stats])
        meta = {
            **table_metadata(con, "association_rules", order_by="country = 'ALL' DESC, lift DESC, support DESC"),
            "empty": res.rules.empty,
            "mining_runs": dg.MetadataValue.md(df_to_markdown(stats, max_rows=50)),
            "settings": dg.MetadataValue.json({
                "min_support": settings.min_support, "min_confidence": settings.min_confidence,
                "min_lift": settings.min_lift, "max_itemset_len": settings.max_itemset_len,
                "rules_per_country": settings.rules_per_country, "rules_min_orders": settings.rules_min_orders,
                "as_of": str(as_of)}),
        }
        if res.rules.empty:
            meta["empty_reason"] = "no rule passes the thresholds: " + "; ".join(
                f"{s.country}: {s.note}" for s in res.stats)
        else:
            meta["plot"] = dg.MetadataValue.md(_rules_plot(res.rules))
        return dg.MaterializeResult(metadata=meta, check_results=[rules_recount(con, as_of)])


def _recs_plot(df: pd.DataFrame) -> str:
    d = df[(df["recommendation_type"] == "dead_stock_bundle") & (df["rank"] == 1)].nlargest(15, "both_orders")
    fig, ax = plt.subplots(figsize=(8, 0.35 * max(len(d), 3) + 1))
    labels = [f"{str(a)[:28]} + {str(b)[:28]}" for a, b in zip(d["product_name"], d["partner_names"])][::-1]
    colors = ["#2980b9" if src == SOURCE_RULES else "#e67e22" for src in d["evidence_source"]][::-1]
    vals = d["both_orders"].to_numpy()[::-1]
    ax.barh(labels, vals, color=colors)
    for i, (v, lf, disc) in enumerate(zip(vals, d["lift"].to_numpy()[::-1], d["suggested_discount_pct"].to_numpy()[::-1])):
        ax.text(v, i, f" lift {lf:.0f}, {disc:.0f}% off", va="center", fontsize=8)
    ax.set_xlabel("orders with both (blue: association rule, orange: co-purchase pair below min_support)")
    ax.set_title("Best bundle per dead-stock product (15 with the most orders together)")
    ax.set_xlim(0, vals.max() * 1.3 if len(vals) else 1)
    return fig_to_md(fig, "dead stock bundles")


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb"},
    pool="duckdb",
    deps=["dead_stock", "association_rules"],
    description="For each dead-stock product, the best complementary products from the rules (not-dead "
    "partners first, then lift, support, partner popularity) with evidence and a suggested bundle "
    "discount; plus 'customers who bought X often bought Y' for the best sellers.",
)
def bundle_recommendations(duckdb: DuckDBResource, settings: AnalyticsSettings) -> dg.MaterializeResult:
    empty = empty_sql(RECOMMENDATION_COLUMNS)
    with duckdb.get_connection() as con:
        for t in ("dead_stock", "association_rules"):
            if not table_exists(con, t):
                return _skip(con, "bundle_recommendations", empty, f"{t} has not been materialized")
        as_of = resolve_as_of(con, settings.as_of_date())
        df = build_recommendations(con, settings.bundle_partners, settings.dead_stock_ratio,
                                   settings.bundle_discount_min_pct, settings.bundle_discount_max_pct,
                                   settings.also_bought_top_products, as_of, settings.bundle_pair_fallback,
                                   settings.rules_min_orders, settings.min_confidence, settings.min_lift)
        write_recommendations(con, df)
        n_dead = con.execute("SELECT count(*) FROM dead_stock WHERE is_dead_stock").fetchone()[0]
        bundles = df[df["recommendation_type"] == "dead_stock_bundle"]
        also = df[df["recommendation_type"] == "also_bought"]
        covered = bundles["product_id"].nunique()
        by_rules = bundles.loc[bundles["evidence_source"] == SOURCE_RULES, "product_id"].nunique()
        cols = ["product_name", "rank", "partner_names", "lift", "support", "confidence_partner_to_product",
                "both_orders", "sold_ratio", "suggested_discount_pct", "evidence_source"]
        meta = {
            **table_metadata(con, "bundle_recommendations"),
            "dead_stock_products": int(n_dead),
            "dead_stock_products_with_bundle": int(covered),
            "dead_stock_products_with_rule": int(by_rules),
            "coverage_note": (
                f"{by_rules} of {n_dead} dead-stock products appear in a rule at min_support "
                f"{settings.min_support}; {covered - by_rules} more get a co-purchase pair below min_support "
                f"(>= {settings.rules_min_orders} orders together; bundle_pair_fallback="
                f"{settings.bundle_pair_fallback}); {n_dead - covered} have no partner with enough evidence."),
            "dead_stock_bundles": dg.MetadataValue.md(df_to_markdown(bundles[cols], max_rows=20)),
            "customers_who_bought_x_also_bought_y": dg.MetadataValue.md(df_to_markdown(
                also[["product_name", "rank", "partner_names", "confidence_product_to_partner", "lift",
                      "both_orders"]], max_rows=30)),
        }
        if len(bundles):
            meta["plot"] = dg.MetadataValue.md(_recs_plot(df))
        return dg.MaterializeResult(metadata=meta)


def rules_recount(con, as_of) -> dg.AssetCheckResult:
    """rules_recount_from_transactions of the written association_rules, on the asset's connection
    (`as_of`: the asset's; not read when there is no 'ALL' rule)."""
    if not table_exists(con, "association_rules") or con.execute(
            "SELECT count(*) FROM association_rules WHERE country = 'ALL'").fetchone()[0] == 0:
        return dg.AssetCheckResult(check_name=RULES_RECOUNT, passed=True, metadata={"note": "no rules to recount"})
    df = con.execute(
        """
        WITH top AS (
            SELECT row_number() OVER (ORDER BY lift DESC, support DESC) AS rid, * FROM association_rules
            WHERE country = 'ALL' ORDER BY lift DESC, support DESC LIMIT 10),
        sides AS (
            SELECT rid, 'a' AS side, unnest(antecedents) AS pid, antecedent_len AS k FROM top
            UNION ALL SELECT rid, 'c', unnest(consequents), consequent_len FROM top
            UNION ALL SELECT rid, 'b', unnest(list_concat(antecedents, consequents)),
                             antecedent_len + consequent_len FROM top),
        b AS (SELECT DISTINCT order_id, product_id FROM cleaned_transactions
              WHERE order_date <= ? AND product_id IN (SELECT pid FROM sides)),
        hits AS (SELECT s.rid, s.side, b.order_id FROM sides s JOIN b ON b.product_id = s.pid
                 GROUP BY s.rid, s.side, b.order_id HAVING count(*) = any_value(s.k)),
        n AS (SELECT count(DISTINCT order_id) AS n FROM cleaned_transactions
              WHERE order_date <= ? AND product_id IS NOT NULL),
        cnt AS (SELECT rid, count(*) FILTER (WHERE side = 'a') AS a, count(*) FILTER (WHERE side = 'c') AS c,
                       count(*) FILTER (WHERE side = 'b') AS both FROM hits GROUP BY rid)
        SELECT t.antecedent_names, t.consequent_names, t.both_orders, cnt.both AS both_recount,
               t.confidence, cnt.both / cnt.a AS confidence_recount,
               t.lift, (cnt.both / cnt.a) / (cnt.c / n.n) AS lift_recount
        FROM top t JOIN cnt USING (rid), n ORDER BY rid
        """,
        [as_of, as_of],
    ).df()
    ok = bool(
        len(df) > 0
        and (df["both_orders"] == df["both_recount"]).all()
        and np.allclose(df["confidence"], df["confidence_recount"], rtol=1e-9)
        and np.allclose(df["lift"], df["lift_recount"], rtol=1e-9)
    )
    return dg.AssetCheckResult(check_name=RULES_RECOUNT, passed=ok,
                               metadata={"recount": dg.MetadataValue.md(df_to_markdown(df))})


def inventory_coverage(con) -> dg.AssetCheckResult:
    """dead_stock_inventory_coverage of the written dead_stock, on the asset's connection."""
    if not table_exists(con, "dead_stock") or con.execute("SELECT count(*) FROM dead_stock").fetchone()[0] == 0:
        return dg.AssetCheckResult(check_name=INVENTORY_COVERAGE, passed=True, severity=dg.AssetCheckSeverity.WARN,
                                   metadata={"note": "dead_stock is empty"})
    method, start, end = con.execute(
        "SELECT any_value(method), min(window_start), max(window_end) FROM dead_stock").fetchone()
    sold, missing = con.execute(
        # the window's distinct products first: the NOT IN then looks up ~3k products, not every line
        """SELECT count(*), count(*) FILTER (WHERE product_id NOT IN (SELECT product_id FROM dead_stock)) FROM (
               SELECT DISTINCT product_id FROM cleaned_transactions
               WHERE order_date >= ? AND order_date <= ? AND product_id IS NOT NULL)""",
        [start, end],
    ).fetchone()
    share = missing / sold if sold else 0.0
    passed = method == "inventory" and share <= 0.05
    return dg.AssetCheckResult(
        check_name=INVENTORY_COVERAGE,
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"method": method, "products_sold_in_window": int(sold),
                  "sold_but_not_judged": int(missing), "share_not_judged": float(share)},
        description=None if passed else (
            "dead stock judged by the sales-velocity proxy, not stock levels" if method != "inventory"
            else f"{share:.0%} of the products sold in the window are missing from the inventory file"),
    )


ASSETS = [dead_stock, association_rules, bundle_recommendations]
CHECKS: list = []  # rules_recount_from_transactions and dead_stock_inventory_coverage are check_specs
