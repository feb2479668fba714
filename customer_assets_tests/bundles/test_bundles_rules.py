"""Association rules on hand-made baskets with support, confidence and lift computed by hand."""

import math
from collections import Counter
from itertools import combinations

import duckdb
import numpy as np
import pandas as pd
import pytest

from customer_assets.bundles import rules as R
from customer_assets.ingestion.schema import write_cleaned

# 10 orders. Item order counts: A 5, B 4, C 3, D 2, E 1. Pairs: AB 3, AC 1, DE 1, BC 0.
BASKETS = {
    "o1": ["A", "B", "A"],  # A twice on one order: still one basket membership
    "o2": ["A", "B"],
    "o3": ["A", "B"],
    "o4": ["A", "C"],
    "o5": ["A"],
    "o6": ["B"],
    "o7": ["C"],
    "o8": ["C"],
    "o9": ["D"],
    "o10": ["D", "E"],
}


def rows_from(baskets, country_of=lambda o: "UK"):
    rows = []
    for i, (order, items) in enumerate(baskets.items()):
        for p in items:
            rows.append({"customer_id": f"c{i}", "order_id": order, "order_datetime": f"2021-01-{i + 1:02d} 10:00",
                         "product_id": p, "product_name": f"Item {p}", "quantity": 1, "unit_price": 1.0,
                         "country": country_of(order)})
    return rows


@pytest.fixture
def baskets_con(con):
    write_cleaned(con, rows_from(BASKETS))
    return con


def rule(df, ante, cons):
    hit = df[df["antecedents"].map(lambda x: list(x) == ante) & df["consequents"].map(lambda x: list(x) == cons)]
    assert len(hit) == 1, f"rule {ante} -> {cons} not found once in\n{df}"
    return hit.iloc[0]


def test_known_support_confidence_lift(baskets_con):
    df, st = R.mine_rules(baskets_con, min_support=0.2, min_confidence=0.05, min_lift=1.0, max_len=3)
    assert st.n_orders == 10 and st.min_count == 2 and st.n_items_frequent == 4  # A B C D
    assert len(df) == 2  # only {A, B} is a frequent pair (AC=1, DE=1 are below 2 orders)
    ab = rule(df, ["A"], ["B"])
    assert ab["support"] == pytest.approx(0.3)
    assert ab["confidence"] == pytest.approx(3 / 5)
    assert ab["lift"] == pytest.approx((3 / 5) / (4 / 10))  # 1.5
    assert ab["leverage"] == pytest.approx(0.3 - 0.5 * 0.4)
    assert ab["conviction"] == pytest.approx((1 - 0.4) / (1 - 0.6))
    assert (ab["antecedent_orders"], ab["consequent_orders"], ab["both_orders"]) == (5, 4, 3)
    assert ab["antecedent_names"] == "Item A" and ab["country"] == "ALL" and ab["n_orders"] == 10
    ba = rule(df, ["B"], ["A"])
    assert ba["confidence"] == pytest.approx(3 / 4)
    assert ba["conviction"] == pytest.approx((1 - 0.5) / (1 - 0.75))


def test_thresholds_confidence_lift_and_float_edge(baskets_con):
    df, _ = R.mine_rules(baskets_con, min_support=0.2, min_confidence=0.7, min_lift=1.0, max_len=3)
    assert [list(a) for a in df["antecedents"]] == [["B"]]  # A->B has confidence 0.6 < 0.7
    # 0.3 * 10 = 3.0000000000000004 in floating point: AB (3 orders) must still pass support 0.3.
    df, st = R.mine_rules(baskets_con, min_support=0.3, min_confidence=0.05, min_lift=1.0, max_len=3)
    assert st.min_count == 3 and len(df) == 2
    # lift 1.5 exactly passes min_lift 1.5 ("min" is inclusive), 1.51 does not
    assert len(R.mine_rules(baskets_con, 0.2, 0.05, 1.5, 3)[0]) == 2
    assert len(R.mine_rules(baskets_con, 0.2, 0.05, 1.51, 3)[0]) == 0


