"""The customer stage's cheaper computations give what the definitions give: cohorts and qualifying
spend from the feature base's order_days, RFM segments by code lookup, the persona silhouettes from
one distance matrix, the plot sample drawn from the fit sample, the narrower feature reads."""

from __future__ import annotations

import datetime as dt
import itertools

import duckdb
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import silhouette_score

from customer_assets.common.sampling import sample_customers
from customer_assets.customers import cohorts, loyalty, personas, rfm
from customer_assets.customers.assets import read_features
from customer_assets.customers.features import ensure_feature_base, fast_features_sql
from customer_assets.common.db import replace_table


def _close(a: pd.Series, b: pd.Series) -> bool:
    """Equal up to the last bits of a sum of doubles (DuckDB sums in no fixed order)."""
    return bool(np.allclose(a.to_numpy(dtype=float), b.to_numpy(dtype=float), rtol=1e-12, atol=1e-9))


@pytest.fixture(scope="module")
def retail(retail_db, tmp_path_factory):
    """A writable copy of the Online Retail warehouse with its feature base and customer_features."""
    path = tmp_path_factory.mktemp("fast") / "w.duckdb"
    path.write_bytes(retail_db.read_bytes())
    con = duckdb.connect(str(path))
    base = ensure_feature_base(con)
    as_of = con.execute("SELECT max(order_date) FROM cleaned_transactions").fetchone()[0]
    replace_table(con, "customer_features", fast_features_sql(base, as_of))
    yield con, base, as_of
    con.close()


@pytest.mark.parametrize("months_back", [0, 5])
def test_cohorts_from_order_days_equal_the_definition(retail, months_back):
    con, base, as_of = retail
    snap = (pd.Timestamp(as_of) - pd.DateOffset(months=months_back)).date()
    ref = con.execute(cohorts.cohort_retention_sql(snap)).df()
    fast = con.execute(cohorts.cohort_retention_sql(snap, f"{base.prefix}order_days")).df()
    assert len(ref) > 10
    assert fast.drop(columns="revenue").equals(ref.drop(columns="revenue"))
    assert _close(fast["revenue"], ref["revenue"])


@pytest.mark.parametrize("window", [30, 365])
def test_qualifying_spend_from_order_days_equals_the_definition(retail, window):
    con, base, as_of = retail
    ref = con.execute(loyalty.qualifying_spend_sql(as_of, window)).df()
    fast = con.execute(loyalty.qualifying_spend_sql(as_of, window, f"{base.prefix}order_days")).df()
    assert fast["customer_id"].equals(ref["customer_id"])  # both ordered by customer_id
    assert fast["customer_id"].is_monotonic_increasing and (fast["qualifying_spend"] == 0).any()
    assert fast["qualifying_spend"].equals(ref["qualifying_spend"])  # exact sums: equal to the bit


def test_order_days_spend_counts_a_missing_line_total_as_zero(con):
    """A customer whose only lines in the window have no line_total: 0, not NULL, either way."""
    con.execute("""CREATE TABLE cleaned_transactions AS SELECT * FROM (VALUES
        ('a', 'o1', DATE '2021-06-01', NULL::DOUBLE), ('a', 'o0', DATE '2019-01-01', 5.0),
        ('b', 'o2', DATE '2021-06-02', 3.0)) t(customer_id, order_id, order_date, line_total)""")
    con.execute("""CREATE TABLE od AS SELECT customer_id, order_id, order_date,
        sum(coalesce(line_total, 0)) AS order_value FROM cleaned_transactions GROUP BY ALL""")
    ref = con.execute(loyalty.qualifying_spend_sql(dt.date(2021, 12, 31), 365)).df()
    fast = con.execute(loyalty.qualifying_spend_sql(dt.date(2021, 12, 31), 365, "od")).df()
    assert ref.equals(fast) and fast["qualifying_spend"].tolist() == [0.0, 3.0]


