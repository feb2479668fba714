"""The bundle steps read per-product line and order counts from the star schema's totals when those
describe the current data and as_of is the data's last date: the same rules and pair candidates as
counting in cleaned_transactions (Online Retail); counted in the lines otherwise."""

import datetime as dt
import shutil

import duckdb
import pandas as pd
import pytest

from customer_assets.bundles import rules
from customer_assets.bundles.recommendations import most_ordered_products, pair_candidates
from customer_assets.common.data_version import data_fingerprint
from customer_assets.ingestion.pipeline import ingest
from customer_assets.warehouse import star
from customer_assets_tests.conftest import RETAIL_MAPPING, RETAIL_PARQUET


@pytest.fixture
def star_con(retail_db, tmp_path):
    path = tmp_path / "wh.duckdb"
    shutil.copy(retail_db, path)
    con = duckdb.connect(str(path))
    star.sync_intermediates(con, data_fingerprint(con))
    yield con
    con.close()


def _scanned(monkeypatch):
    monkeypatch.setattr(rules, "product_counts", lambda con, as_of=None: None)


def test_counts_from_the_star_equal_the_counts_in_the_lines(star_con):
    sql = rules.product_counts(star_con, None)
    assert sql is not None
    got = star_con.execute(f"SELECT * FROM ({sql}) ORDER BY product_id").df()
    expected = star_con.execute(
        "SELECT product_id, count(*) AS lines, count(DISTINCT order_id) AS orders FROM cleaned_transactions "
        "WHERE product_id IS NOT NULL GROUP BY product_id ORDER BY product_id").df()
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert str(star_con.execute(f"SELECT typeof(lines) FROM ({sql}) LIMIT 1").fetchone()[0]) == "BIGINT"


def test_rules_and_pairs_are_the_same_with_the_stars_counts(star_con, monkeypatch):
    last = star_con.execute("SELECT max(order_date) FROM cleaned_transactions").fetchone()[0]
    assert rules.product_counts(star_con, last) is not None
    mined, stats = rules.mine_rules(star_con, 0.01, 0.3, 1.0, 3, as_of=last)
    dead = ["22139", "23084", "85123A", "21108"]
    pairs = pair_candidates(star_con, dead, last, 5, 0.1, 1.0, top=3, dead_ids=set(dead))
    _scanned(monkeypatch)
    mined_scan, stats_scan = rules.mine_rules(star_con, 0.01, 0.3, 1.0, 3, as_of=last)
    pairs_scan = pair_candidates(star_con, dead, last, 5, 0.1, 1.0, top=3, dead_ids=set(dead))
    assert len(mined) > 100 and len(pairs) > 5
    pd.testing.assert_frame_equal(mined, mined_scan)
    assert stats == stats_scan
    def ordered(df):
        return (df.assign(partner=df["partner_ids"].str[0]).sort_values(["product_id", "partner"])
                .drop(columns="partner").reset_index(drop=True))

    pd.testing.assert_frame_equal(ordered(pairs), ordered(pairs_scan))


def test_counted_in_the_lines_when_the_star_does_not_fit(star_con):
    last = star_con.execute("SELECT max(order_date) FROM cleaned_transactions").fetchone()[0]
    # as_of before the data's last date: the star's totals count lines after it
    assert rules.product_counts(star_con, last - dt.timedelta(days=30)) is None
    # data changed since the totals were synced: they no longer describe it
    star_con.execute("UPDATE cleaned_transactions SET quantity = quantity + 1 WHERE rowid = 0")
    assert rules.product_counts(star_con, last) is None
    # no star schema at all
    plain = duckdb.connect()
    plain.execute("CREATE TABLE cleaned_transactions AS SELECT * FROM range(0) t(order_date)")
    assert rules.product_counts(plain, None) is None


@pytest.fixture(scope="module")
def appended_db(tmp_path_factory):
    """Online Retail loaded in two files: the star's intermediates synced after the first, then the
    second appended (a weekly refresh's state before the star's steps run). Each test copies it."""
    tmp = tmp_path_factory.mktemp("star_counts_append")
    df = pd.read_parquet(RETAIL_PARQUET)
    when = pd.to_datetime(df["InvoiceDate"])
    first, landing = tmp / "retail_a.parquet", tmp / "landing"
    landing.mkdir()
    df[when < "2011-11-01"].to_parquet(first, index=False)
    path = tmp / "w.duckdb"
    with duckdb.connect(str(path)) as con:
        ingest(con, str(first), str(RETAIL_MAPPING), str(landing))
        star.sync_intermediates(con, data_fingerprint(con))
        df[when >= "2011-11-01"].to_parquet(landing / "retail_b.parquet", index=False)
        ingest(con, str(first), str(RETAIL_MAPPING), str(landing))
        assert star.built_from(con, star.INTERMEDIATES)[0] != data_fingerprint(con)  # behind by the append
    return path


