"""Dead stock: the 60% rule at its edge, inventory files in three formats, the velocity proxy,
the synthetic inventory generator and the bundle discount rule."""

import datetime as dt
import json

import pandas as pd
import pytest

from customer_assets.bundles import dead_stock as D
from customer_assets.bundles.recommendations import suggested_discount_pct
from customer_assets.bundles.synthetic_inventory import HEADER_NOTE, synthetic_inventory, unit_hash, write_inventory_csv
from customer_assets.ingestion.schema import write_cleaned

AS_OF = dt.date(2021, 3, 31)


def sale(order, day, product, qty):
    return {"customer_id": "c1", "order_id": order, "order_datetime": f"{day} 12:00", "product_id": product,
            "product_name": f"Name {product}", "quantity": qty, "unit_price": 2.0}


@pytest.fixture
def sales_con(con):
    write_cleaned(con, [
        sale("o1", "2021-03-01", "P60", 6),     # exactly 60% of 10 stocked
        sale("o2", "2021-03-02", "P59", 5),     # 5 + 0.9 = 59% of 10
        sale("o3", "2021-03-03", "P59", 0.9),
        sale("o4", "2020-12-01", "P59", 100),   # before the window: does not count
        sale("o5", "2021-03-04", "POK", 9),     # 90%
        sale("o6", "2020-12-05", "PZERO", 3),   # stocked, nothing sold in the window
        sale("o7", "2021-04-02", "POK", 50),    # after as_of: does not count
        sale("o8", "2021-03-05", "PNOINV", 1),  # sold but not in the inventory
    ])
    return con


INVENTORY = pd.DataFrame({"product_id": ["P60", "P59", "POK", "PZERO"], "units_stocked": [10, 10, 10, 4]})


def test_exactly_sixty_percent_is_not_dead(sales_con, tmp_path):
    path = tmp_path / "inv.csv"
    INVENTORY.assign(date="2021-02-01").to_csv(path, index=False)
    res = D.compute_dead_stock(sales_con, str(path), AS_OF, 0.6, 90, 270)
    got = res.frame.set_index("product_id")
    assert res.method == "inventory"
    assert got.loc["P60", "sold_ratio"] == pytest.approx(0.6) and not got.loc["P60", "is_dead_stock"]
    assert got.loc["P59", "sold_ratio"] == pytest.approx(0.59) and got.loc["P59", "is_dead_stock"]
    assert got.loc["POK", "units_sold"] == 9 and not got.loc["POK", "is_dead_stock"]
    assert got.loc["PZERO", "sold_ratio"] == 0 and got.loc["PZERO", "is_dead_stock"]
    assert got.loc["PZERO", "last_sold_date"] == pd.Timestamp("2020-12-05")
    assert "PNOINV" not in got.index
    assert got.loc["P60", "window_start"] == pd.Timestamp("2021-02-01") and got.loc["P60", "product_name"] == "Name P60"


def test_no_date_column_uses_the_window_setting(sales_con, tmp_path):
    path = tmp_path / "inv.parquet"
    INVENTORY.to_parquet(path)
    # window of 29 days: 2021-03-03 .. 03-31 -> P60's sale on 03-01 and P59's 5 on 03-02 drop out
    got = D.compute_dead_stock(sales_con, str(path), AS_OF, 0.6, 29, 270).frame.set_index("product_id")
    assert got.loc["P60", "units_sold"] == 0 and got.loc["P59", "units_sold"] == pytest.approx(0.9)
    assert got.loc["P60", "window_start"] == pd.Timestamp("2021-03-03")


def test_excel_and_sidecar_mapping_and_bad_rows(sales_con, tmp_path):
    path = tmp_path / "stock.xlsx"
    raw = pd.DataFrame({"SKU": ["P60", "P59", None, "POK"], "On Hand": ["10", "10", "3", "lots"]})
    raw.to_excel(path, index=False)
    (tmp_path / "stock.mapping.json").write_text(json.dumps({"product_id": "SKU", "units_stocked": "on hand"}))
    inv, notes = D.read_inventory(str(path))
    assert inv["product_id"].tolist() == ["P60", "P59"] and "2 inventory row(s) dropped" in notes[0]