def test_triples_and_max_len(con):
    baskets = {f"o{i}": ["X", "Y", "Z"] for i in range(4)}
    baskets.update({"o4": ["X", "Y"], "o5": ["Z"], "o6": ["W"], "o7": ["W", "X"]})
    write_cleaned(con, rows_from(baskets))
    df, st = R.mine_rules(con, 0.25, 0.05, 0.0, 3)
    xy_z = rule(df, ["X", "Y"], ["Z"])
    # n=8; XYZ in 4, XY in 5, Z in 5 -> conf 4/5, lift 0.8 / (5/8)
    assert xy_z["support"] == pytest.approx(4 / 8)
    assert xy_z["confidence"] == pytest.approx(4 / 5)
    assert xy_z["lift"] == pytest.approx(0.8 / (5 / 8))
    assert df["antecedent_len"].add(df["consequent_len"]).max() == 3
    df2, _ = R.mine_rules(con, 0.25, 0.05, 0.0, 2)
    assert df2["antecedent_len"].add(df2["consequent_len"]).max() == 2
    with pytest.raises(ValueError, match="max_itemset_len"):
        R.mine_rules(con, 0.25, 0.05, 0.0, 1)


def test_mining_sees_only_multi_item_baskets_of_frequent_items(baskets_con, monkeypatch):
    df, st = R.mine_rules(baskets_con, 0.2, 0.05, 0.0, 3)
    # only orders with 2+ frequent items (A B C D) can hold a pair: o1..o4 (A,B three times, A,C once)
    assert st.n_matrix_rows == 4 and st.n_matrix_nonzeros == 8 and st.n_distinct_baskets == 2
    monkeypatch.setattr(R, "DECODE_CHUNK_ROWS", 1)  # bitsets decoded one basket at a time: same rules
    chunked, st_c = R.mine_rules(baskets_con, 0.2, 0.05, 0.0, 3)
    cols = ["support", "confidence", "lift", "both_orders"]
    assert df[cols].equals(chunked[cols]) and vars(st) == vars(st_c)


def random_baskets(seed=7, n_orders=400, n_items=150):
    """Skewed item popularity plus a few item groups bought together (so triples and quadruples are
    frequent); > 64 frequent items so the baskets' bitsets span several 64-bit words; some lines doubled."""
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.7
    pop /= pop.sum()
    groups = [[f"P{i:03d}" for i in g] for g in ([3, 70, 71], [5, 90, 91, 92], [100, 101], [2, 3, 4])]
    baskets = {}
    for o in range(n_orders):
        items = [f"P{i:03d}" for i in rng.choice(n_items, size=int(rng.integers(1, 12)), p=pop)]
        for g in groups:
            if rng.random() < 0.15:
                items += g
        if rng.random() < 0.1:
            items += items[:2]  # the same product twice on one order
        baskets[f"o{o}"] = items
    return baskets


def brute_force_counts(baskets, max_len):
    """Order count of every itemset of 1..max_len items, by plain enumeration."""
    counts = Counter()
    for items in baskets.values():
        distinct = sorted(set(items))
        for k in range(1, max_len + 1):
            counts.update(frozenset(c) for c in combinations(distinct, k))
    return counts


