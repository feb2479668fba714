"""Association rules over order baskets: exact Apriori counts from DuckDB baskets, mlxtend's rule enumeration.

Why it scales (Online Retail x20: 7.8M cleaned lines, 368k orders, see docs/bundles.md):
1. One cheap pass per product in DuckDB (line counts): a product's line count is >= its order count,
   so only products with at least `min_count = ceil(min_support * n_orders)` lines can be frequent.
2. One pass over cleaned_transactions in DuckDB, grouped by order only: each order's basket of those
   candidate products as a bitstring (`bitstring_agg`, so a product twice on one order counts once),
   then identical baskets are grouped and counted. Nothing transaction-level
   leaves DuckDB: Python gets one row per distinct basket with its number of orders (weight).
3. Exact order counts per product are the weighted bit counts; frequent items are those >= min_count.
4. Apriori level by level on the weighted baskets (vertical layout): all pairs of frequent items are
   counted at once (a sparse X^T W X), then for k >= 3 the Apriori candidates (two frequent
   (k-1)-itemsets sharing their first k-2 items, every (k-1)-subset frequent) are counted by
   intersecting the items' basket lists. Every count is an exact number of orders over all orders
   (no sampling), so support = count / n_orders exactly.
5. mlxtend's `association_rules` enumerates the rules; the metrics are recomputed from the exact
   integer order counts and filtered.
The work after step 2 depends on the number of distinct baskets, not on the number of orders.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import combinations
from typing import Optional

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp

from customer_assets.bundles.tables import empty_sql, write_typed
from customer_assets.common import data_version

# Distinct baskets are decoded from their bitstrings this many at a time (bounds the text block in memory:
# 100k baskets x 635 candidate items = 64 MB at min_support 0.01).
DECODE_CHUNK_ROWS = 100_000

RULE_COLUMNS = {
    "country": "VARCHAR",
    "antecedents": "VARCHAR[]",
    "consequents": "VARCHAR[]",
    "antecedent_names": "VARCHAR",
    "consequent_names": "VARCHAR",
    "antecedent_len": "INTEGER",
    "consequent_len": "INTEGER",
    "support": "DOUBLE",
    "confidence": "DOUBLE",
    "lift": "DOUBLE",
    "leverage": "DOUBLE",
    "conviction": "DOUBLE",
    "antecedent_orders": "BIGINT",
    "consequent_orders": "BIGINT",
    "both_orders": "BIGINT",
    "n_orders": "BIGINT",
}

ALL_COUNTRIES = "ALL"


@dataclass
class MiningStats:
    """What one Apriori run saw (shown as metadata)."""

    country: str
    n_orders: int = 0
    min_count: int = 0
    n_items_total: int = 0
    n_items_frequent: int = 0
    n_matrix_rows: int = 0  # orders holding 2+ frequent items (the only ones that can hold an itemset of 2+)
    n_matrix_nonzeros: int = 0  # (order, frequent item) memberships of those orders
    n_distinct_baskets: int = 0  # distinct baskets of 2+ frequent items among them (what Apriori counts on)
    n_itemsets: int = 0
    n_rules: int = 0
    note: str = ""


@dataclass
class RulesResult:
    rules: pd.DataFrame
    stats: list[MiningStats] = field(default_factory=list)


def empty_rules_frame() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in RULE_COLUMNS})


def rules_table_sql() -> str:
    """An empty rules table with the right column types."""
    return empty_sql(RULE_COLUMNS)


def _validate(min_support: float, min_confidence: float, min_lift: float, max_len: int) -> None:
    if not (0 < min_support <= 1):
        raise ValueError(f"min_support must be in (0, 1], got {min_support}")
    if not (0 <= min_confidence <= 1):
        raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence}")
    if min_lift < 0:
        raise ValueError(f"min_lift must be >= 0, got {min_lift}")
    if max_len < 2:
        raise ValueError(f"max_itemset_len must be >= 2 (a rule needs two items), got {max_len}")


def product_names(con: duckdb.DuckDBPyConnection, as_of=None, product_ids=None) -> dict:
    """product_id -> its most frequent product_name (descriptions vary between lines; a tie goes to the
    alphabetically last, as in dim_product, so the same data always gives the same name).

    `product_ids`: only these products. Every product's name is computed (one scan of every line, or
    a read of the star's name counts, see `from_star`) and kept for the run: association_rules,
    bundle_recommendations and dead_stock all ask."""
    from customer_assets.warehouse.star import product_names_sql

    def every_name() -> dict:
        star_sql = from_star(con, as_of, product_names_sql)
        if star_sql is not None:
            return dict(con.execute(star_sql).fetchall())
        where = "AND order_date <= ?" if as_of is not None else ""
        return dict(con.execute(
            f"""
            SELECT product_id, arg_max(product_name, (n, product_name)) FROM (
                SELECT product_id, product_name, count(*) AS n FROM cleaned_transactions
                WHERE product_id IS NOT NULL AND product_name IS NOT NULL {where}
                GROUP BY ALL)
            GROUP BY product_id
            """,
            [as_of] if as_of is not None else [],
        ).fetchall())

    names = data_version.memoized(con, ("product_names", str(as_of)), every_name)
    if product_ids is None:
        return dict(names)
    return {p: names[p] for p in {str(p) for p in product_ids} if p in names}


def from_star(con: duckdb.DuckDBPyConnection, as_of, star_sql) -> Optional[str]:
    """`star_sql(con)` (a read of the star schema's per-product intermediates, warehouse/star: kept up
    to date from the appended lines, and brought up to date first when only appends happened since)
    when it describes the lines dated on or before `as_of`; None when the intermediates cannot
    describe the current data that way (no star yet, or rebuilt data), or when `as_of` is before the
    data's last date (they hold every line). None: count in cleaned_transactions.
    The date is checked first: `star_sql` may bring the intermediates up to date, which is no use
    when the answer is None anyway."""
    if as_of is not None:
        last = data_version.memoized(con, ("last_order_date",), lambda: con.execute(
            "SELECT max(order_date) FROM cleaned_transactions").fetchone()[0])
        if last is None or last > pd.Timestamp(as_of).date():
            return None
    return star_sql(con)


def product_counts(con: duckdb.DuckDBPyConnection, as_of=None) -> Optional[str]:
    """A SELECT of (product_id, lines, orders) over the lines with a product dated on or before
    `as_of`, from the star's per-product totals, or None (see `from_star`)."""
    from customer_assets.warehouse.star import product_counts_sql

    return from_star(con, as_of, product_counts_sql)


