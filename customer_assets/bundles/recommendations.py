"""Bundle recommendations from the association rules (all-countries rules only).

Two kinds of rows in `bundle_recommendations` (column recommendation_type):

"dead_stock_bundle": for each dead-stock product P, the partner item sets S from rules P -> S or
S -> P (P alone on one side, so every count is known), best first by
    1. partners that are not dead stock themselves (a best seller pulls P along; two dead items don't),
    2. lift (how much more often P and S are bought together than by chance),
    3. support (how many orders back it), 4. partner popularity (partner_orders).
The top `bundle_partners` are kept, with the evidence: support, both confidences, lift, order counts.
Dead-stock products that are in no rule (too rare for min_support) get, when `pair_fallback` is on,
single partners Q from co-purchase pairs counted in SQL over all orders up to as_of: at least
`min_orders` orders with both, lift >= min_lift and confidence (either direction) >= min_confidence,
i.e. the pair rules P -> Q / Q -> P below min_support. evidence_source says which kind a row is.

Suggested bundle discount (percent off the bundle), by how dead the product is:
    discount = min_pct + (max_pct - min_pct) * (1 - sold_ratio / dead_ratio), rounded to 5 points,
    kept within [min_pct, max_pct]   (defaults 5% .. 25%: sold nothing -> 25%, just under 60% -> 5%).

"also_bought": "customers who bought X often bought Y" for the `also_bought_top_products` products
in most orders: rules X -> Y with X alone as antecedent, best first by confidence, then lift.
"""

from __future__ import annotations

import uuid
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
    "evidence_source": "VARCHAR",
    "evidence": "VARCHAR",
}

SOURCE_RULES = "association_rules"
SOURCE_PAIRS = "co-purchase pair below min_support"


def suggested_discount_pct(sold_ratio: float, dead_ratio: float, min_pct: float, max_pct: float) -> float:
    """The documented discount rule (module docstring)."""
    if sold_ratio is None or pd.isna(sold_ratio):
        return float(min_pct)
    depth = 1.0 - min(max(sold_ratio / dead_ratio, 0.0), 1.0)
    pct = 5.0 * round((min_pct + (max_pct - min_pct) * depth) / 5.0)
    return float(min(max(pct, min_pct), max_pct))


def _candidates_sql() -> str:
    """One row per (product, partner set) from rules where the product alone is one side."""
    return f"""
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
               max(both_orders) / max(partner_orders) AS confidence_partner_to_product,
               '{SOURCE_RULES}' AS evidence_source
        FROM c GROUP BY product_id, partner_ids
    """


