"""pair_candidates: the bound pruning drops only pairs that cannot rank in the top of their product."""

import datetime as dt

import duckdb
import pandas as pd
import pytest

from customer_assets.bundles.recommendations import pair_candidates


@pytest.fixture
def pcon():
    # 200 orders. Dead P in o1..o6 with A (o1..o3) and B (o4..o6); the popular Z is in o1..o3 (with P),
    # o7..o30 (with the dead Q) and o31..o40; filler Y in o41..o200.
    lines = []
    for o in range(1, 201):
        items = []
        if o <= 6:
            items += ["P", "A" if o <= 3 else "B"]
        if o <= 3 or 7 <= o <= 40:
            items.append("Z")
        if 7 <= o <= 30:
            items.append("Q")
        if o > 40:
            items.append("Y")
        lines += [(f"o{o}", p) for p in items]
    lines.append(("o1", "A"))  # a repeated line counts once
    df = pd.DataFrame(lines, columns=["order_id", "product_id"])
    df["product_name"] = "name " + df["product_id"]
    df["order_date"] = dt.date(2011, 1, 1)
    c = duckdb.connect()
    c.execute("CREATE TABLE cleaned_transactions AS SELECT * FROM df")
    yield c
    c.close()


def test_pruning_keeps_exactly_the_pairs_that_can_rank(pcon):
    args = (pcon, ["P", "Q"], dt.date(2011, 12, 31), 3, 0.05, 1.0)
    full = pair_candidates(*args).set_index(["product_id", "partner_names"]).sort_index()
    # exact: P->Z in 3 of 200 orders, P in 6, Z in 37 -> lift 3*200/(6*37) = 2.7: it passes the thresholds
    assert full.loc[("P", "name Z"), "lift"] == pytest.approx(3 * 200 / (6 * 37))
    assert full.loc[("P", "name A"), "lift"] == pytest.approx(3 * 200 / (6 * 3))
    pruned = pair_candidates(*args, top=2, dead_ids={"P", "Q"}).set_index(["product_id", "partner_names"]).sort_index()
    # Z's orders among the dead products' orders (27) bound P->Z's lift by 3*200/(6*27) = 3.7 < A's and B's 33.3
    assert ("P", "name Z") not in pruned.index
    assert list(pruned.index) == [("P", "name A"), ("P", "name B"), ("Q", "name Z")]
    cols = ["support", "lift", "both_orders", "product_orders", "partner_orders",
            "confidence_product_to_partner", "confidence_partner_to_product"]
    pd.testing.assert_frame_equal(pruned[cols], full.loc[pruned.index, cols])
    # with room for 3 partners, Z can rank and is kept
    kept = pair_candidates(*args, top=3, dead_ids={"P", "Q"})
    assert len(kept) == len(full)


def test_pruning_drops_dead_partners_behind_enough_live_ones(pcon):
    # A dead too: dead_stock_bundles ranks live partners first, so with top=1 P keeps B (live, surely
    # passing) and neither A (dead, despite the same lift) nor Z (live, lift at most 3.7 < B's 33.3)
    args = (pcon, ["P", "Q"], dt.date(2011, 12, 31), 3, 0.05, 1.0)
    full = pair_candidates(*args)
    assert {"name A", "name B", "name Z"} <= set(full.loc[full["product_id"] == "P", "partner_names"])
    pruned = pair_candidates(*args, top=1, dead_ids={"P", "Q", "A"})
    assert sorted(zip(pruned["product_id"], pruned["partner_names"])) == [("P", "name B"), ("Q", "name Z")]
    # without A being dead, A and B tie on lift (neither surely above the other): both kept
    pruned = pair_candidates(*args, top=1, dead_ids={"P", "Q"})
    assert sorted(zip(pruned["product_id"], pruned["partner_names"])) == [("P", "name A"), ("P", "name B"), ("Q", "name Z")]