def orders_with_products(con: duckdb.DuckDBPyConnection, as_of=None) -> int:
    """The orders with a product line dated on or before `as_of` (every order when None): the
    support denominator of the rules and of the bundle pairs; counted once per run (read from the
    star's orders when `from_star` allows)."""
    from customer_assets.warehouse.star import orders_with_products_sql

    def count() -> int:
        star_sql = from_star(con, as_of, orders_with_products_sql)
        if star_sql is not None:
            return con.execute(star_sql).fetchone()[0]
        where = "AND order_date <= ?" if as_of is not None else ""
        return con.execute(
            f"SELECT count(DISTINCT order_id) FROM cleaned_transactions "
            f"WHERE order_id IS NOT NULL AND product_id IS NOT NULL {where}",
            [as_of] if as_of is not None else []).fetchone()[0]

    return data_version.memoized(con, ("orders_with_products", str(as_of)), count)


def _distinct_baskets(con, where: str, params: list, candidates: list[str]) -> tuple[sp.csr_matrix, np.ndarray]:
    """The distinct baskets of the candidate products (one row per distinct set, any size >= 1) as a
    0/1 CSR matrix (baskets x candidates, int64), and how many orders hold exactly that set.

    DuckDB groups the lines by order into a bitstring of the candidates (`bitstring_agg`: a product twice
    on one order sets its bit once), then groups identical bitstrings; only orders holding a candidate
    appear. Python decodes the bitstrings DECODE_CHUNK_ROWS baskets at a time."""
    k = len(candidates)
    con.register("__bundle_candidates", pd.DataFrame({
        "product_id": pd.Series(candidates, dtype="string"), "col": np.arange(k, dtype=np.int32)}))
    try:
        reader = con.execute(
            f"""
            SELECT bits::VARCHAR AS bits, count(*) AS orders FROM (
                SELECT bitstring_agg(c.col, 0, {k - 1}) AS bits
                FROM cleaned_transactions t JOIN __bundle_candidates c USING (product_id)
                WHERE {where}
                GROUP BY t.order_id)
            GROUP BY bits
            """,
            params,
        ).to_arrow_reader(DECODE_CHUNK_ROWS)
        rows, cols, weights, start = [], [], [], 0
        for batch in reader:
            # every bitstring is k characters '0'/'1', character i = candidate i
            text = batch.column(0).cast(pa.large_binary())
            offsets = np.frombuffer(text.buffers()[1], dtype=np.int64)[text.offset:text.offset + len(text) + 1]
            chars = np.frombuffer(text.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]]
            r, c = np.nonzero(chars.reshape(len(text), k) == ord("1"))
            rows.append(r + start)
            cols.append(c)
            weights.append(batch.column(1).to_numpy().astype(np.int64))
            start += len(text)
    finally:
        con.unregister("__bundle_candidates")
    r = np.concatenate(rows) if rows else np.array([], dtype=np.int64)
    c = np.concatenate(cols) if cols else np.array([], dtype=np.int64)
    weight = np.concatenate(weights) if weights else np.array([], dtype=np.int64)
    return sp.csr_matrix((np.ones(len(r), dtype=np.int64), (r, c)), shape=(start, k)), weight