def test_equal_spend_is_equal_whatever_the_summation_order(con):
    """The same amounts added in another order give another double (here 1691.8799999999999 vs
    1691.88): the spend is summed exactly, so customers with the same amounts share spend, rank
    and tier."""
    amounts = [591.15, 102.23, 317.43, 22.32, 649.55, 9.2]
    rows = [("a", v) for v in amounts] + [("b", v) for v in reversed(amounts)] + [("c", 5.0)]
    con.execute("CREATE TABLE cleaned_transactions AS SELECT customer_id, DATE '2021-06-01' AS order_date, "
                "line_total FROM (VALUES " + ", ".join(f"('{c}', {v}::DOUBLE)" for c, v in rows)
                + ") t(customer_id, line_total)")
    doubles = dict(con.execute("SELECT customer_id, sum(line_total) FROM cleaned_transactions GROUP BY 1").fetchall())
    assert doubles["a"] != doubles["b"]  # what a double sum does with these rows
    spend = con.execute(loyalty.qualifying_spend_sql(dt.date(2021, 12, 31), 365)).df()
    assert spend["qualifying_spend"].tolist() == [1691.88, 1691.88, 5.0]
    tiers = loyalty.assign_tiers(spend, 0.34, 0.0, 0.0)
    assert tiers["value_rank"].tolist() == [1, 1, 3] and tiers["tier"].tolist() == ["Platinum", "Platinum", "Bronze"]


def test_assign_tiers_keeps_customer_order_whatever_the_input_order():
    spend = pd.DataFrame({"customer_id": [f"c{i:02d}" for i in range(20)], "qualifying_spend": np.arange(20.0)})
    ordered = loyalty.assign_tiers(spend, 0.05, 0.15, 0.30)
    shuffled = loyalty.assign_tiers(spend.sample(frac=1, random_state=1), 0.05, 0.15, 0.30)
    assert ordered.equals(shuffled) and ordered["customer_id"].is_monotonic_increasing


@pytest.mark.parametrize("with_price", [False, True])
def test_segments_by_code_equal_the_rule_loop(with_price):
    rng = np.random.default_rng(3)
    n = 3000
    r, f, m = (pd.Series(rng.integers(1, 6, n)) for _ in range(3))
    flag = pd.Series(rng.random(n) < 0.3) if with_price else None
    assert rfm._segments_by_code(r, f, m, flag).equals(rfm.assign_segments(r, f, m, flag))


def test_segments_by_code_raise_on_an_uncovered_code():
    rules = rfm.SEGMENT_RULES[rfm.SEGMENT_RULES["segment"] != "Lost"]  # leaves R=1, F<=3 uncovered
    r, f, m = pd.Series([1, 5]), pd.Series([1, 5]), pd.Series([1, 5])
    with pytest.raises(ValueError) as slow:
        rfm.assign_segments(r, f, m, None, rules=rules)
    with pytest.raises(ValueError) as fast:
        rfm._segments_by_code(r, f, m, None, rules=rules)
    assert str(fast.value) == str(slow.value) == "the segment rule table does not cover RFM scores [(1, 1, 1)]"
    assert rfm._segments_by_code(r, f, m, None).tolist() == ["Lost", "Champions"]


def test_rfm_code_text():
    f = pd.DataFrame({"customer_id": ["a", "b", "c", "d", "e"], "recency_days": [1, 2, 3, 4, 5],
                      "frequency": [5, 4, 3, 2, 1], "monetary": [10.0, 20.0, 30.0, 40.0, 50.0]})
    out = rfm.compute_rfm(f, None)
    assert out["rfm_code"].tolist() == [f"{a}{b}{c}" for a, b, c in zip(out["r_score"], out["f_score"], out["m_score"])]
    assert out["rfm_code"].tolist() == ["551", "442", "333", "224", "115"]