def test_clear_errors_for_bad_inventory_files(sales_con, tmp_path):
    with pytest.raises(D.InventoryError, match="not found"):
        D.read_inventory(str(tmp_path / "missing.csv"))
    bad = tmp_path / "bad.csv"
    bad.write_text("sku,qty\nP60,3\n")
    with pytest.raises(D.InventoryError, match=r"lacks column\(s\) \['product_id', 'units_stocked'\]"):
        D.read_inventory(str(bad))


def test_inventory_of_other_products_falls_back_to_proxy(sales_con, tmp_path):
    path = tmp_path / "other.csv"
    pd.DataFrame({"product_id": ["X1", "X2"], "units_stocked": [5, 5]}).to_csv(path, index=False)
    res = D.compute_dead_stock(sales_con, str(path), AS_OF, 0.6, 90, 270)
    assert res.method == D.METHOD_PROXY
    assert any("shares no product_id" in n for n in res.notes)


def test_velocity_proxy(con):
    # window 2021-03-02..03-31 (30 days); baseline 60 days 2021-01-01..03-01
    rows = [sale("b1", "2021-01-10", "SLOW", 60), sale("r1", "2021-03-10", "SLOW", 12),   # 1/day -> 0.4/day
            sale("b2", "2021-01-10", "EDGE", 60), sale("r2", "2021-03-10", "EDGE", 18),   # exactly 0.6
            sale("b3", "2021-02-10", "GONE", 6),                                          # 0 recent
            sale("r3", "2021-03-20", "NEW", 5),                                           # no baseline
            sale("b4", "2020-12-31", "OLD", 5)]                                           # before data start? no: data starts here
    write_cleaned(con, rows)
    res = D.compute_dead_stock(con, None, AS_OF, 0.6, 30, 60)
    got = res.frame.set_index("product_id")
    assert res.method == D.METHOD_PROXY and "PROXY" in res.notes[-1]
    assert got["units_available"].isna().all()
    assert got.loc["SLOW", "expected_units"] == pytest.approx(30.0)
    assert got.loc["SLOW", "sold_ratio"] == pytest.approx(0.4) and got.loc["SLOW", "is_dead_stock"]
    assert got.loc["EDGE", "sold_ratio"] == pytest.approx(0.6) and not got.loc["EDGE", "is_dead_stock"]
    assert got.loc["GONE", "sold_ratio"] == 0 and got.loc["GONE", "is_dead_stock"]
    assert "NEW" not in got.index and res.stats["products_not_judged_new"] == 1
    assert "OLD" not in got.index  # only in the part of history outside the 60-day baseline


def test_proxy_with_too_little_history(con):
    write_cleaned(con, [sale("r1", "2021-03-20", "A", 5)])
    res = D.compute_dead_stock(con, None, AS_OF, 0.6, 30, 60)
    assert res.frame.empty and "no history before the recent window" in res.notes[0]


def test_synthetic_inventory_is_deterministic_and_labelled(sales_con, tmp_path):
    a = synthetic_inventory(sales_con, AS_OF, 90)
    b = synthetic_inventory(sales_con, AS_OF, 90)
    assert a.equals(b) and unit_hash("P60") == unit_hash("P60") and 0 <= unit_hash("x") < 1
    # P59: prior 90 days (2020-11-02..2020-12-31) sold 100 -> stock ceil(100 * (0.5 + 2.5u))
    p59 = a.set_index("product_id").loc["P59"]
    assert p59["units_stocked"] == int(-(-100 * (0.5 + 2.5 * unit_hash("P59")) // 1))
    assert p59["date"] == "2021-01-01"
    out = tmp_path / "inv.csv"
    write_inventory_csv(a, out)
    assert out.read_text().splitlines()[0] == HEADER_NOTE
    inv, _ = D.read_inventory(str(out))  # the SYNTHETIC label line is skipped
    assert len(inv) == len(a)


@pytest.mark.parametrize("ratio,expected", [(0.0, 25.0), (0.3, 15.0), (0.59, 5.0), (0.45, 10.0), (None, 5.0)])
def test_bundle_discount_rule(ratio, expected):
    assert suggested_discount_pct(ratio, 0.6, 5.0, 25.0) == expected
