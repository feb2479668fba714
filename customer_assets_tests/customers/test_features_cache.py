"""The in-process feature cache never serves a stale answer."""

import duckdb

from customer_assets.customers import features as f
from customer_assets.ingestion.schema import write_cleaned

ROWS = [
    dict(customer_id="a", order_id="o1", order_datetime="2011-01-03 10:00", product_id="P1", quantity=2, unit_price=5.0),
    dict(customer_id="a", order_id="o2", order_datetime="2011-02-03 10:00", product_id="P2", quantity=1, unit_price=3.0),
]


def test_cache_hit_and_invalidation_on_changed_data(tmp_path):
    con = duckdb.connect(str(tmp_path / "wh.duckdb"))
    write_cleaned(con, ROWS)
    first = f.compute_customer_features(con, "2011-03-01")
    base = f.ensure_feature_base(con)
    assert f._cache_key(con, base, f.fast_features_sql(base, "2011-03-01")) in f._FEATURE_CACHE
    again = f.compute_customer_features(con, "2011-03-01")
    assert again.equals(first)
    # a change to the data (same row count) must not be answered from the cache
    con.execute("UPDATE cleaned_transactions SET line_total = 100 WHERE order_id = 'o2'")
    changed = f.compute_customer_features(con, "2011-03-01")
    assert changed["monetary"].iloc[0] == 110.0 != first["monetary"].iloc[0]


def test_in_memory_databases_are_not_cached():
    con = duckdb.connect()
    write_cleaned(con, ROWS)
    assert f._cache_key(con, f.ensure_feature_base(con), "SELECT 1") is None