def test_choose_k_silhouettes_equal_sklearn_silhouette_score():
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(c, 1.0, size=(400, 4)) for c in (0, 4, 9)])
    k, scores, fits = personas.choose_k(x, 2, 5, sample_size=500)
    for kk, pipe in fits.items():
        ref = silhouette_score(pipe.named_steps["scale"].transform(x), pipe.named_steps["kmeans"].labels_,
                               sample_size=500, random_state=personas.RANDOM_STATE)
        assert scores[kk] == ref  # the same number, not only close
    assert k == 3


def test_name_cluster_with_precomputed_quantiles():
    rng = np.random.default_rng(1)
    overall = pd.DataFrame(rng.lognormal(size=(300, len(personas.PERSONA_FEATURES))), columns=personas.PERSONA_FEATURES)
    q = overall.quantile(personas.NAME_QUANTILES)
    for i in range(0, 300, 37):
        assert personas.name_cluster(overall.iloc[i], overall, q) == personas.name_cluster(overall.iloc[i], overall)


def test_plot_sample_from_the_fit_sample_is_the_plot_sample_of_everyone():
    ids = pd.DataFrame({"customer_id": [str(1000 + i) for i in range(30000)]})
    fit = sample_customers(ids, 10000)
    assert set(sample_customers(fit, 5000)["customer_id"]) == set(sample_customers(ids, 5000)["customer_id"])


def test_fit_personas_reports_its_fit_sample():
    df = pd.concat([blob.assign(customer_id=lambda d, j=j: f"s{j}_" + d["customer_id"]) for j, blob in
                    enumerate([_blobs(s) for s in range(4)])], ignore_index=True)  # 720 customers
    sampled = personas.fit_personas(df, 3, 4, sample_size=200, max_fit_customers=300)
    assert len(sampled.fit_customers) == 300
    assert set(sampled.fit_customers) == set(sample_customers(df, 300)["customer_id"])
    assert personas.fit_personas(df, 3, 4, sample_size=200).fit_customers is None


def _blobs(seed):
    rng = np.random.default_rng(seed)
    rows = []
    for g, centre in enumerate([(5, 20, 20000, 1000, 200, 2.0, 360), (300, 1, 80, 80, 3, 0.1, 320)]):
        for i in range(90):
            rows.append({"customer_id": f"g{g}_{i:02d}",
                         **dict(zip(personas.PERSONA_FEATURES, np.array(centre) * rng.uniform(0.85, 1.15, 7)))})
    return pd.DataFrame(rows)


def test_read_features_columns(retail):
    con, base, _ = retail
    full = read_features(con)
    some = read_features(con, ["customer_id", "monetary"], optional=["price_index", "no_such_feature"])
    assert list(some.columns) == ["customer_id", "monetary", "price_index"]
    assert some.equals(full[["customer_id", "monetary", "price_index"]])
    assert list(itertools.islice(full.columns, 2)) == ["customer_id", "snapshot_date"]


def _coverage_reference(con, table: str) -> tuple:
    """The counts as the check computed them before (count(DISTINCT) and two EXCEPTs)."""
    snap = con.execute(f"SELECT max(snapshot_date) FROM {table}").fetchone()[0]
    rows, distinct = con.execute(f"SELECT count(*), count(DISTINCT customer_id) FROM {table}").fetchone()
    expected, missing, extra = con.execute(
        f"""WITH expected AS MATERIALIZED (
                SELECT DISTINCT customer_id FROM cleaned_transactions
                WHERE customer_id IS NOT NULL AND order_date <= ?),
            got AS MATERIALIZED (SELECT DISTINCT customer_id FROM {table})
            SELECT (SELECT count(*) FROM expected),
                   (SELECT count(*) FROM (SELECT * FROM expected EXCEPT SELECT * FROM got)),
                   (SELECT count(*) FROM (SELECT * FROM got EXCEPT SELECT * FROM expected))""", [snap]).fetchone()
    return rows, distinct, expected, missing, extra


