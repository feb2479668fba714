"""The bundles assets through Dagster (hand-made data), and the rules on the real Online Retail data
recounted independently in SQL."""

import shutil

import dagster as dg
import duckdb
import pandas as pd
import pytest

from customer_assets import paths
from customer_assets.bundles import ASSETS, CHECKS
from customer_assets.bundles.rules import build_rules
from customer_assets.ingestion.schema import write_cleaned

# 10 orders in January 2021; A in 5 orders, B in 4, A+B together in 3 (lift 1.5).
BASKETS = {"o1": "AB", "o2": "AB", "o3": "AB", "o4": "AC", "o5": "A", "o6": "B", "o7": "C", "o8": "C",
           "o9": "D", "o10": "DE"}


def handmade_rows(with_product=True):
    return [
        {"customer_id": f"c{i}", "order_id": o, "order_datetime": f"2021-01-{i + 1:02d} 10:00",
         "product_id": p if with_product else None, "product_name": f"Item {p}", "quantity": 1, "unit_price": 2.0,
         "country": "UK"}
        for i, (o, items) in enumerate(BASKETS.items()) for p in items
    ]


def run(tmp_path, resources_for, rows, **kw):
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    write_cleaned(con, rows)
    con.close()
    result = dg.materialize(ASSETS + CHECKS, resources=resources_for(tmp_path, **kw),
                            instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    return result, duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)


def meta(result, key):
    mats = result.asset_materializations_for_node(key)
    return {k: v.value for k, v in mats[0].metadata.items()}


def test_materialize_bundles(tmp_path, resources_for):
    inv = tmp_path / "inventory.csv"
    # B stocked 10, sold 4 -> 0.4 dead; A sold 5 of 5; C sold 3 of 5 -> exactly 0.6, not dead;
    # D sold 2 of 10 -> 0.2 dead, and in no rule (D+E is in 1 order < 2): partner from the pair fallback
    pd.DataFrame({"product_id": ["A", "B", "C", "D"], "units_stocked": [5, 10, 5, 10]}).to_csv(inv, index=False)
    result, con = run(tmp_path, resources_for, handmade_rows(), inventory=inv, min_support=0.2, rules_min_orders=1,
                      as_of="2021-01-31", dead_stock_window_days=31)
    assert result.success
    dead = dict(con.execute("SELECT product_id, is_dead_stock FROM dead_stock").fetchall())
    assert dead == {"A": False, "B": True, "C": False, "D": True}
    assert con.execute("SELECT count(*) FROM association_rules").fetchone()[0] == 2
    rec = dict((r[0], r[1:]) for r in con.execute(
        "SELECT product_id, partner_ids, lift, both_orders, confidence_partner_to_product, suggested_discount_pct, "
        "evidence_source FROM bundle_recommendations WHERE recommendation_type = 'dead_stock_bundle'"
    ).fetchall())
    # B: rule B<->A; 5 + 20 * (1 - 0.4/0.6) = 11.7 -> 10% off
    assert rec["B"] == (["A"], pytest.approx(1.5), 3, pytest.approx(3 / 5), 10.0, "association_rules")
    # D: pair D+E in 1 of 10 orders, D in 2, E in 1 -> lift 1*10/(2*1) = 5; 5 + 20 * (1 - 0.2/0.6) = 18.3 -> 20%
    assert rec["D"] == (["E"], pytest.approx(5.0), 1, pytest.approx(1.0), 20.0, "co-purchase pair below min_support")
    assert len(rec) == 2
    also = con.execute("SELECT product_id, partner_ids FROM bundle_recommendations "
                       "WHERE recommendation_type = 'also_bought' ORDER BY product_id").fetchall()
    assert also == [("A", ["B"]), ("B", ["A"])]
    m = meta(result, "dead_stock")
    assert m["method"] == "inventory" and m["dead_stock_products"] == 2 and "image/png" in m["plot"]
    assert meta(result, "association_rules")["empty"] is False
    m = meta(result, "bundle_recommendations")
    assert (m["dead_stock_products_with_bundle"], m["dead_stock_products_with_rule"]) == (2, 1)
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["rules_recount_from_transactions"] is True
    assert checks["dead_stock_inventory_coverage"] is False  # D and E were sold but are not in the inventory
    cov = {e.check_name: e.metadata for e in result.get_asset_check_evaluations()}["dead_stock_inventory_coverage"]
    # A..E sold in January; E alone is not in the inventory (so not judged)
    assert (cov["products_sold_in_window"].value, cov["sold_but_not_judged"].value) == (5, 1)


def test_materialize_empty_rules_and_missing_product(tmp_path, resources_for):
    result, con = run(tmp_path, resources_for, handmade_rows(), min_support=0.9, as_of="2021-01-31",
                      dead_stock_window_days=10, dead_stock_baseline_days=20)
    assert result.success
    m = meta(result, "association_rules")
    assert m["empty"] is True and "0 item(s) reach min_support=0.9" in m["empty_reason"]
    assert con.execute("SELECT count(*) FROM association_rules").fetchone()[0] == 0
    assert meta(result, "dead_stock")["is_proxy"] is True
    con.close()
    nop = tmp_path / "nop"
    nop.mkdir()
    result, con = run(nop, resources_for, handmade_rows(with_product=False))
    assert result.success
    for key in ("dead_stock", "association_rules"):
        m = meta(result, key)
        assert m["skipped"] is True and "no product_id" in m["skip_reason"]


