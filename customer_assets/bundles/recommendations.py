"""Bundle recommendations from the association rules (all-countries rules only).

Two kinds of rows in `bundle_recommendations` (column recommendation_type):

"dead_stock_bundle": for each dead-stock product P, the partner item sets S from rules P -> S or
S -> P (P alone on one side, so every count is known), best first by
    1. partners that are not dead stock themselves (a best seller pulls P along; two dead items don't),
    2. lift (how much more often P and S are bought together than by chance),
    3. support (how many orders back it), 4. partner popularity (partner_orders).
The top `bundle_partners` are kept, with the evidence: support, both confidences, lift, order counts.

Suggested bundle discount (percent off the bundle), by how dead the product is:
    discount = min_pct + (max_pct - min_pct) * (1 - sold_ratio / dead_ratio), rounded to 5 points,
    kept within [min_pct, max_pct]   (defaults 5% .. 25%: sold nothing -> 25%, just under 60% -> 5%).

"also_bought": "customers who bought X often bought Y" for the `also_bought_top_products` products
in most orders: rules X -> Y with X alone as antecedent, best first by confidence, then lift.
"""

from __future__ import annotations

import warnings

import duckdb
import pandas as pd

from customer_assets.bundles.tables import write_typed

RECOMMENDATION_COLUMNS = {
    "recommendation_type": "VARCHAR",
    "product_id": "VARCHAR",
    "product_name": "VARCHAR",
    "rank": "INTEGER",
    "partner_ids": "VARCHAR[]",
    "partner_names": "VARCHAR",
    "partner_is_dead_stock": "BOOLEAN",
    "support": "DOUBLE",
    "confidence_product_to_partner": "DOUBLE",
    "confidence_partner_to_product": "DOUBLE",
    "lift": "DOUBLE",
    "both_orders": "BIGINT",
    "product_orders": "BIGINT",
    "partner_orders": "BIGINT",
    "sold_ratio": "DOUBLE",
    "suggested_discount_pct": "DOUBLE",
    "evidence": "VARCHAR",
}


def suggested_discount_pct(sold_ratio: float, dead_ratio: float, min_pct: float, max_pct: float) -> float:
    """The documented discount rule (module docstring)."""
    if sold_ratio is None or pd.isna(sold_ratio):
        return float(min_pct)
    depth = 1.0 - min(max(sold_ratio / dead_ratio, 0.0), 1.0)
    pct = 5.0 * round((min_pct + (max_pct - min_pct) * depth) / 5.0)
    return float(min(max(pct, min_pct), max_pct))


def _candidates_sql() -> str:
    """One row per (product, partner set) from rules where the product alone is one side."""
    return """
        WITH r AS (SELECT * FROM association_rules WHERE country = 'ALL'),
        c AS (
            SELECT r.antecedents[1] AS product_id, r.consequents AS partner_ids, r.consequent_names AS partner_names,
                   r.support, r.lift, r.antecedent_orders AS product_orders, r.consequent_orders AS partner_orders,
                   r.both_orders
            FROM r WHERE r.antecedent_len = 1
            UNION ALL
            SELECT r.consequents[1], r.antecedents, r.antecedent_names, r.support, r.lift,
                   r.consequent_orders, r.antecedent_orders, r.both_orders
            FROM r WHERE r.consequent_len = 1)
        SELECT product_id, partner_ids, any_value(partner_names) AS partner_names, max(support) AS support,
               max(lift) AS lift, max(product_orders) AS product_orders, max(partner_orders) AS partner_orders,
               max(both_orders) AS both_orders,
               max(both_orders) / max(product_orders) AS confidence_product_to_partner,
               max(both_orders) / max(partner_orders) AS confidence_partner_to_product
        FROM c GROUP BY product_id, partner_ids
    """