@pytest.mark.parametrize("table_rows", [
    "SELECT * FROM good",                                                     # exact
    "SELECT * FROM good WHERE customer_id <> 'b'",                            # one missing
    "SELECT * FROM good UNION ALL SELECT * FROM good WHERE customer_id = 'a'",  # a duplicate
    "SELECT * FROM good UNION ALL SELECT 'zz', DATE '2021-06-30'",            # one unexpected
    "SELECT * FROM good UNION ALL SELECT NULL, DATE '2021-06-30'",            # a NULL customer
    "SELECT * FROM good WHERE customer_id = 'a' UNION ALL SELECT NULL, DATE '2021-06-30' "
    "UNION ALL SELECT NULL, DATE '2021-06-30'",                               # missing + NULLs
])
def test_coverage_counts_equal_the_reference(con, table_rows):
    from customer_assets.customers.checks import customer_coverage

    con.execute("""CREATE TABLE cleaned_transactions AS SELECT * FROM (VALUES
        ('a', DATE '2021-01-01'), ('a', DATE '2021-02-01'), ('b', DATE '2021-03-01'), ('c', DATE '2021-06-30'),
        (NULL, DATE '2021-01-05'), ('late', DATE '2021-07-01')) t(customer_id, order_date)""")
    con.execute("CREATE TABLE good AS SELECT * FROM (VALUES ('a', DATE '2021-06-30'), ('b', DATE '2021-06-30'), "
                "('c', DATE '2021-06-30')) t(customer_id, snapshot_date)")
    con.execute(f"CREATE TABLE t AS {table_rows}")
    res = customer_coverage(con, "t")
    got = (res["rows"], res["distinct_customers"], res["expected_customers"], res["missing_customers"],
           res["unexpected_customers"])
    assert got == _coverage_reference(con, "t")
    assert res["passed"] == (table_rows == "SELECT * FROM good")


def test_order_days_paths_after_an_incremental_feature_base_update(tmp_path):
    """order_days after an append (extra partial rows per order) still gives the definitions."""
    from test_feature_base_incremental import WEEK1, WEEK2, _load, _meta, _setup

    con, _, folder, mapping = _setup(tmp_path)
    _load(con, folder, mapping, "w1.csv", WEEK1)
    ensure_feature_base(con)
    _load(con, folder, mapping, "w2.csv", WEEK2)  # adds a line to an old order, late data, a new customer
    base = ensure_feature_base(con)
    assert _meta(con)[:2] == ("append", len(WEEK2))
    od = f"{base.prefix}order_days"
    for snap in [dt.date(2011, 1, 4), dt.date(2011, 1, 12)]:
        ref, fast = (con.execute(cohorts.cohort_retention_sql(snap, *src)).df() for src in [(), (od,)])
        assert fast.drop(columns="revenue").equals(ref.drop(columns="revenue")) and _close(fast["revenue"], ref["revenue"])
        ref, fast = (con.execute(loyalty.qualifying_spend_sql(snap, 3, *src)).df() for src in [(), (od,)])
        assert fast.equals(ref) and len(fast) >= 2
    con.close()


def test_silhouette_mean_is_sklearns_mean_bit_for_bit():
    from sklearn.metrics import silhouette_samples
    from sklearn.metrics.pairwise import euclidean_distances

    rng = np.random.default_rng(3)
    for t in range(40):
        n = int(rng.integers(5, 400))
        d = euclidean_distances(rng.normal(size=(n, int(rng.integers(1, 7)))) * rng.lognormal())
        labels = rng.integers(0, int(rng.integers(2, 9)), size=n) * 3 + 5 * (t % 2)  # gaps, offset
        if t % 4 == 0:
            labels[0] = 99  # a singleton cluster: its silhouette is 0
        ref = float(np.mean(silhouette_samples(d, labels, metric="precomputed")))
        assert personas.silhouette_mean(np.ascontiguousarray(d.T), labels) == ref
    # what sklearn rejects is still rejected, with sklearn's error
    with pytest.raises(ValueError, match="Number of labels"):
        personas.silhouette_mean(np.zeros((4, 4)), np.zeros(4, dtype=int))