def pair_candidates(
    con: duckdb.DuckDBPyConnection,
    product_ids: list[str],
    as_of,
    min_orders: int,
    min_confidence: float,
    min_lift: float,
    top: int | None = None,
    dead_ids: set[str] | None = None,
) -> pd.DataFrame:
    """Single partners Q for each product P in `product_ids`, counted in SQL over the baskets up to
    as_of: >= min_orders orders with both, lift >= min_lift, confidence P->Q or Q->P >= min_confidence.
    Same columns as _candidates_sql (evidence_source = SOURCE_PAIRS). With `top` and `dead_ids` (the
    dead-stock products), only pairs that can still be among the `top` of their product in
    dead_stock_bundles' ranking are returned (the others cannot change its result)."""
    from customer_assets.bundles.rules import orders_with_products, product_counts, product_names

    # Only the dead products' orders are expanded: their distinct lines (d), the lines of those orders
    # per (order, product) (o) and the pairs counted from them. The lift and confidence denominators
    # (each partner's distinct orders, k) need the full table; they are counted exactly only for the
    # partners that can still rank in the top `top` of some product. Bounds without that count, from o
    # and line counts: k >= its orders among the dead products' orders (lo) and
    # k <= lo + its lines outside them (hi), so lift lies in [both*n/(kp*hi), both*n/(kp*lo)]. A pair is
    # dropped when `top` pairs of the same product that surely pass the thresholds surely rank above it
    # (non-dead partner before dead; same kind: lift lower bound above its upper bound).
    tag = uuid.uuid4().hex[:8]
    d0, ok, pk, d, o, pairs = (f"__pair_{x}_{tag}" for x in ("d0", "ok", "pk", "d", "o", "pairs"))
    where = "product_id IS NOT NULL AND order_id IS NOT NULL AND order_date <= $as_of"
    con.register("__pair_products", pd.DataFrame({"product_id": pd.Series(product_ids, dtype="string")}))
    try:
        # integer keys for the orders and products in the join (ok, pk): the pair join and its group-by
        # are the bulk of the work when the dead products' orders are most orders
        con.execute(
            f"CREATE TEMP TABLE {d0} AS SELECT DISTINCT order_id, product_id FROM cleaned_transactions "
            f"WHERE {where} AND product_id IN (SELECT product_id FROM __pair_products)",
            {"as_of": as_of},
        )
        con.execute(f"CREATE TEMP TABLE {ok} AS SELECT order_id, (row_number() OVER ())::INTEGER AS ok "
                    f"FROM (SELECT DISTINCT order_id FROM {d0})")
        # per-product lines and orders from the star schema's totals when they fit as_of (else counted here)
        counts = product_counts(con, as_of)
        scan_as_of = {} if counts else {"as_of": as_of}  # $as_of appears only where the lines are scanned
        # every product gets its key up front (a few thousand strings), so the lines of the dead products'
        # orders are grouped by two integers in one pass instead of by (order key, product_id) and then
        # joined to the product keys
        con.execute(f"CREATE TEMP TABLE {pk} AS SELECT product_id, (row_number() OVER ())::INTEGER AS pk "
                    + (f"FROM ({counts})" if counts else
                       f"FROM (SELECT DISTINCT product_id FROM cleaned_transactions WHERE {where})"),
                    scan_as_of)
        con.execute(
            f"CREATE TEMP TABLE {o} AS SELECT k.ok, p.pk, count(*) AS lines FROM cleaned_transactions c "
            f"JOIN {ok} k USING (order_id) JOIN {pk} p USING (product_id) WHERE {where} GROUP BY ALL",
            {"as_of": as_of},
        )
        con.execute(f"CREATE TEMP TABLE {d} AS SELECT k.ok, p.pk, d.product_id FROM {d0} d "
                    f"JOIN {ok} k USING (order_id) JOIN {pk} p USING (product_id)")
        n = orders_with_products(con, as_of)
        prune = top is not None and dead_ids is not None
        if prune:
            con.register("__pair_dead_ids", pd.DataFrame({"product_id": pd.Series(sorted(dead_ids), dtype="string")}))
        keep = f"""
            , lo AS (SELECT p.product_id, o.lo, o.lines_in FROM {pk} p JOIN (
                       SELECT pk, count(*) AS lo, sum(lines) AS lines_in FROM {o} GROUP BY ALL) o USING (pk)),
            allc AS ({f"SELECT product_id, lines FROM ({counts}) WHERE" if counts else
                      f"SELECT product_id, count(*) AS lines FROM cleaned_transactions WHERE {where} AND"}
                     product_id IN (SELECT partner FROM raw) {"" if counts else "GROUP BY ALL"}),
            kp AS (SELECT product_id, count(*) AS kp FROM {d} GROUP BY ALL),
            b AS (SELECT r.*, kp.kp, lo.lo, lo.lo + a.lines - lo.lines_in AS hi,
                         r.partner IN (SELECT product_id FROM __pair_dead_ids) AS dead
                  FROM raw r JOIN kp USING (product_id) JOIN lo ON lo.product_id = r.partner
                       JOIN allc a ON a.product_id = r.partner),
            f AS (SELECT *, both_orders * $n / (kp * hi) AS lift_lo, both_orders * $n / (kp * lo) AS lift_hi,
                         both_orders * $n / (kp * hi) >= $min_lift
                           AND greatest(both_orders / kp, both_orders / hi) >= $min_conf AS sure,
                         both_orders * $n / (kp * lo) >= $min_lift
                           AND greatest(both_orders / kp, both_orders / lo) >= $min_conf AS maybe
                  FROM b),
            s AS (SELECT product_id, dead, lift_lo,
                         row_number() OVER (PARTITION BY product_id, dead ORDER BY lift_lo DESC) AS i
                  FROM f WHERE sure),
            kth AS (SELECT product_id, dead, lift_lo AS kth FROM s WHERE i = $top),
            alive AS (SELECT product_id, count(*) AS alive FROM s WHERE NOT dead GROUP BY ALL)
            SELECT f.product_id, f.partner, f.both_orders FROM f
                LEFT JOIN kth ON kth.product_id = f.product_id AND kth.dead = f.dead
                LEFT JOIN alive ON alive.product_id = f.product_id
            WHERE f.maybe AND NOT coalesce(kth.kth > f.lift_hi, false)
              AND NOT (f.dead AND coalesce(alive.alive, 0) >= $top)
        """ if prune else " SELECT * FROM raw"
        con.execute(
            f"CREATE TEMP TABLE {pairs} AS WITH raw AS ("
            f"SELECT pp.product_id, pq.product_id AS partner, r.both_orders FROM ("
            f"SELECT d.pk AS p, o.pk AS q, count(*) AS both_orders FROM {d} d JOIN {o} o ON o.ok = d.ok AND o.pk <> d.pk "
            f"GROUP BY ALL HAVING count(*) >= $min_orders) r JOIN {pk} pp ON pp.pk = r.p JOIN {pk} pq ON pq.pk = r.q)"
            + keep,
            {"min_orders": min_orders, **scan_as_of, "n": n, "min_lift": min_lift, "min_conf": min_confidence,
             "top": top} if prune else {"min_orders": min_orders},
        )
        df = con.execute(
            f"""
            WITH cnt AS ({f"SELECT product_id, orders AS k FROM ({counts}) WHERE" if counts else
                          f"SELECT product_id, count(DISTINCT order_id) AS k FROM cleaned_transactions WHERE {where} AND"}
                         product_id IN (SELECT product_id FROM {pairs} UNION SELECT partner FROM {pairs})
                         {"" if counts else "GROUP BY ALL"}),
            m AS (SELECT pr.product_id, [pr.partner] AS partner_ids, pr.both_orders / $n AS support,
                         pr.both_orders * $n / (cp.k * cq.k) AS lift, cp.k AS product_orders,
                         cq.k AS partner_orders, pr.both_orders,
                         pr.both_orders / cp.k AS confidence_product_to_partner,
                         pr.both_orders / cq.k AS confidence_partner_to_product
                  FROM {pairs} pr JOIN cnt cp ON cp.product_id = pr.product_id
                       JOIN cnt cq ON cq.product_id = pr.partner)
            SELECT * FROM m
            WHERE lift >= $min_lift
              AND greatest(confidence_product_to_partner, confidence_partner_to_product) >= $min_conf
            """,
            {**scan_as_of, "n": n, "min_lift": min_lift, "min_conf": min_confidence},
        ).df()
    finally:
        con.unregister("__pair_products")
        if top is not None and dead_ids is not None:
            con.unregister("__pair_dead_ids")
        for t in (d0, ok, pk, d, o, pairs):
            con.execute(f"DROP TABLE IF EXISTS {t}")
    names = product_names(con, as_of, {ids[0] for ids in df["partner_ids"]}) if len(df) else {}
    df["partner_names"] = [names.get(ids[0], ids[0]) for ids in df["partner_ids"]]
    df["evidence_source"] = SOURCE_PAIRS
    return df


