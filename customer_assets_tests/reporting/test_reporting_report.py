"""The HTML report and the regional extracts on hand-made tables (the warehouse SQL is the real one)."""

import json
import re
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "actions"))
from handmade import N, cid, country, write_upstream  # noqa: E402

from customer_assets.actions import ASSETS as ACTION_ASSETS  # noqa: E402
from customer_assets.actions import retention as rt  # noqa: E402
from customer_assets.actions.notifier import Notifier  # noqa: E402
from customer_assets.customers.cohorts import cohort_retention_sql  # noqa: E402
from customer_assets.reporting import ASSETS, CHECKS  # noqa: E402
from customer_assets.reporting import extracts as ex  # noqa: E402
from customer_assets.reporting import report as rp  # noqa: E402
from customer_assets.warehouse.star import STAR_SQL  # noqa: E402


def _write_df(con, name, df):
    con.register("__df", df)
    con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM __df")
    con.unregister("__df")


def write_report_inputs(con):
    write_upstream(con)
    for name in ("sales_trends", "dim_product", "top_products", "revenue_by_region"):
        con.execute(f"CREATE OR REPLACE TABLE {name} AS {STAR_SQL[name]}")
    as_of = con.execute("SELECT max(order_date) FROM cleaned_transactions").fetchone()[0]
    con.execute(f"CREATE OR REPLACE TABLE cohort_retention AS {cohort_retention_sql(as_of)}")
    _write_df(con, "retention_actions", rt.build_retention_actions(rt.gather_inputs(con).frame, 0.1, "2011-W49"))
    _write_df(con, "association_rules", pd.DataFrame({
        "antecedent_names": ["Product 0", "Product 1"], "consequent_names": ["Product 1", "Product 2"],
        "support": [0.4, 0.2], "confidence": [0.6, 0.5], "lift": [1.5, 2.5], "both_orders": [20, 10],
    }))
    _write_df(con, "drift_report", pd.DataFrame({
        "model": ["churn_model", "churn_model", "churn_model"], "model_version": [1, 1, 1],
        "check_name": ["psi", "psi", "auc_drop"], "feature": ["recency_days", "monetary", None],
        "value": [0.35, 0.05, 0.02], "threshold": [0.2, 0.2, 0.1], "breached": [True, False, False],
        "exempt": [False, False, False], "detail": ["", "", "AUC 0.75 vs 0.76"], "as_of": ["2011-12-09"] * 3,
    }))


def test_full_report_known_numbers_and_self_contained(con, tmp_path):
    write_report_inputs(con)
    report = rp.build_report(con)
    missing = {s.key: s.missing for s in report["sections"] if s.missing}
    assert missing == {}
    path = rp.write_report(report, tmp_path / "reports")
    text = path.read_text()
    assert not re.findall(rp.EXTERNAL_REF, text, flags=re.IGNORECASE)
    assert text.count("src='data:image/png;base64,") == 9  # every section but KPIs and bundles
    revenue = con.execute("SELECT sum(line_total) FROM cleaned_transactions").fetchone()[0]
    assert f"£{revenue:,.0f}" in text and f"£{revenue:,.0f}" in report["markdown"]
    # Drift: the one breached PSI row is reported as an alarm.
    assert "1 drift alarm(s)" in text
    # Upsell target: among the growth segments, the largest customers x average spend. In the
    # hand-made data that is Potential Loyalist (i%5==4: monetary 100+7i, i = 4, 9, ..., 39).
    pl = [100 + 7 * i for i in range(N) if i % 5 == 4]
    lc = [100 + 7 * i for i in range(N) if i % 5 == 1]
    assert sum(pl) > sum(lc)
    upsell = [r for r in report["recommendations"] if r.startswith("Upsell")]
    assert upsell and f"**Potential Loyalist**: {len(pl)} customers averaging £{sum(pl) / len(pl):,.0f}" in upsell[0]
    assert any(r.startswith("Win back") for r in report["recommendations"])
    assert any(r.startswith("Cohorts") for r in report["recommendations"])
    assert "Strategic recommendations" in text and "### Recommendations" in report["markdown"]


def test_every_section_degrades_with_a_note(con, tmp_path):
    report = rp.build_report(con)  # an empty warehouse
    assert all(s.missing for s in report["sections"])
    assert "cleaned_transactions is not in the warehouse" in report["html"]
    assert "churn_scores is not in the warehouse" in report["html"]
    assert report["recommendations"] == []
    write_upstream(con)
    con.execute("CREATE TABLE sales_trends AS SELECT 1 AS x")  # wrong shape
    report = rp.build_report(con)
    status = {s.key: s.missing for s in report["sections"]}
    assert status["kpis"] is None and status["segments"] is None and status["churn"] is None
    assert "no date/revenue column" in status["sales_trend"]
    assert "drift_report is not in the warehouse" in status["drift"]
    rp.write_report(report, tmp_path)


