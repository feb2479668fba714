"""dead_stock's product_name: the most frequent description up to as_of, a tie going to the alphabetically
last (as dim_product and the rules' names), whichever method judged the product; products outside the
inventory do not appear even though the names are aggregated for every product."""

import datetime as dt

import pandas as pd

from customer_assets.bundles import dead_stock as D
from customer_assets.ingestion.schema import write_cleaned

AS_OF = dt.date(2021, 3, 31)


def line(order, day, product, name, qty=1):
    return {"customer_id": "c1", "order_id": order, "order_datetime": f"{day} 12:00", "product_id": product,
            "product_name": name, "quantity": qty, "unit_price": 2.0}


def _sales(con):
    rows = []
    for i, (name, n) in enumerate([("A MUG", 2), ("B MUG", 2), ("Z MUG", 1)]):  # B and A tie at 2 lines
        rows += [line(f"m{i}{k}", "2021-03-0" + str(k + 1), "MUG", name) for k in range(n)]
    rows += [line("m9", "2021-04-05", "MUG", "ZZ MUG AFTER AS_OF"), line("m8", "2021-04-06", "MUG", "ZZ MUG AFTER AS_OF"),
             line("m7", "2021-04-07", "MUG", "ZZ MUG AFTER AS_OF")]
    rows += [line("c1", "2020-10-01", "CUP", "CUP"), line("c2", "2021-03-10", "CUP", "CUP"),
             line("x1", "2021-03-10", "OTHER", "NOT IN THE INVENTORY")]
    write_cleaned(con, rows)


def test_name_ties_go_to_the_alphabetically_last_in_both_methods(con, tmp_path):
    _sales(con)
    path = tmp_path / "inv.csv"
    pd.DataFrame({"product_id": ["MUG", "CUP"], "units_stocked": [10, 10], "date": ["2021-03-01"] * 2}).to_csv(path, index=False)
    inv = D.compute_dead_stock(con, str(path), AS_OF, 0.6, 90, 270).frame.set_index("product_id")
    assert inv.loc["MUG", "product_name"] == "B MUG" and inv.loc["CUP", "product_name"] == "CUP"
    assert "OTHER" not in inv.index and len(inv) == 2
    proxy = D.compute_dead_stock(con, None, AS_OF, 0.6, 30, 270).frame.set_index("product_id")
    # 30-day window from 03-02: MUG's first sale (03-01) is its baseline, so the proxy judges it too
    assert proxy.loc["MUG", "product_name"] == "B MUG" and proxy.loc["CUP", "product_name"] == "CUP"