def dead_stock_bundles(
    con: duckdb.DuckDBPyConnection,
    partners: int,
    dead_ratio: float,
    min_pct: float,
    max_pct: float,
    as_of=None,
    pair_fallback: bool = False,
    min_orders: int = 20,
    min_confidence: float = 0.05,
    min_lift: float = 1.0,
) -> pd.DataFrame:
    if pair_fallback and as_of is None:
        raise ValueError("pair_fallback needs as_of (the baskets are counted up to it)")
    dead = con.execute("SELECT product_id, product_name, sold_ratio FROM dead_stock WHERE is_dead_stock").df()
    cand = con.execute(_candidates_sql()).df()
    if pair_fallback:
        uncovered = sorted(set(dead["product_id"]) - set(cand["product_id"]))
        if uncovered:
            pairs = pair_candidates(con, uncovered, as_of, min_orders, min_confidence, min_lift,
                                    top=partners, dead_ids=set(dead["product_id"]))
            if len(pairs):
                cand = pd.concat([cand, pairs[list(cand.columns)]], ignore_index=True) if len(cand) else pairs
    dead_ids = set(dead["product_id"])
    cand = cand[cand["product_id"].isin(dead_ids)].copy()
    cand["partner_is_dead_stock"] = [any(p in dead_ids for p in ids) for ids in cand["partner_ids"]]
    con.register("__bundle_dead", dead)
    con.register("__bundle_cand", cand)
    try:
        df = con.execute(
            """
            WITH ranked AS (
                SELECT d.product_id, d.product_name, d.sold_ratio, c.* EXCLUDE (product_id)
                FROM __bundle_dead d JOIN __bundle_cand c USING (product_id))
            SELECT *, row_number() OVER (PARTITION BY product_id
                       ORDER BY partner_is_dead_stock, lift DESC, support DESC, partner_orders DESC, partner_names) AS rank
            FROM ranked QUALIFY rank <= ?
            ORDER BY evidence_source, lift DESC, product_id, rank
            """,
            [partners],
        ).df()
    finally:
        con.unregister("__bundle_dead")
        con.unregister("__bundle_cand")
    df["recommendation_type"] = "dead_stock_bundle"
    df["suggested_discount_pct"] = [suggested_discount_pct(s, dead_ratio, min_pct, max_pct) for s in df["sold_ratio"]]
    df["evidence"] = [
        f"{b} orders had both ({s:.2%} of orders{'' if src == SOURCE_RULES else ', below min_support'}); "
        f"{cp:.0%} of orders with {pn} also had this product; lift {lf:.1f}; sold ratio {sr:.0%} -> {d:.0f}% off the bundle"
        for b, s, cp, pn, lf, sr, d, src in zip(
            df["both_orders"], df["support"], df["confidence_partner_to_product"], df["partner_names"],
            df["lift"], df["sold_ratio"], df["suggested_discount_pct"], df["evidence_source"],
        )
    ]
    return df