def test_recommendations_are_written_from_the_numbers():
    found = {
        "segments": {"segments": [
            {"segment": "Champions", "customers": 100, "avg_revenue": 5000.0, "revenue": 500000.0},
            {"segment": "Loyal Customers", "customers": 300, "avg_revenue": 1000.0, "revenue": 300000.0},
            {"segment": "Potential Loyalist", "customers": 200, "avg_revenue": 400.0, "revenue": 80000.0},
            {"segment": "At Risk", "customers": 50, "avg_revenue": 800.0, "revenue": 40000.0},
        ]},
        "cohorts": {"m1": 20.0, "m3": 18.0, "m6": 17.0, "scale": 100.0},
        "revenue_by_region": {"top_region": "United Kingdom", "top_region_share": 0.82, "regions": 37},
    }
    recs = rp.recommendations(found)
    assert recs[0].startswith("Upsell **Loyal Customers**: 300 customers averaging £1,000")
    assert "about £60,000" in recs[0]  # 0.1 x 300 x (5000 - 1000) / 2
    assert recs[1].startswith("Win back: 50 customers in At Risk spent £40,000")
    assert "only 20% of new customers" in recs[2] and "second-purchase offer" in recs[2]
    assert "flattens after month 3" in recs[2]
    assert "United Kingdom brings 82%" in recs[3]
    assert rp.recommendations({}) == []


def test_regional_extracts_hold_only_their_region(con, tmp_path):
    write_upstream(con)
    _write_df(con, "retention_actions", rt.build_retention_actions(rt.gather_inputs(con).frame, 0.1, "W"))
    out = tmp_path / "regions"
    out.mkdir()
    (out / "stale_region.csv").write_text("customer_id\nX\n")
    table, notes = ex.write_regional_extracts(con, out, None)
    assert sorted(table["region"]) == ["France", "Germany", "United Kingdom"]
    assert dict(zip(table["region"], table["row_count"])) == {"United Kingdom": 20, "France": 10, "Germany": 10}
    assert not (out / "stale_region.csv").exists() and not (out / ".building").exists()
    for r in table.itertuples():
        df = pd.read_csv(r.path, dtype={"customer_id": str})
        assert set(df["country"]) == {r.region}
        assert sorted(df["customer_id"]) == sorted(cid(i) for i in range(N) if country(i) == r.region)
        assert {"churn_probability", "clv_12m", "control_group", "action"} <= set(df.columns)

    table, notes = ex.write_regional_extracts(con, out, " France , Narnia,France")
    assert table["region"].tolist() == ["France", "Narnia"]
    assert table["row_count"].tolist() == [10, 0] and pd.isna(table["path"].iloc[1])
    assert any("Narnia" in n for n in notes)
    assert sorted(p.name for p in out.glob("*.csv")) == ["france.csv"]
    assert ex.region_slug("Channel Islands") == "channel_islands" and ex.region_slug("RSA/EIRE") == "rsa_eire"


def test_extracts_without_country_or_actions(con, tmp_path):
    table, notes = ex.write_regional_extracts(con, tmp_path, None)
    assert table.empty and "retention_actions does not exist" in notes[0]
    _write_df(con, "retention_actions", pd.DataFrame({"customer_id": ["1"], "country": [None]}).astype(object))
    table, notes = ex.write_regional_extracts(con, tmp_path, None)
    assert table.empty and "no customer has a country" in notes[0]


def test_reporting_assets_materialize(tmp_path, resources_for):
    resources = {**resources_for(tmp_path, regions="Germany,France"), "notifier": Notifier()}
    c = duckdb.connect(resources["duckdb"].database)
    write_report_inputs(c)
    c.close()
    result = dg.materialize(ACTION_ASSETS + ASSETS + CHECKS, resources=resources,
                            instance=dg.DagsterInstance.ephemeral())
    assert result.success
    checks = result.get_asset_check_evaluations()
    # the four checks are check_specs of their assets, evaluated in the assets' steps
    assert sorted(e.check_name for e in checks) == [
        "customer_report_is_self_contained", "outbox_excludes_control_group", "regional_extracts_only_own_region",
        "retention_control_group_holdout"]
    assert all(e.passed for e in checks)
    report = Path(tmp_path / "reports" / "customer_report.html")
    assert report.exists() and "Retention actions" in report.read_text()
    meta = result.asset_materializations_for_node("customer_report")[0].metadata
    assert meta["sections_available"].value == "11 of 11"
    assert "Recommendations" in meta["summary"].value
    ext = result.asset_materializations_for_node("regional_extracts")[0].metadata
    assert ext["files"].value == 2 and ext["customers_in_extracts"].value == 20
    assert sorted(p.name for p in (tmp_path / "reports" / "regions").glob("*.csv")) == ["france.csv", "germany.csv"]
    json.dumps({k: str(v.value) for k, v in meta.items()})


