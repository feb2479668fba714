"""RFM quintiles and rule table, loyalty tiers, cohorts and personas on hand-built data with known answers."""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import pandas as pd
import pytest

from customer_assets.customers import cohorts, loyalty, personas, rfm
from customer_assets.customers.checks import cohort_problems
from customer_assets.ingestion.schema import write_cleaned


# --- quintiles -----------------------------------------------------------------------------------

def test_quintile_edges_distinct_values():
    s = pd.Series(range(10, 110, 10), name="monetary")
    assert rfm.quintile_scores(s).tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    # recency: fewer days is better
    assert rfm.quintile_scores(s, higher_is_better=False).tolist() == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
    # n not divisible by 5: score = 1 + floor(5 * (rank - 1) / 7)
    assert rfm.quintile_scores(pd.Series(range(7), name="x")).tolist() == [1, 1, 2, 3, 3, 4, 5]


def test_quintile_ties_share_the_score_where_the_group_starts():
    s = pd.Series([1, 1, 1, 1, 2, 3, 4, 5, 6, 7], name="frequency")
    assert rfm.quintile_scores(s).tolist() == [1, 1, 1, 1, 3, 3, 4, 4, 5, 5]
    # descending: 7, 6 -> 1; 5, 4 -> 2; 3, 2 -> 3; the four 1s rank 7..10 -> 1 + floor(5 * 6 / 10) = 4
    assert rfm.quintile_scores(s, higher_is_better=False).tolist() == [4, 4, 4, 4, 3, 3, 2, 2, 1, 1]
    # independent of row order
    shuffled = s.sample(frac=1, random_state=3)
    assert rfm.quintile_scores(shuffled).sort_index().tolist() == rfm.quintile_scores(s).tolist()


def test_quintile_rejects_missing():
    with pytest.raises(ValueError, match="missing"):
        rfm.quintile_scores(pd.Series([1.0, None], name="monetary"))


# --- rule table ----------------------------------------------------------------------------------

@pytest.mark.parametrize("code,price,segment", [
    ((5, 5, 5), False, "Champions"), ((5, 4, 4), True, "Champions"),
    ((1, 5, 4), False, "Can't Lose Them"), ((2, 5, 5), False, "At Risk"), ((1, 3, 3), False, "At Risk"),
    ((5, 4, 3), False, "Loyal Customers"), ((3, 5, 1), True, "Loyal Customers"),
    ((3, 2, 2), True, "Price Sensitive"), ((5, 1, 1), True, "Price Sensitive"),
    ((1, 1, 1), True, "Lost"),  # R=1 is never Price Sensitive
    ((5, 2, 1), False, "Potential Loyalist"), ((4, 3, 5), False, "Potential Loyalist"),
    ((5, 1, 5), False, "Recent Users"), ((4, 1, 1), False, "Promising"),
    ((3, 3, 3), False, "Needs Attention"), ((3, 5, 2), False, "Loyal Customers"),
    ((3, 1, 5), False, "About To Sleep"), ((2, 1, 1), False, "Hibernating"), ((2, 3, 2), False, "Hibernating"),
    ((1, 1, 5), False, "Lost"), ((1, 4, 2), False, "Lost"),
])
def test_each_rule_has_a_known_answer(code, price, segment):
    r, f, m = (pd.Series([v]) for v in code)
    assert rfm.assign_segments(r, f, m, pd.Series([price])).iloc[0] == segment


def test_rule_table_covers_every_code_exactly_once():
    codes = list(itertools.product(range(1, 6), repeat=3))
    r, f, m = (pd.Series([c[i] for c in codes]) for i in range(3))
    for flag in (pd.Series([False] * 125), pd.Series([True] * 125), None):
        seg = rfm.assign_segments(r, f, m, flag)  # raises if any code is uncovered
        assert seg.notna().all() and len(seg) == 125
    with_price = set(rfm.assign_segments(r, f, m, pd.Series([True] * 125))) | set(
        rfm.assign_segments(r, f, m, pd.Series([False] * 125)))
    assert with_price == set(rfm.SEGMENTS) and len(rfm.SEGMENTS) == 12
    assert "Price Sensitive" not in set(rfm.assign_segments(r, f, m, None))


def test_uncovered_code_is_a_clear_error():
    rules = rfm.SEGMENT_RULES[rfm.SEGMENT_RULES["segment"] != "Lost"]
    with pytest.raises(ValueError, match="does not cover"):
        rfm.assign_segments(pd.Series([1]), pd.Series([1]), pd.Series([1]), None, rules=rules)


def features_frame(n=10):
    """Customer i: recency 100 - 10 i, frequency i + 1, monetary 100 (i + 1): customer 9 is best."""
    i = np.arange(n)
    return pd.DataFrame({
        "customer_id": [f"c{k:02d}" for k in i], "recency_days": 100.0 - 10 * i, "frequency": i + 1.0,
        "monetary": 100.0 * (i + 1), "price_index": [0.8] + [1.0] * (n - 1),
    })