@pytest.mark.parametrize("max_len", [2, 3, 4])
def test_rules_equal_brute_force_and_mlxtend_apriori(con, max_len):
    baskets = random_baskets()
    rows = rows_from(baskets)
    for r in rows:
        r["order_datetime"] = "2021-01-01 10:00"
    write_cleaned(con, rows)
    df, st = R.mine_rules(con, min_support=0.03, min_confidence=0.05, min_lift=0.0, max_len=max_len)
    n = len(baskets)
    min_count = math.ceil(0.03 * n)
    assert st.n_orders == n and st.min_count == min_count and st.n_items_frequent > 64
    counts = brute_force_counts(baskets, max_len)
    frequent = {s: k for s, k in counts.items() if k >= min_count}
    # every rule's counts are exact ...
    for r in df.itertuples():
        a, c = frozenset(r.antecedents), frozenset(r.consequents)
        assert (r.antecedent_orders, r.consequent_orders, r.both_orders) == (counts[a], counts[c], counts[a | c])
        assert r.support == counts[a | c] / n and r.lift == pytest.approx(counts[a | c] * n / (counts[a] * counts[c]))
    # ... and every frequent itemset of 2+ items gives all its rules (min_lift 0, min_confidence 0.05)
    expected = {(a, s - a) for s in frequent if len(s) >= 2 for k in range(1, len(s))
                for a in map(frozenset, combinations(sorted(s), k)) if frequent[s] / frequent[a] >= 0.05}
    got = {(frozenset(r.antecedents), frozenset(r.consequents)) for r in df.itertuples()}
    assert got == expected and st.n_itemsets == sum(len(s) >= 2 for s in frequent)
    assert max(len(s) for s in frequent) == max_len  # the data does reach max_len
    # the same itemsets as mlxtend's apriori on the full one-hot matrix (the miner used before)
    from mlxtend.frequent_patterns import apriori
    items = sorted({p for b in baskets.values() for p in b})
    onehot = pd.DataFrame([[p in set(b) for p in items] for b in baskets.values()], columns=items)
    ref = apriori(onehot, min_support=(min_count - 0.5) / n, use_colnames=True, max_len=max_len)
    assert {s for s in ref["itemsets"] if len(s) >= 2} == {s for s in frequent if len(s) >= 2}


def test_empty_result_is_an_empty_typed_table(baskets_con):
    res = R.build_rules(baskets_con, min_support=0.5, min_confidence=0.05, min_lift=1.0, max_len=3)
    assert res.rules.empty and "1 item(s) reach" in res.stats[0].note
    assert R.write_rules(baskets_con, res.rules) == 0
    cols = dict(baskets_con.execute("SELECT column_name, column_type FROM (DESCRIBE association_rules)").fetchall())
    assert cols["antecedents"] == "VARCHAR[]" and cols["lift"] == "DOUBLE"
    # no order with a product at all
    empty = duckdb.connect()
    write_cleaned(empty, rows_from({"o1": ["A"]}))
    empty.execute("UPDATE cleaned_transactions SET product_id = NULL")
    df, st = R.mine_rules(empty, 0.1, 0.05, 1.0, 3)
    assert df.empty and st.note == "no orders with a product_id"


def test_write_rules_round_trip(baskets_con):
    res = R.build_rules(baskets_con, 0.2, 0.05, 1.0, 3)
    assert R.write_rules(baskets_con, res.rules) == 2
    got = baskets_con.execute(
        "SELECT antecedents, consequents, both_orders, confidence FROM association_rules ORDER BY confidence").fetchall()
    assert got == [(["A"], ["B"], 3, pytest.approx(0.6)), (["B"], ["A"], 3, pytest.approx(0.75))]


def test_per_country_runs(con):
    write_cleaned(con, rows_from(BASKETS, country_of=lambda o: "FR" if o in ("o1", "o2", "o5") else "UK"))
    res = R.build_rules(con, 0.2, 0.05, 1.0, 3, per_country=True, country_min_orders=3)
    assert [s.country for s in res.stats] == ["ALL", "UK", "FR"]  # UK 7 orders, FR 3
    fr = res.rules[res.rules["country"] == "FR"]
    # FR: o1 AB, o2 AB, o5 A -> A->B conf 2/3, lift (2/3)/(2/3) = 1
    ab = rule(fr, ["A"], ["B"])
    assert ab["n_orders"] == 3 and ab["confidence"] == pytest.approx(2 / 3) and ab["lift"] == pytest.approx(1.0)
    assert R.countries_for_rules(con, 4) == ["UK"]


def test_min_orders_floor(baskets_con):
    # 1% of 10 orders would be 1 order; the floor of 3 orders keeps only {A, B} (3 orders)
    df, st = R.mine_rules(baskets_con, 0.01, 0.05, 0.0, 3, min_orders=3)
    assert st.min_count == 3 and len(df) == 2
    df, st = R.mine_rules(baskets_con, 0.01, 0.05, 0.0, 3, min_orders=4)
    assert st.min_count == 4 and df.empty


def test_min_count_is_ceiling():
    assert math.ceil(0.01 * 18402 - 1e-9) == 185