def most_ordered_products(con: duckdb.DuckDBPyConnection, k: int) -> list[str]:
    """The k products in the most orders of cleaned_transactions (ties: product_id), exactly.

    Without counting every product's distinct orders (one hash entry per order line at scale): a
    product's line count is >= its order count, so once the k-th best order count t among the products
    with the most lines is known, only products with >= t lines can still be in the top k; their order
    counts are added until none is missing. With the star schema's per-product totals up to date
    (bundles.rules.product_counts) the order counts are read from them instead."""
    from customer_assets.bundles.rules import product_counts

    if k <= 0:
        return []
    counts = product_counts(con)
    if counts is not None:
        return [p for (p,) in con.execute(
            f"SELECT product_id FROM ({counts}) ORDER BY orders DESC, product_id LIMIT ?", [k]).fetchall()]
    lines = con.execute(
        "SELECT product_id, count(*) AS n FROM cleaned_transactions WHERE product_id IS NOT NULL "
        "GROUP BY product_id ORDER BY n DESC, product_id"
    ).fetchall()
    m = min(k, len(lines))
    while True:
        con.register("__top_ids", pd.DataFrame({"product_id": pd.Series([p for p, _ in lines[:m]], dtype="string")}))
        try:
            exact = con.execute(
                "SELECT product_id, count(DISTINCT order_id) AS n FROM cleaned_transactions "
                "WHERE product_id IN (SELECT product_id FROM __top_ids) GROUP BY product_id ORDER BY n DESC, product_id"
            ).fetchall()[:k]
        finally:
            con.unregister("__top_ids")
        if not exact:  # no product at all
            return []
        threshold = exact[-1][1]
        need = sum(1 for _, n in lines if n >= threshold)
        if len(exact) < k or need <= m:
            return [p for p, _ in exact]
        m = need


def also_bought(con: duckdb.DuckDBPyConnection, top_products: int, per_product: int) -> pd.DataFrame:
    top = most_ordered_products(con, top_products)
    con.register("__also_top", pd.DataFrame({"product_id": pd.Series(top, dtype="string")}))
    try:
        df = _also_bought_rules(con, per_product)
    finally:
        con.unregister("__also_top")
    df["recommendation_type"] = "also_bought"
    df["evidence_source"] = SOURCE_RULES
    df["evidence"] = [
        f"{c:.0%} of the {a} orders with {x} also had {y} ({b} orders, lift {lf:.1f})"
        for c, a, x, y, b, lf in zip(
            df["confidence_product_to_partner"], df["product_orders"], df["product_name"], df["partner_names"],
            df["both_orders"], df["lift"],
        )
    ]
    return df


def _also_bought_rules(con: duckdb.DuckDBPyConnection, per_product: int) -> pd.DataFrame:
    return con.execute(
        """
        WITH top AS (SELECT product_id FROM __also_top),
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
        [per_product],
    ).df()


def build_recommendations(
    con: duckdb.DuckDBPyConnection,
    partners: int,
    dead_ratio: float,
    min_pct: float,
    max_pct: float,
    top_products: int,
    as_of=None,
    pair_fallback: bool = False,
    min_orders: int = 20,
    min_confidence: float = 0.05,
    min_lift: float = 1.0,
) -> pd.DataFrame:
    """Both recommendation kinds with RECOMMENDATION_COLUMNS (missing ones NULL)."""
    frames = [
        dead_stock_bundles(con, partners, dead_ratio, min_pct, max_pct, as_of, pair_fallback, min_orders,
                           min_confidence, min_lift),
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