def _copy(db, tmp_path, read_only=False):
    path = tmp_path / "copy.duckdb"
    shutil.copy(db, path)
    return duckdb.connect(str(path), read_only=read_only)


def test_after_an_append_the_counts_sync_the_star_first(appended_db, tmp_path):
    con = _copy(appended_db, tmp_path)
    current = data_fingerprint(con)
    assert star.built_from(con, star.INTERMEDIATES)[0] != current
    last = con.execute("SELECT max(order_date) FROM cleaned_transactions").fetchone()[0]
    sql = rules.product_counts(con, last)
    assert sql is not None
    assert star.built_from(con, star.INTERMEDIATES)[0] == current  # brought up to date from the appended lines
    got = con.execute(f"SELECT * FROM ({sql}) ORDER BY product_id").df()
    expected = con.execute(
        "SELECT product_id, count(*) AS lines, count(DISTINCT order_id) AS orders FROM cleaned_transactions "
        "WHERE product_id IS NOT NULL GROUP BY product_id ORDER BY product_id").df()
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert star.sync_intermediates(con, current) == "same"  # the star's steps find them up to date
    con.close()


def test_a_read_only_connection_behind_the_data_counts_in_the_lines(appended_db, tmp_path):
    ro = _copy(appended_db, tmp_path, read_only=True)
    assert star.built_from(ro, star.INTERMEDIATES)[0] != data_fingerprint(ro)
    assert rules.product_counts(ro) is None
    ro.close()


def test_most_ordered_products_are_the_same_from_the_stars_counts(star_con, monkeypatch):
    assert rules.product_counts(star_con) is not None
    from_star = most_ordered_products(star_con, 40)
    _scanned(monkeypatch)
    assert most_ordered_products(star_con, 40) == from_star
    assert len(from_star) == 40
    assert from_star == [r[0] for r in star_con.execute(
        "SELECT product_id FROM cleaned_transactions WHERE product_id IS NOT NULL GROUP BY product_id "
        "ORDER BY count(DISTINCT order_id) DESC, product_id LIMIT 40").fetchall()]


def test_names_and_order_total_are_the_same_from_the_star(star_con, monkeypatch):
    from customer_assets.warehouse.star import orders_with_products_sql, product_names_sql

    last = star_con.execute("SELECT max(order_date) FROM cleaned_transactions").fetchone()[0]
    assert product_names_sql(star_con) is not None and orders_with_products_sql(star_con) is not None
    names, orders = rules.product_names(star_con, last), rules.orders_with_products(star_con, last)
    monkeypatch.setattr(star, "product_names_sql", lambda con: None)
    monkeypatch.setattr(star, "orders_with_products_sql", lambda con: None)
    assert rules.product_names(star_con, last) == names and len(names) > 3000
    assert rules.orders_with_products(star_con, last) == orders > 15000
    monkeypatch.undo()
    # a line without a product: the star's orders count it, the denominator must not
    star_con.execute("UPDATE cleaned_transactions SET product_id = NULL, order_id = 'only-unnamed' WHERE rowid = 0")
    star.sync_intermediates(star_con, data_fingerprint(star_con))
    assert orders_with_products_sql(star_con) is None


def test_dead_stock_is_the_same_with_the_stars_names(star_con, monkeypatch):
    from customer_assets.bundles.dead_stock import dead_stock_from_inventory, dead_stock_proxy

    last = star_con.execute("SELECT max(order_date) FROM cleaned_transactions").fetchone()[0]
    # a product without any name: dead_stock keeps its row (no name, its last sale's date); the
    # bundle steps' names leave it out
    star_con.execute("UPDATE cleaned_transactions SET product_name = NULL WHERE product_id = '22139'")
    star.sync_intermediates(star_con, data_fingerprint(star_con))
    products = star_con.execute(
        "SELECT product_id FROM cleaned_transactions GROUP BY 1 ORDER BY count(*) DESC LIMIT 300").fetchall()
    inv = pd.DataFrame({"product_id": [p for (p,) in products], "units_stocked": 500.0,
                        "date": [None] * 150 + [last - dt.timedelta(days=40)] * 150})

    def both():
        return (dead_stock_from_inventory(star_con, inv, last, 0.2, 60).frame,
                dead_stock_proxy(star_con, last, 0.5, 30, 90).frame)

    from_star = both()
    monkeypatch.setattr(star, "product_names_sql", lambda con, **kw: None)
    scanned = both()
    for a, b in zip(from_star, scanned):
        assert len(a) > 100 and a["product_name"].notna().sum() > 100
        pd.testing.assert_frame_equal(a, b)
    nameless = from_star[0][from_star[0]["product_id"] == "22139"]
    assert len(nameless) == 1 and nameless["product_name"].isna().all() and nameless["last_sold_date"].notna().all()
    monkeypatch.undo()
    assert "22139" not in rules.product_names(star_con, last)
