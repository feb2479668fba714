"""Association rules over order baskets: DuckDB builds the baskets, mlxtend's Apriori mines them.

Why it scales (Online Retail x20: ~10.8M lines, ~518k orders, see docs/bundles.md):
1. Baskets are built in DuckDB (DISTINCT order_id, product_id) into a temp table; nothing
   transaction-level is pulled into pandas.
2. Items are filtered in SQL to those whose order count can reach min support
   (`count >= ceil(min_support * n_orders)`). No other item can be in a frequent itemset.
3. Orders are filtered in SQL to those holding >= 2 of those items: only they can contain an
   itemset of length >= 2. Single-item counts come from SQL over *all* orders, so every support
   is still relative to every order (exact, not sampled).
4. The remaining (order, item) pairs are handed to `mlxtend.frequent_patterns.apriori` as a boolean
   matrix (dense `bool` when small, a pandas sparse frame otherwise) with `low_memory=True`
   (mlxtend's default mode materialises an orders x candidate-pairs array: 16k x 196k bools at 1x).
   Because mlxtend divides by its own row count, the matrix min support is rescaled to the same
   integer count threshold (`(min_count - 0.5) / n_rows`), and the supports are rescaled back.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from typing import Optional

import duckdb
import numpy as np
import pandas as pd
import scipy.sparse as sp

from customer_assets.bundles.tables import empty_sql, write_typed

# Use a dense bool matrix when it is at most this many cells (bytes, so <= 1 GB); else a sparse frame
# (mlxtend's low-memory mode densifies each candidate group anyway: on Online Retail x20 at min_support
# 0.005 sparse took 490 s / 1.2 GB peak, dense 93 s / 1.1 GB peak).
DENSE_CELL_LIMIT = 1_000_000_000

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
    n_matrix_rows: int = 0
    n_matrix_nonzeros: int = 0
    matrix_format: str = ""
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


def product_names(con: duckdb.DuckDBPyConnection, as_of=None) -> dict:
    """product_id -> its most frequent product_name (descriptions vary between lines)."""
    where = "AND order_date <= ?" if as_of is not None else ""
    rows = con.execute(
        f"""
        SELECT product_id, arg_max(product_name, n) FROM (
            SELECT product_id, product_name, count(*) AS n FROM cleaned_transactions
            WHERE product_id IS NOT NULL AND product_name IS NOT NULL {where}
            GROUP BY ALL)
        GROUP BY product_id
        """,
        [as_of] if as_of is not None else [],
    ).fetchall()
    return dict(rows)


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
    Returns (rules, stats); rules has RULE_COLUMNS and is empty when nothing passes.
    """
    from mlxtend.frequent_patterns import apriori, association_rules

    _validate(min_support, min_confidence, min_lift, max_len)
    stats = MiningStats(country=country or ALL_COUNTRIES)
    tmp = f"__bundle_baskets_{uuid.uuid4().hex[:8]}"
    filters, params = ["order_id IS NOT NULL", "product_id IS NOT NULL"], []
    if as_of is not None:
        filters.append("order_date <= ?")
        params.append(as_of)
    if country is not None:
        filters.append("country = ?")
        params.append(country)
    con.execute(
        f"CREATE TEMP TABLE {tmp} AS SELECT DISTINCT order_id, product_id "
        f"FROM cleaned_transactions WHERE {' AND '.join(filters)}",
        params,
    )
    try:
        stats.n_orders, stats.n_items_total = con.execute(
            f"SELECT count(DISTINCT order_id), count(DISTINCT product_id) FROM {tmp}"
        ).fetchone()
        if stats.n_orders == 0:
            stats.note = "no orders with a product_id"
            return empty_rules_frame(), stats
        # The smallest order count that reaches min_support (tolerant to float noise: 0.01*300=3.0000000000000004).
        stats.min_count = max(1, int(min_orders), math.ceil(min_support * stats.n_orders - 1e-9))
        items = con.execute(
            f"SELECT product_id, count(*) AS n FROM {tmp} GROUP BY product_id "
            f"HAVING count(*) >= ? ORDER BY product_id",
            [stats.min_count],
        ).df()
        stats.n_items_frequent = len(items)
        if len(items) < 2:
            stats.note = (f"{len(items)} item(s) reach min_support={min_support} "
                          f"(>= {stats.min_count} orders): no itemset of 2")
            return empty_rules_frame(), stats
        item_ids = items["product_id"].astype(str).tolist()
        item_counts = dict(zip(item_ids, items["n"].astype(int)))
        con.register("__bundle_items", items.assign(col=np.arange(len(items), dtype=np.int32)))
        try:
            pairs = con.execute(
                f"""
                WITH fb AS (
                    SELECT b.order_id, i.col FROM {tmp} b JOIN __bundle_items i USING (product_id)),
                multi AS (
                    SELECT order_id, (row_number() OVER (ORDER BY order_id) - 1)::INTEGER AS r
                    FROM fb GROUP BY order_id HAVING count(*) >= 2)
                SELECT m.r, fb.col FROM fb JOIN multi m USING (order_id)
                """
            ).fetchnumpy()
        finally:
            con.unregister("__bundle_items")
    finally:
        con.execute(f"DROP TABLE IF EXISTS {tmp}")

    rows, cols = np.asarray(pairs["r"], dtype=np.int32), np.asarray(pairs["col"], dtype=np.int32)
    del pairs
    n_rows = int(rows.max()) + 1 if len(rows) else 0
    stats.n_matrix_rows, stats.n_matrix_nonzeros = n_rows, int(len(rows))
    if n_rows < stats.min_count:
        stats.note = f"only {n_rows} orders hold 2+ frequent items (< {stats.min_count} needed)"
        return empty_rules_frame(), stats

    matrix = sp.csc_matrix((np.ones(len(rows), dtype=np.uint8), (rows, cols)), shape=(n_rows, len(item_ids)))
    del rows, cols
    if n_rows * len(item_ids) <= DENSE_CELL_LIMIT:
        stats.matrix_format = "dense bool"
        onehot = pd.DataFrame(matrix.toarray().astype(bool), columns=item_ids, copy=False)
    else:
        stats.matrix_format = "sparse bool"
        onehot = pd.DataFrame.sparse.from_spmatrix(matrix, columns=item_ids).astype(pd.SparseDtype(bool, False))
    del matrix
    # Same integer threshold on the reduced matrix: count >= min_count  <=>  count/n_rows >= (min_count-0.5)/n_rows.
    matrix_support = (stats.min_count - 0.5) / n_rows
    frequent = apriori(onehot, min_support=matrix_support, use_colnames=True, max_len=max_len, low_memory=True)
    del onehot
    # Exact order counts; singletons from SQL over all orders (the matrix only has multi-item orders).
    counts = np.rint(frequent["support"].to_numpy() * n_rows).astype(np.int64)
    frequent["count"] = counts
    single = frequent["itemsets"].map(len) == 1
    frequent.loc[single, "count"] = [item_counts[next(iter(s))] for s in frequent.loc[single, "itemsets"]]
    frequent["support"] = frequent["count"] / stats.n_orders
    stats.n_itemsets = int((~single).sum())
    if stats.n_itemsets == 0:
        stats.note = "no itemset of 2+ items reaches min_support"
        return empty_rules_frame(), stats

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
    names = names if names is not None else product_names(con, as_of)

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
    names = product_names(con, as_of)
    frames, stats = [], []
    scopes: list[Optional[str]] = [None]
    if per_country:
        scopes += countries_for_rules(con, country_min_orders, as_of)
    for scope in scopes:
        df, st = mine_rules(con, min_support, min_confidence, min_lift, max_len, scope, as_of, names, min_orders)
        stats.append(st)
        if not df.empty:
            frames.append(df)
    rules = pd.concat(frames, ignore_index=True) if frames else empty_rules_frame()
    return RulesResult(rules=rules, stats=stats)


def write_rules(con: duckdb.DuckDBPyConnection, rules: pd.DataFrame, table: str = "association_rules") -> int:
    """Atomically write the rules with fixed column types (an empty result is an empty typed table)."""
    return write_typed(con, table, rules, RULE_COLUMNS)