def _frequent_itemsets(x: sp.csr_matrix, weight: np.ndarray, min_count: int, max_len: int) -> dict:
    """Apriori with exact weighted counts: {sorted tuple of columns: number of orders} for every itemset
    of 2..max_len frequent items held by >= min_count orders. `x`: distinct baskets x frequent items
    (0/1), `weight`: orders per basket."""
    found: dict = {}
    # k = 2: every pair at once, C = X^T W X (integer sparse product: exact)
    pair_counts = sp.triu((x.T @ x.multiply(weight[:, None]).tocsr()).tocsr(), k=1).tocoo()
    keep = pair_counts.data >= min_count
    level = {(int(a), int(b)): int(n) for a, b, n in
             zip(pair_counts.row[keep], pair_counts.col[keep], pair_counts.data[keep])}
    found.update(level)
    if max_len < 3 or not level:
        return found
    csc = x.tocsc()
    baskets_of = [csc.indices[csc.indptr[c]:csc.indptr[c + 1]] for c in range(x.shape[1])]
    size = 2
    while level and size < max_len:
        # Apriori candidates: S + (b,) for frequent S = P + (a,) and P + (b,), a < b, every size-subset frequent
        by_prefix = defaultdict(list)
        for s in sorted(level):
            by_prefix[s[:-1]].append(s[-1])
        nxt = {}
        for s in sorted(level):
            exts = [b for b in by_prefix[s[:-1]] if b > s[-1]
                    and all(sub in level for sub in combinations(s + (b,), size))]
            if not exts:
                continue
            rows = baskets_of[s[0]]
            for c in s[1:]:
                rows = np.intersect1d(rows, baskets_of[c], assume_unique=True)
            counts = weight[rows] @ x[rows][:, exts]
            for b, n in zip(exts, np.asarray(counts).ravel()):
                if n >= min_count:
                    nxt[s + (b,)] = int(n)
        found.update(nxt)
        level = nxt
        size += 1
    return found


