"""The customer checks as check_specs of their assets: evaluated in the asset's step, a failed
blocking check fails the step, and one_row_per_customer from the feature base's order_days equals
the definition on cleaned_transactions."""

import datetime as dt

import dagster as dg
import duckdb
import pytest

from customer_assets.customers import ASSETS
from customer_assets.customers.checks import coverage_result, customer_coverage
from customer_assets.customers.features import compute_customer_features, ensure_feature_base
from customer_assets.ingestion.schema import write_cleaned

from test_customers_assets import END, build_warehouse, synthetic_rows


def _asset(name):
    return [a for a in ASSETS if a.key.to_user_string() == name]


def test_failed_blocking_check_in_the_asset_step_fails_it(tmp_path, resources_for):
    build_warehouse(tmp_path, synthetic_rows())
    # 20% Platinum breaks "Platinum <= 10% of customers": tiers_ordered_by_value fails and blocks
    result = dg.materialize(_asset("customer_features") + _asset("loyalty_tiers"),
                            resources=resources_for(tmp_path, loyalty_platinum_share=0.2),
                            instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert not result.success
    evals = {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}
    tiers = evals[("loyalty_tiers", "tiers_ordered_by_value")]
    assert not tiers.passed and tiers.metadata["platinum_share"].value == pytest.approx(0.2)
    assert evals[("loyalty_tiers", "one_row_per_customer")].passed
    assert evals[("customer_features", "one_row_per_customer")].passed
    # the default shares pass
    ok = dg.materialize(_asset("loyalty_tiers"), resources=resources_for(tmp_path),
                        instance=dg.DagsterInstance.ephemeral())
    assert all(e.passed for e in ok.get_asset_check_evaluations())


@pytest.mark.parametrize("snapshot", [END, dt.date(2021, 6, 30)])
def test_coverage_from_order_days_equals_cleaned_transactions(tmp_path, snapshot):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    write_cleaned(con, synthetic_rows(12))
    # a line without customer and a second line of an order: neither changes the expected customers
    con.execute("INSERT INTO cleaned_transactions (customer_id, order_id, order_date, line_total) "
                "VALUES (NULL, 'x1', DATE '2021-03-01', 5), ('c011', 'o11_0', DATE '2021-03-01', 1)")
    base = ensure_feature_base(con)
    df = compute_customer_features(con, snapshot)
    tables = {
        "exact": "SELECT * FROM df",
        "missing": "SELECT * FROM df WHERE customer_id <> (SELECT min(customer_id) FROM df)",
        "duplicate": "SELECT * FROM df UNION ALL (SELECT * FROM df LIMIT 1)",
        "unexpected": "SELECT * FROM df UNION ALL (SELECT * REPLACE ('zzz' AS customer_id) FROM df LIMIT 1)",
        "null_id": "SELECT * FROM df UNION ALL (SELECT * REPLACE (NULL AS customer_id) FROM df LIMIT 1)",
        "empty": "SELECT * FROM df LIMIT 0",
    }
    for name, sql in tables.items():
        con.execute(f"CREATE OR REPLACE TABLE t AS {sql}")
        want = customer_coverage(con, "t")
        got = coverage_result(con, "t", f"{base.prefix}order_days")
        assert got.passed == want.pop("passed") and got.passed == (name == "exact"), name
        assert {k: v.value for k, v in got.metadata.items()} == want, name
    con.close()
