"""Association rules on hand-made baskets with support, confidence and lift computed by hand."""

import math

import duckdb
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


def test_sparse_and_dense_matrix_give_the_same_rules(baskets_con, monkeypatch):
    dense, st_d = R.mine_rules(baskets_con, 0.2, 0.05, 0.0, 3)
    monkeypatch.setattr(R, "DENSE_CELL_LIMIT", 0)
    sparse, st_s = R.mine_rules(baskets_con, 0.2, 0.05, 0.0, 3)
    assert (st_d.matrix_format, st_s.matrix_format) == ("dense bool", "sparse bool")
    # the matrix holds only frequent items and only orders with 2+ of them: o1..o4 (A,B / A,C)
    assert st_s.n_matrix_rows == 4 and st_s.n_matrix_nonzeros == 8
    cols = ["support", "confidence", "lift", "both_orders"]
    assert dense[cols].equals(sparse[cols])


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