def mine_rules(
    con: duckdb.DuckDBPyConnection,
    min_support: float,
    min_confidence: float,
    min_lift: float,
    max_len: int,
    country: Optional[str] = None,
    as_of=None,
    names: Optional[dict] = None,
    min_orders: int = 1,
) -> tuple[pd.DataFrame, MiningStats]:
    """Rules over the baskets of cleaned_transactions (order_date <= as_of, optionally one country).

    An itemset needs min_support of the orders and at least `min_orders` orders (the floor matters
    for small per-country runs: 1% of 379 French orders would be 4 orders).
    `names`: product_id -> name for the rules' labels (looked up in the data for the rules' products when None).
    Returns (rules, stats); rules has RULE_COLUMNS and is empty when nothing passes.
    """
    from mlxtend.frequent_patterns import association_rules

    _validate(min_support, min_confidence, min_lift, max_len)
    stats = MiningStats(country=country or ALL_COUNTRIES)
    filters, params = ["t.order_id IS NOT NULL", "t.product_id IS NOT NULL"], []
    if as_of is not None:
        filters.append("t.order_date <= ?")
        params.append(as_of)
    if country is not None:
        filters.append("t.country = ?")
        params.append(country)
    where = " AND ".join(filters)
    stats.n_orders = orders_with_products(con, as_of) if country is None else con.execute(
        f"SELECT count(DISTINCT order_id) FROM cleaned_transactions t WHERE {where}", params).fetchone()[0]
    if stats.n_orders == 0:
        stats.note = "no orders with a product_id"
        return empty_rules_frame(), stats
    # The smallest order count that reaches min_support (tolerant to float noise: 0.01*300=3.0000000000000004).
    stats.min_count = max(1, int(min_orders), math.ceil(min_support * stats.n_orders - 1e-9))
    # A product's line count bounds its order count from above: products below min_count lines cannot be frequent.
    counts = product_counts(con, as_of) if country is None else None
    lines = con.execute(
        f"SELECT product_id, lines AS n FROM ({counts}) ORDER BY product_id" if counts else
        f"SELECT product_id, count(*) AS n FROM cleaned_transactions t WHERE {where} "
        f"GROUP BY product_id ORDER BY product_id",
        [] if counts else params,
    ).fetchnumpy()
    stats.n_items_total = len(lines["product_id"])
    candidates = [str(p) for p, n in zip(lines["product_id"], lines["n"]) if n >= stats.min_count]
    item_ids, item_counts = [], {}
    if candidates:
        x, weight = _distinct_baskets(con, where, params, candidates)
        counts = np.asarray(weight @ x).ravel()  # exact order count per candidate product
        frequent_cols = np.flatnonzero(counts >= stats.min_count)
        item_ids = [candidates[c] for c in frequent_cols]
        item_counts = {candidates[c]: int(counts[c]) for c in frequent_cols}
    stats.n_items_frequent = len(item_ids)
    if len(item_ids) < 2:
        stats.note = (f"{len(item_ids)} item(s) reach min_support={min_support} "
                      f"(>= {stats.min_count} orders): no itemset of 2")
        return empty_rules_frame(), stats

    # Only baskets holding 2+ frequent items can hold an itemset of 2+.
    x = x[:, frequent_cols].tocsr()
    sizes = np.diff(x.indptr)
    multi = sizes >= 2
    x, weight, sizes = x[multi], weight[multi], sizes[multi]
    stats.n_matrix_rows = int(weight.sum())
    stats.n_matrix_nonzeros = int((weight * sizes).sum())
    stats.n_distinct_baskets = int(x.shape[0])
    if stats.n_matrix_rows < stats.min_count:
        stats.note = f"only {stats.n_matrix_rows} orders hold 2+ frequent items (< {stats.min_count} needed)"
        return empty_rules_frame(), stats

    itemsets = _frequent_itemsets(x, weight, stats.min_count, max_len)
    del x
    stats.n_itemsets = len(itemsets)
    if stats.n_itemsets == 0:
        stats.note = "no itemset of 2+ items reaches min_support"
        return empty_rules_frame(), stats
    # Single items in column (product_id) order, then each size in lexicographic column order: the order
    # mlxtend's apriori returned them in, so the rules come out in the same order as before.
    ordered = [((item_ids[c],), item_counts[item_ids[c]]) for c in range(len(item_ids))]
    ordered += [(tuple(item_ids[c] for c in s), n) for s, n in sorted(itemsets.items(), key=lambda kv: (len(kv[0]), kv[0]))]
    frequent = pd.DataFrame({
        "itemsets": [frozenset(s) for s, _ in ordered],
        "count": np.array([n for _, n in ordered], dtype=np.int64),
    })
    frequent["support"] = frequent["count"] / stats.n_orders

    count_of = dict(zip(frequent["itemsets"], frequent["count"]))
    # mlxtend enumerates the rules (a little below min_confidence: its float supports carry rounding
    # noise); the metrics are then recomputed from the exact integer order counts and filtered.
    rules = association_rules(
        frequent[["support", "itemsets"]],
        num_itemsets=stats.n_orders,
        metric="confidence",
        min_threshold=max(min_confidence - 1e-9, 0.0),
        return_metrics=["support", "confidence"],
    )
    n = float(stats.n_orders)
    a = rules["antecedents"].map(count_of).to_numpy(dtype=float)
    c = rules["consequents"].map(count_of).to_numpy(dtype=float)
    both = np.array([count_of[x | y] for x, y in zip(rules["antecedents"], rules["consequents"])], dtype=float)
    confidence = both / a if len(rules) else np.array([])
    lift = both * n / (a * c) if len(rules) else np.array([])
    keep = (confidence >= min_confidence) & (lift >= min_lift)
    rules, a, c, both, confidence, lift = rules[keep], a[keep], c[keep], both[keep], confidence[keep], lift[keep]
    stats.n_rules = len(rules)
    if rules.empty:
        stats.note = "itemsets found, but no rule passes min_confidence and min_lift"
        return empty_rules_frame(), stats
    if names is None:
        names = product_names(con, as_of, set().union(*rules["antecedents"], *rules["consequents"]))

    def ids(s):
        return sorted(str(i) for i in s)

    def joined(s):
        return " + ".join(str(names.get(i, i)) for i in ids(s))

    # conviction = (1 - P(C)) / (1 - confidence); +inf when confidence is 1 (mlxtend's convention)
    conviction = np.full(len(confidence), np.inf)
    np.divide(1.0 - c / n, 1.0 - confidence, out=conviction, where=confidence < 1.0)
    out = pd.DataFrame(
        {
            "country": stats.country,
            "antecedents": rules["antecedents"].map(ids).to_numpy(),
            "consequents": rules["consequents"].map(ids).to_numpy(),
            "antecedent_names": rules["antecedents"].map(joined).to_numpy(),
            "consequent_names": rules["consequents"].map(joined).to_numpy(),
            "antecedent_len": rules["antecedents"].map(len).astype("int32").to_numpy(),
            "consequent_len": rules["consequents"].map(len).astype("int32").to_numpy(),
            "support": both / n,
            "confidence": confidence,
            "lift": lift,
            "leverage": both / n - (a / n) * (c / n),
            "conviction": conviction,
            "antecedent_orders": a.astype("int64"),
            "consequent_orders": c.astype("int64"),
            "both_orders": both.astype("int64"),
            "n_orders": stats.n_orders,
        }
    )
    out = out.sort_values(["lift", "support", "confidence"], ascending=False, kind="stable")
    return out.reset_index(drop=True), stats