def test_bad_inventory_file_fails_with_a_clear_message(tmp_path, resources_for):
    inv = tmp_path / "inventory.csv"
    inv.write_text("sku,count\nA,3\n")
    result, _ = run(tmp_path, resources_for, handmade_rows(), inventory=inv, as_of="2021-01-31")
    assert not result.success
    failure = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][0]
    assert "lacks column(s)" in failure.event_specific_data.error.message or "lacks column(s)" in str(
        failure.event_specific_data)


@pytest.fixture
def rcon(retail_db):
    c = duckdb.connect(str(retail_db), read_only=True)
    yield c
    c.close()


def count_orders_with_all(con, items):
    """Orders holding every product in `items`: written independently of rules.py."""
    marks = ", ".join("?" for _ in items)
    return con.execute(
        f"SELECT count(*) FROM (SELECT order_id FROM cleaned_transactions WHERE product_id IN ({marks}) "
        f"GROUP BY order_id HAVING count(DISTINCT product_id) = {len(items)})",
        list(items),
    ).fetchone()[0]


def test_online_retail_rules_recomputed_in_sql(rcon):
    res = build_rules(rcon, min_support=0.01, min_confidence=0.05, min_lift=1.0, max_len=3)
    rules = res.rules
    assert len(rules) > 100 and (rules["support"] >= 0.01).all() and (rules["lift"] >= 1.0).all()
    n = rcon.execute("SELECT count(DISTINCT order_id) FROM cleaned_transactions WHERE product_id IS NOT NULL").fetchone()[0]
    pair = rules[(rules["antecedent_len"] == 1) & (rules["consequent_len"] == 1)].iloc[0]
    triple = rules[rules["antecedent_len"] == 2].iloc[0]
    for r in (pair, triple):
        a, c = list(r["antecedents"]), list(r["consequents"])
        n_a, n_c, n_ac = count_orders_with_all(rcon, a), count_orders_with_all(rcon, c), count_orders_with_all(rcon, a + c)
        assert n_ac == r["both_orders"] and n_ac / n >= 0.01
        assert r["confidence"] == pytest.approx(n_ac / n_a, rel=1e-12)
        assert r["lift"] == pytest.approx((n_ac / n_a) / (n_c / n), rel=1e-12)
    # no frequent pair is missing: every product pair in >= min_count orders with lift >= 1 gives A->B and B->A
    pairs = rcon.execute(
        """WITH b0 AS (SELECT DISTINCT order_id, product_id FROM cleaned_transactions WHERE product_id IS NOT NULL),
                items AS (SELECT product_id, count(*) AS k FROM b0 GROUP BY product_id),
                b AS (SELECT b0.* FROM b0 JOIN items USING (product_id) WHERE items.k >= $1),
                p AS (SELECT x.product_id AS px, y.product_id AS py, count(*) AS k FROM b x JOIN b y
                      ON x.order_id = y.order_id AND x.product_id < y.product_id GROUP BY ALL HAVING count(*) >= $1)
           SELECT count(*) FROM p JOIN items ix ON ix.product_id = p.px JOIN items iy ON iy.product_id = p.py
           WHERE p.k * $2 >= ix.k * iy.k""",
        [res.stats[0].min_count, n],
    ).fetchone()[0]
    assert int(((rules["antecedent_len"] + rules["consequent_len"]) == 2).sum()) == 2 * pairs


@pytest.mark.slow
def test_online_retail_materialize(tmp_path, resources_for, retail_db):
    shutil.copy(retail_db, tmp_path / "warehouse.duckdb")
    result = dg.materialize(ASSETS + CHECKS, resources=resources_for(tmp_path, inventory=paths.DEFAULT_INVENTORY),
                            instance=dg.DagsterInstance.ephemeral())
    assert result.success
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM association_rules").fetchone()[0] > 100
    assert con.execute("SELECT count(*) FROM dead_stock WHERE is_dead_stock").fetchone()[0] > 0
    assert con.execute("SELECT count(*) FROM bundle_recommendations WHERE recommendation_type = 'dead_stock_bundle'"
                       ).fetchone()[0] > 0
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["rules_recount_from_transactions"] is True


def test_dead_stock_plot_is_the_stacked_histogram():
    """_dead_stock_plot draws two stairs; the picture equals the former ax.hist(stacked=True) one."""
    import base64
    import io

    import matplotlib.image as mpimg
    import numpy as np

    from customer_assets.bundles.assets import _dead_stock_plot
    from customer_assets.common.metadata import fig_to_md
    from customer_assets.common.plotting import plt

    rng = np.random.default_rng(5)
    ratios = np.concatenate([rng.uniform(0, 2.5, 400), [0.6, 0.6, 0.0, 2.0, np.nan]])  # at the cut, clipped, NaN
    df = pd.DataFrame({"sold_ratio": ratios})

    def png(md):
        return mpimg.imread(io.BytesIO(base64.b64decode(md.split("base64,")[1].rstrip(")"))), format="png")

    fig, ax = plt.subplots(figsize=(7, 3.5))
    vals = df["sold_ratio"].dropna().clip(upper=2.0)
    ax.hist([vals[vals < 0.6], vals[vals >= 0.6]], bins=np.linspace(0, 2, 41), stacked=True,
            color=["#c0392b", "#7f8c8d"], label=["dead stock (< 0.6)", "selling"])
    ax.axvline(0.6, color="black", ls="--", lw=1)
    ax.set_xlabel("sold ratio (clipped at 2)")
    ax.set_ylabel("products")
    ax.set_title("Sold ratio per product (inventory)")
    ax.legend(loc="upper center")
    want, got = png(fig_to_md(fig)), png(_dead_stock_plot(df, 0.6, "inventory"))
    assert want.shape == got.shape and np.abs(want - got).max() == 0