def dead_stock_bundles(
    con: duckdb.DuckDBPyConnection,
    partners: int,
    dead_ratio: float,
    min_pct: float,
    max_pct: float,
) -> pd.DataFrame:
    df = con.execute(
        f"""
        WITH cand AS ({_candidates_sql()}),
        dead AS (SELECT product_id, product_name, sold_ratio FROM dead_stock WHERE is_dead_stock),
        dead_list AS (SELECT coalesce(list(product_id), []::VARCHAR[]) AS ids FROM dead),
        ranked AS (
            SELECT d.product_id, d.product_name, d.sold_ratio, c.*  EXCLUDE (product_id),
                   list_has_any(c.partner_ids, (SELECT ids FROM dead_list)) AS partner_is_dead_stock
            FROM dead d JOIN cand c USING (product_id))
        SELECT *, row_number() OVER (PARTITION BY product_id
                   ORDER BY partner_is_dead_stock, lift DESC, support DESC, partner_orders DESC, partner_names) AS rank
        FROM ranked QUALIFY rank <= ?
        ORDER BY lift DESC, product_id, rank
        """,
        [partners],
    ).df()
    df["recommendation_type"] = "dead_stock_bundle"
    df["suggested_discount_pct"] = [suggested_discount_pct(s, dead_ratio, min_pct, max_pct) for s in df["sold_ratio"]]
    df["evidence"] = [
        f"{b} orders had both ({s:.2%} of orders); {cp:.0%} of orders with {pn} also had this product; "
        f"lift {lf:.1f}; sold ratio {sr:.0%} -> {d:.0f}% off the bundle"
        for b, s, cp, pn, lf, sr, d in zip(
            df["both_orders"], df["support"], df["confidence_partner_to_product"], df["partner_names"],
            df["lift"], df["sold_ratio"], df["suggested_discount_pct"],
        )
    ]
    return df


def also_bought(con: duckdb.DuckDBPyConnection, top_products: int, per_product: int) -> pd.DataFrame:
    df = con.execute(
        """
        WITH top AS (
            SELECT product_id FROM cleaned_transactions WHERE product_id IS NOT NULL
            GROUP BY product_id ORDER BY count(DISTINCT order_id) DESC, product_id LIMIT ?),
        r AS (SELECT * FROM association_rules WHERE country = 'ALL' AND antecedent_len = 1)
        SELECT r.antecedents[1] AS product_id, r.antecedent_names AS product_name, r.consequents AS partner_ids,
               r.consequent_names AS partner_names, r.support, r.confidence AS confidence_product_to_partner,
               r.both_orders / r.consequent_orders AS confidence_partner_to_product, r.lift,
               r.both_orders, r.antecedent_orders AS product_orders, r.consequent_orders AS partner_orders,
               row_number() OVER (PARTITION BY r.antecedents[1]
                                  ORDER BY r.confidence DESC, r.lift DESC, r.consequent_names) AS rank
        FROM r JOIN top t ON r.antecedents[1] = t.product_id
        QUALIFY rank <= ?
        ORDER BY product_orders DESC, product_id, rank
        """,
        [top_products, per_product],
    ).df()
    df["recommendation_type"] = "also_bought"
    df["evidence"] = [
        f"{c:.0%} of the {a} orders with {x} also had {y} ({b} orders, lift {lf:.1f})"
        for c, a, x, y, b, lf in zip(
            df["confidence_product_to_partner"], df["product_orders"], df["product_name"], df["partner_names"],
            df["both_orders"], df["lift"],
        )
    ]
    return df


def build_recommendations(
    con: duckdb.DuckDBPyConnection,
    partners: int,
    dead_ratio: float,
    min_pct: float,
    max_pct: float,
    top_products: int,
) -> pd.DataFrame:
    """Both recommendation kinds with RECOMMENDATION_COLUMNS (missing ones NULL)."""
    frames = [
        dead_stock_bundles(con, partners, dead_ratio, min_pct, max_pct),
        also_bought(con, top_products, partners),
    ]
    out = []
    for f in frames:
        for c in RECOMMENDATION_COLUMNS:
            if c not in f.columns:
                f[c] = None
        out.append(f[list(RECOMMENDATION_COLUMNS)])
    nonempty = [f for f in out if len(f)]
    if len(nonempty) < 2:
        return nonempty[0].reset_index(drop=True) if nonempty else out[0]
    with warnings.catch_warnings():  # all-NULL columns (sold_ratio of also_bought rows) are expected
        warnings.simplefilter("ignore", FutureWarning)
        return pd.concat(nonempty, ignore_index=True)


def write_recommendations(con: duckdb.DuckDBPyConnection, df: pd.DataFrame, table: str = "bundle_recommendations") -> int:
    return write_typed(con, table, df, RECOMMENDATION_COLUMNS)
