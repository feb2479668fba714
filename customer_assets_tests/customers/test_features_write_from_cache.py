"""customer_features is written from the cached frame: the same table as `CREATE TABLE AS` the
feature query, and the steps reading the features at as_of share one computation with it."""

import shutil
import threading

import duckdb

from customer_assets.churn.features import churn_feature_frame, model_feature_columns
from customer_assets.customers import features as f
from customer_assets.ingestion.schema import write_cleaned

SNAPSHOT = "2011-09-30"


def _retail_copy(tmp_path, retail_db):
    shutil.copy(retail_db, tmp_path / "w.duckdb")
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("SET threads = 1")  # DuckDB's parallel DOUBLE sums may differ in the last bit between runs
    return con


def test_written_table_equals_the_query_table(tmp_path, retail_db):
    con = _retail_copy(tmp_path, retail_db)
    base = f.ensure_feature_base(con)
    assert "price_index" in base.optional  # the DOUBLE, DATE and VARCHAR columns of the real data
    con.execute(f"CREATE TABLE by_query AS {f.fast_features_sql(base, SNAPSHOT)}")
    frame, got_base = f.write_customer_features(con, "by_frame", SNAPSHOT)
    assert got_base == base
    assert con.execute("DESCRIBE by_frame").fetchall() == con.execute("DESCRIBE by_query").fetchall()
    n = con.execute("SELECT count(*) FROM by_query").fetchone()[0]
    assert n == len(frame) > 1000
    for a, b in (("by_query", "by_frame"), ("by_frame", "by_query")):
        assert con.execute(f"SELECT count(*) FROM (SELECT * FROM {a} EXCEPT ALL SELECT * FROM {b})").fetchone()[0] == 0
    # row order too (the query orders by customer_id)
    assert con.execute("SELECT list(customer_id) FROM by_frame").fetchone() == \
        con.execute("SELECT list(customer_id) FROM by_query").fetchone()


def test_write_and_readers_share_one_computation(tmp_path, retail_db):
    con = _retail_copy(tmp_path, retail_db)
    with f._FEATURE_CACHE_LOCK:
        f._FEATURE_CACHE.clear()
    scored = f.compute_customer_features(con, SNAPSHOT)     # e.g. churn_scores before customer_features
    assert len(f._FEATURE_CACHE) == 1
    frame, _ = f.write_customer_features(con, "customer_features", SNAPSHOT)
    assert len(f._FEATURE_CACHE) == 1
    assert frame is next(iter(f._FEATURE_CACHE.values()))[0]  # the cached frame, not a recomputation
    assert frame.equals(scored) and frame is not scored       # readers get copies
    scored.loc[0, "monetary"] = -1.0                           # a reader modifying its copy ...
    assert f.compute_customer_features(con, SNAPSHOT).equals(frame)  # ... does not change the cache


def test_churn_frame_columns_without_the_fields_scan(tmp_path, retail_db):
    con = _retail_copy(tmp_path, retail_db)
    assert list(churn_feature_frame(con, SNAPSHOT).columns) == ["customer_id"] + model_feature_columns(con)
    # a source without prices: no optional feature
    small = duckdb.connect(str(tmp_path / "small.duckdb"))
    write_cleaned(small, [dict(customer_id="a", order_id="o1", order_datetime="2011-01-03 10:00", quantity=1,
                               line_total=5.0)])
    cols = model_feature_columns(small)
    assert "price_index" not in cols
    assert list(churn_feature_frame(small, "2011-02-01").columns) == ["customer_id"] + cols


def test_cache_is_safe_from_two_threads(tmp_path):
    path = str(tmp_path / "wh.duckdb")
    con = duckdb.connect(path)
    write_cleaned(con, [dict(customer_id=c, order_id=f"o{i}", order_datetime=f"2011-01-{1 + i % 28:02d} 10:00",
                             product_id="P1", quantity=1, unit_price=2.0) for i, c in enumerate("abcdefgh" * 5)])
    f.ensure_feature_base(con)
    con.close()
    errors, frames = [], []

    def work(k):
        try:
            c = duckdb.connect(path)
            for i in range(40):  # more snapshots than the cache holds: inserts, hits and evictions interleave
                frames.append(f.compute_customer_features(c, f"2011-01-{1 + (i + k) % 28:02d}"))
            c.close()
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(frames) == 80 and len(f._FEATURE_CACHE) <= f._FEATURE_CACHE_SIZE