def test_compute_rfm_hand_built():
    out = rfm.compute_rfm(features_frame(), price_sensitive_index=0.9).set_index("customer_id")
    assert out["r_score"].tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert out["rfm_code"].tolist() == ["111", "111", "222", "222", "333", "333", "444", "444", "555", "555"]
    assert out["segment"].tolist() == ["Lost", "Lost", "Hibernating", "Hibernating", "Needs Attention",
                                       "Needs Attention", "Loyal Customers", "Loyal Customers", "Champions", "Champions"]
    assert out.loc["c00", "price_index"] == 0.8  # price sensitive but R=1: Lost
    val = rfm.champions_validation(out.reset_index())
    # Champions c08, c09: median monetary 950 >= P80 820; median recency 15 <= P20 28
    assert val["passed"] and val["champions_median_monetary"] == 950 and val["p80_monetary"] == pytest.approx(820)
    assert val["champions_median_recency_days"] == 15 and val["p20_recency_days"] == pytest.approx(28)


def test_price_sensitive_only_with_a_price_signal():
    f = features_frame()
    f.loc[4, "price_index"] = 0.85  # c04: R=3 F=3 M=3
    assert rfm.compute_rfm(f, 0.9).loc[4, "segment"] == "Price Sensitive"
    assert rfm.compute_rfm(f, 0.8).loc[4, "segment"] == "Needs Attention"  # 0.85 > 0.8
    no_price = rfm.compute_rfm(f.drop(columns="price_index"), 0.9)
    assert "Price Sensitive" not in set(no_price["segment"]) and "price_index" not in no_price.columns


def test_champions_check_fails_when_champions_are_not_top_spenders():
    out = rfm.compute_rfm(features_frame(), None)
    out.loc[out["segment"] == "Champions", "monetary"] = 1.0
    val = rfm.champions_validation(out)
    assert not val["passed"] and val["champions_median_monetary"] == 1.0
    out["segment"] = "Lost"
    assert rfm.champions_validation(out)["passed"] is False


def test_segment_summary_shares():
    s = rfm.segment_summary(rfm.compute_rfm(features_frame(), None))
    assert s["customers"].sum() == 10 and s["customer_share"].sum() == pytest.approx(1)
    assert s.set_index("segment").loc["Champions", "revenue_share"] == pytest.approx(1900 / 5500)


# --- loyalty -------------------------------------------------------------------------------------

def test_tiers_by_rank_position():
    spend = pd.DataFrame({"customer_id": [f"c{i:02d}" for i in range(20)], "qualifying_spend": np.arange(20.0, 0, -1)})
    t = loyalty.assign_tiers(spend, 0.05, 0.15, 0.30).set_index("customer_id")
    assert t["tier"].value_counts().to_dict() == {"Platinum": 1, "Gold": 3, "Silver": 6, "Bronze": 10}
    assert t.loc["c00", "tier"] == "Platinum" and t.loc["c03", "tier"] == "Gold" and t.loc["c04", "tier"] == "Silver"
    assert t.loc["c09", "tier"] == "Silver" and t.loc["c10", "tier"] == "Bronze"
    assert t.loc["c00", "reward"] == "25% discount + VIP concierge"


def test_tiers_ties_and_zero_spend():
    spend = pd.DataFrame({"customer_id": list("abcdefghij"), "qualifying_spend": [9, 9, 5, 4, 3, 2, 0, 0, 0, 0.0]})
    t = loyalty.assign_tiers(spend, 0.10, 0.20, 0.30).set_index("customer_id")["tier"]
    assert t["a"] == t["b"] == "Platinum"  # tied at the top: both rank 1
    assert t["c"] == "Gold" and t["d"] == "Gold" and t["e"] == "Silver" and t["f"] == "Silver"
    assert (t[list("ghij")] == "Bronze").all()
    with pytest.raises(ValueError):
        loyalty.assign_tiers(spend, 0.5, 0.4, 0.3)


def test_tier_validation():
    good = pd.DataFrame({"tier": ["Platinum", "Gold", "Gold", "Silver", "Bronze", "Bronze"] + ["Bronze"] * 6,
                         "monetary": [100, 50, 40, 20, 5, 4] + [1] * 6})
    res = loyalty.tier_validation(good)
    assert res["passed"] and res["median_monetary"]["Gold"] == 45 and res["platinum_share"] == pytest.approx(1 / 12)
    assert not loyalty.tier_validation(good.assign(monetary=good["monetary"].replace({20: 60})))["passed"]
    assert not loyalty.tier_validation(good.assign(tier=["Platinum"] * 2 + list(good["tier"][2:])))["passed"]  # 2/12 > 10%


