"""most_ordered_products (the also_bought top list) equals a plain count(DISTINCT order_id) ranking, even
when line counts mislead (a product many times on few orders), and product names are deterministic."""

import pytest

from customer_assets.bundles.recommendations import most_ordered_products
from customer_assets.bundles.rules import product_names
from customer_assets.ingestion.schema import write_cleaned

# order -> products; "X" is on many lines of one order (7 lines, 1 order): the most lines, few orders.
BASKETS = {
    "o1": ["X"] * 7 + ["A", "B"],
    "o2": ["A", "B", "C"],
    "o3": ["A", "C", "C"],
    "o4": ["B", "D"],
    "o5": ["A", "D", "E"],
    "o6": ["E", "E", "E", "F"],
    "o7": ["B", "F"],
}


@pytest.fixture
def tcon(con):
    rows = [{"customer_id": "c1", "order_id": o, "order_datetime": "2021-01-01 10:00", "product_id": p,
             "product_name": f"Item {p}", "quantity": 1, "unit_price": 1.0, "country": "UK"}
            for o, items in BASKETS.items() for p in items]
    write_cleaned(con, rows)
    return con


def reference(con, k):
    return [r[0] for r in con.execute(
        "SELECT product_id FROM cleaned_transactions WHERE product_id IS NOT NULL GROUP BY product_id "
        "ORDER BY count(DISTINCT order_id) DESC, product_id LIMIT ?", [k]).fetchall()]


def test_top_products_equal_the_distinct_order_ranking(tcon):
    # orders: A 4, B 4, C 2, D 2, E 2, F 2, X 1; lines: X 7, A 4, B 4, E 4, C 3, ...
    for k in range(0, 9):
        assert most_ordered_products(tcon, k) == reference(tcon, k), k
    assert most_ordered_products(tcon, 3) == ["A", "B", "C"]  # C (2 orders) beats E (4 lines, 2 orders) on the id
    tcon.execute("UPDATE cleaned_transactions SET product_id = NULL")
    assert most_ordered_products(tcon, 3) == []


def test_product_names_tie_goes_to_the_last_name_as_in_dim_product(con):
    rows = [{"customer_id": "c1", "order_id": f"o{i}", "order_datetime": "2021-01-01 10:00", "product_id": "P",
             "product_name": name, "quantity": 1, "unit_price": 1.0, "country": "UK"}
            for i, name in enumerate(["ZEBRA MUG", "ANT MUG", "ZEBRA MUG", "ANT MUG", "MOTH MUG"])]
    write_cleaned(con, rows)
    assert product_names(con) == {"P": "ZEBRA MUG"}
    assert product_names(con, product_ids=["P", "Q"]) == {"P": "ZEBRA MUG"} and product_names(con, product_ids=[]) == {}