def countries_for_rules(con: duckdb.DuckDBPyConnection, min_orders: int, as_of=None) -> list[str]:
    """Countries with at least `min_orders` orders (enough baskets to mine on their own)."""
    where = "AND order_date <= ?" if as_of is not None else ""
    rows = con.execute(
        f"""SELECT country FROM cleaned_transactions
            WHERE country IS NOT NULL AND product_id IS NOT NULL {where}
            GROUP BY country HAVING count(DISTINCT order_id) >= ? ORDER BY count(DISTINCT order_id) DESC""",
        ([as_of] if as_of is not None else []) + [min_orders],
    ).fetchall()
    return [r[0] for r in rows]


def build_rules(
    con: duckdb.DuckDBPyConnection,
    min_support: float,
    min_confidence: float,
    min_lift: float,
    max_len: int,
    per_country: bool = False,
    country_min_orders: int = 500,
    as_of=None,
    min_orders: int = 1,
) -> RulesResult:
    """All-countries rules, plus one run per country with enough orders when `per_country`."""
    frames, stats = [], []
    scopes: list[Optional[str]] = [None]
    if per_country:
        scopes += countries_for_rules(con, country_min_orders, as_of)
    for scope in scopes:
        df, st = mine_rules(con, min_support, min_confidence, min_lift, max_len, scope, as_of, None, min_orders)
        stats.append(st)
        if not df.empty:
            frames.append(df)
    rules = pd.concat(frames, ignore_index=True) if frames else empty_rules_frame()
    return RulesResult(rules=rules, stats=stats)


def write_rules(con: duckdb.DuckDBPyConnection, rules: pd.DataFrame, table: str = "association_rules") -> int:
    """Atomically write the rules with fixed column types (an empty result is an empty typed table)."""
    return write_typed(con, table, rules, RULE_COLUMNS)