def test_retention_curve_leaves_out_the_first_cohort_and_the_partial_month():
    import datetime as dt

    from customer_assets.reporting.sections import retention_curve

    rows = []
    months = ["2011-01-01", "2011-02-01", "2011-03-01", "2011-04-01"]
    for i, c in enumerate(months):
        for m in range(0, 4 - i):
            pct = 100.0 if m == 0 else (90.0 if i == 0 else 10.0 * m + i)
            rows.append({"cohort_month": pd.Timestamp(c), "months_since_acquisition": m, "retention_pct": pct})
    curve, excluded = retention_curve(pd.DataFrame(rows), dt.date(2011, 4, 15))
    # Cohort 2011-01 (the first) is out; cells falling in April 2011 (partial) are out:
    # month 1: Feb cohort -> March cell 11 kept, Mar cohort -> April cell out; month 2: Feb -> April out.
    assert curve.to_dict() == {1: 11.0}
    assert len(excluded) == 2 and "2011-01" in excluded[0] and "2011-04" in excluded[1]
    curve, excluded = retention_curve(pd.DataFrame(rows), dt.date(2011, 4, 30))  # April complete
    # month 1: Feb 11 and Mar 12 -> 11.5; month 2: Feb 21 (the Mar cohort has no month 2 yet).
    assert curve.to_dict() == {1: 11.5, 2: 21.0} and len(excluded) == 1


def test_reliability_is_recomputed_on_the_matured_window(con, tmp_path):
    """A registered model that always says 0.5: one bin, observed rate = the window's churn rate
    counted independently in SQL (customers seen by the snapshot without an order after it)."""
    import datetime as dt

    import numpy as np
    from sklearn.dummy import DummyClassifier

    from customer_assets.registry import register_model
    from customer_assets.reporting.sections import reliability_on_matured_window

    write_upstream(con)
    bins, why = reliability_on_matured_window(con, 90)
    assert bins is None and "no model_registry" in why  # nothing registered yet
    model = DummyClassifier(strategy="prior").fit(np.zeros((2, 1)), [0, 1])
    register_model(con, tmp_path / "models", "churn_model", {"pipeline": model, "features": ["recency_days"]},
                   metrics={"roc_auc": 0.5}, features=["recency_days"], selection_metric="roc_auc")
    bins, why = reliability_on_matured_window(con, 90)
    last = con.execute("SELECT max(order_date) FROM cleaned_transactions").fetchone()[0]
    snap = last - dt.timedelta(days=90)
    seen, churned = con.execute(
        """SELECT count(*), count(*) FILTER (WHERE NOT EXISTS (
                 SELECT 1 FROM cleaned_transactions t2 WHERE t2.customer_id = t.customer_id
                 AND t2.order_date > ? AND t2.order_date <= ?))
           FROM (SELECT DISTINCT customer_id FROM cleaned_transactions WHERE order_date <= ?) t""",
        [snap, last, snap],
    ).fetchone()
    assert 0 < churned < seen
    assert len(bins) == 1 and bins["predicted"].iloc[0] == pytest.approx(0.5)
    assert bins["n"].iloc[0] == seen and bins["observed"].iloc[0] == pytest.approx(churned / seen)
    assert f"{seen:,} customers" in why and f"scored at {snap}" in why


def test_cancellations_are_flagged_in_products_and_priorities(con):
    write_report_inputs(con)
    top_customer = con.execute("SELECT customer_id FROM retention_actions WHERE priority = 1").fetchone()[0]
    gross = con.execute("SELECT sum(line_total) FROM cleaned_transactions WHERE customer_id = ?",
                        [top_customer]).fetchone()[0]
    pid, units = con.execute("SELECT product_id, units FROM top_products WHERE ranked_by = 'revenue' "
                             "ORDER BY rank LIMIT 1").fetchone()
    _write_df(con, "quarantined_transactions", pd.DataFrame({
        "reason": ["cancellation", "cancellation", "duplicate"],
        "customer_id": [top_customer, "C000", top_customer],
        "product_id": [pid, "P9", pid],
        "quantity": [-0.6 * units, -1.0, -10 * units],
        "line_total": [-0.7 * gross, -1.0, -10 * gross],  # the duplicate row must not count
    }))
    report = rp.build_report(con)
    html = report["html"]
    assert "Gross of cancellations" in html and "most units of Product" in html
    assert f"Check before contacting: customer(s) {top_customer} cancelled" in html
    win_back = next(r for r in report["recommendations"] if r.startswith("Win back"))
    assert f"check {top_customer} by hand first" in win_back
    assert f"customer {top_customer}," not in win_back.split("top of the list:")[1].split(";")[0]


def test_the_headline_counts_from_the_feature_base_are_those_of_every_line(retail_db, tmp_path):
    """The report's KPIs (sections.headline_counts) read the feature base; on Online Retail they
    equal the definition over cleaned_transactions (HEADLINE_SQL), the revenue up to rounding."""
    import shutil

    import duckdb
    import pytest

    from customer_assets.reporting.sections import HEADLINE_SQL, headline_counts

    db = tmp_path / "w.duckdb"
    shutil.copy(retail_db, db)
    con = duckdb.connect(str(db))
    got, want = headline_counts(con), con.execute(HEADLINE_SQL).fetchone()
    assert want[0] > 4000 and want[3] > 390_000
    assert got[:2] == want[:2] and got[3:] == want[3:]
    assert got[2] == pytest.approx(want[2], rel=1e-12)