def test_qualifying_spend_window(con):
    write_cleaned(con, [
        {"customer_id": "a", "order_id": "1", "order_datetime": "2021-01-01", "quantity": 1, "unit_price": 50},
        {"customer_id": "a", "order_id": "2", "order_datetime": "2021-01-02", "quantity": 1, "unit_price": 7},
        {"customer_id": "b", "order_id": "3", "order_datetime": "2020-06-01", "quantity": 1, "unit_price": 99},
        {"customer_id": "b", "order_id": "4", "order_datetime": "2022-01-05", "quantity": 1, "unit_price": 1},
    ])
    df = con.execute(loyalty.qualifying_spend_sql(dt.date(2021, 12, 31), 364)).df().set_index("customer_id")
    assert df.loc["a", "qualifying_spend"] == 7  # 2021-01-01 is exactly 364 days before: outside
    assert df.loc["b", "qualifying_spend"] == 0  # 2020 is outside the window, 2022-01-05 after the snapshot
    with pytest.raises(ValueError):
        loyalty.qualifying_spend_sql(dt.date(2021, 1, 1), 0)


# --- cohorts -------------------------------------------------------------------------------------

def test_cohort_retention_known_answer(con):
    rows = [("a", "2021-01-05", 10), ("a", "2021-02-03", 5), ("a", "2021-02-20", 5), ("b", "2021-01-30", 20),
            ("b", "2021-03-01", 1), ("c", "2021-02-10", 8), ("c", "2021-04-01", 9)]
    write_cleaned(con, [{"customer_id": c, "order_id": f"o{i}", "order_datetime": d, "quantity": 1, "unit_price": v}
                        for i, (c, d, v) in enumerate(rows)])
    df = con.execute(cohorts.cohort_retention_sql(dt.date(2021, 3, 15))).df()  # c's April order unseen
    got = {(str(r.cohort_month)[:7], r.months_since_acquisition): (r.cohort_size, r.active_customers, r.retention_pct, r.revenue)
           for r in df.itertuples()}
    assert got == {
        ("2021-01", 0): (2, 2, 100.0, 30.0), ("2021-01", 1): (2, 1, 50.0, 10.0), ("2021-01", 2): (2, 1, 50.0, 1.0),
        ("2021-02", 0): (1, 1, 100.0, 8.0), ("2021-02", 1): (1, 0, 0.0, 0.0),
    }
    assert cohort_problems(df) == []
    assert cohort_problems(df.assign(active_customers=5)) != []
    mat = cohorts.retention_matrix(df)
    assert mat.shape == (2, 3) and np.isnan(mat.iloc[1, 2])


# --- personas ------------------------------------------------------------------------------------

def blobs(seed=0):
    """Three obvious groups: big recent regulars, small lapsed one-timers, mid newcomers."""
    rng = np.random.default_rng(seed)
    groups = [  # recency, frequency, monetary, aov, products, orders/30d, tenure
        (5, 20, 20000, 1000, 200, 2.0, 360), (300, 1, 80, 80, 3, 0.1, 320), (20, 1, 600, 600, 20, 1.0, 25)]
    rows = []
    for g, centre in enumerate(groups):
        for i in range(60):
            jitter = rng.uniform(0.85, 1.15, size=7)
            rows.append({"customer_id": f"g{g}_{i:02d}", **dict(zip(personas.PERSONA_FEATURES, np.array(centre) * jitter))})
    df = pd.DataFrame(rows)
    df["frequency"] = df["frequency"].round().clip(lower=1)
    return df


def test_personas_find_and_name_obvious_groups():
    df = blobs()
    res = personas.fit_personas(df, 3, 6, sample_size=150)
    assert res.k == 3 and res.silhouettes[3] > 0.6 and set(res.silhouettes) == {3, 4, 5, 6}
    by_group = res.assignments.assign(g=df["customer_id"].str[:2]).groupby("g")["persona"].agg(set)
    assert all(len(v) == 1 for v in by_group)  # each blob is one cluster
    assert by_group["g0"] == {"High-value frequent regulars"}
    assert by_group["g1"] == {"Low-value lapsed one-time buyers"}
    assert by_group["g2"] == {"Mid-value newcomers"}
    assert res.assignments.loc[df["customer_id"].str.startswith("g0"), "cluster"].eq(0).all()  # 0 = most valuable
    assert (res.model.predict(df) == res.assignments["cluster"].to_numpy()).all()
    cent = res.model.centroids().set_index("persona")
    assert cent.loc["High-value frequent regulars", "monetary"] == pytest.approx(20000, rel=0.1)


def test_duplicate_names_are_told_apart():
    df = pd.concat([blobs(), blobs(1).assign(avg_order_value=lambda d: d["avg_order_value"] * 3,
                                            customer_id=lambda d: "x" + d["customer_id"])], ignore_index=True)
    labels = np.repeat([0, 1, 2, 3, 4, 5], 60)
    names = personas.name_clusters(df, labels)
    assert len(set(names.values())) == 6
    assert names[3].endswith("(bigger baskets)") and names[0].endswith("(smaller baskets)")


def test_personas_bad_input():
    with pytest.raises(ValueError, match="too few"):
        personas.choose_k(np.zeros((3, 2)), 3, 8)
    with pytest.raises(ValueError, match="lack"):
        personas.prepare(pd.DataFrame({"recency_days": [1.0]}))
