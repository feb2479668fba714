"""Star schema and metrics on hand-made lines with known answers."""

import pytest

from customer_assets.common.db import replace_table
from customer_assets.ingestion.schema import write_cleaned
from customer_assets.warehouse.star import STAR_SQL, build_table

LINES = [
    # customer a: 2 orders (UK, UK), customer b: 1 order (France)
    dict(customer_id="a", order_id="o1", order_datetime="2011-01-03 10:00", product_id="P1", product_name="Mug",
         quantity=2, unit_price=2.5, country="United Kingdom"),
    dict(customer_id="a", order_id="o1", order_datetime="2011-01-03 10:00", product_id="P2", product_name="Bowl",
         quantity=1, unit_price=10.0, country="United Kingdom"),
    dict(customer_id="a", order_id="o2", order_datetime="2011-02-07 09:00", product_id="P1", product_name="MUG",
         quantity=4, unit_price=2.5, country="United Kingdom"),
    dict(customer_id="b", order_id="o3", order_datetime="2011-02-08 12:00", product_id="P1", product_name="MUG",
         quantity=10, unit_price=2.0, country="France"),
]


@pytest.fixture
def star(con):
    write_cleaned(con, LINES)
    for name in STAR_SQL:
        build_table(con, name)
    return con


def test_fact_sales_has_every_line(star):
    assert star.execute("SELECT count(*), sum(line_total) FROM fact_sales").fetchone() == (4, 45.0)


def test_dim_customer(star):
    rows = star.execute("SELECT customer_id, orders, revenue, country, CAST(first_purchase AS DATE) "
                        "FROM dim_customer ORDER BY 1").fetchall()
    assert [r[:4] for r in rows] == [("a", 2, 25.0, "United Kingdom"), ("b", 1, 20.0, "France")]
    assert str(rows[0][4]) == "2011-01-03"


def test_dim_product_most_frequent_description(star):
    name, first, units = star.execute(
        "SELECT product_name, CAST(first_sale AS DATE), units_sold FROM dim_product WHERE product_id = 'P1'"
    ).fetchone()
    assert name == "MUG" and str(first) == "2011-01-03" and units == 16


def test_dim_date_spans_every_day(star):
    n, lo, hi = star.execute("SELECT count(*), min(date), max(date) FROM dim_date").fetchone()
    assert (str(lo), str(hi)) == ("2011-01-03", "2011-02-08") and n == 37


def test_sales_trends_monthly(star):
    rows = star.execute("SELECT CAST(period_start AS VARCHAR), revenue, orders, active_customers, avg_order_value "
                        "FROM sales_trends WHERE grain = 'month' ORDER BY 1").fetchall()
    assert rows == [("2011-01-01", 15.0, 1, 1, 15.0), ("2011-02-01", 30.0, 2, 2, 15.0)]


def test_top_products_and_regions(star):
    top = star.execute("SELECT product_id FROM top_products WHERE ranked_by = 'revenue' ORDER BY rank").fetchall()
    assert [t[0] for t in top] == ["P1", "P2"]
    regions = star.execute("SELECT country, revenue, revenue_share FROM revenue_by_region").fetchall()
    assert regions == [("United Kingdom", 25.0, round(25 / 45, 4)), ("France", 20.0, round(20 / 45, 4))]


def test_fact_sales_view_follows_a_rebuilt_cleaned_table(star):
    # cleaned_transactions is rebuilt by build-then-swap; the fact view must see the new rows
    replace_table(star, "cleaned_transactions", "SELECT * FROM cleaned_transactions WHERE customer_id = 'a'")
    assert star.execute("SELECT count(*), sum(line_total) FROM fact_sales").fetchone() == (3, 25.0)


def test_fact_sales_view_replaces_an_older_table(star):
    star.execute("DROP VIEW fact_sales")
    star.execute("CREATE TABLE fact_sales AS SELECT 1 AS x")  # as an earlier version built it
    build_table(star, "fact_sales")
    assert star.execute("SELECT count(*) FROM fact_sales").fetchone()[0] == 4
