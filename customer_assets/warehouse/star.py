"""Star schema and core sales metrics: one readable SQL query per table, over cleaned_transactions.

Kept as plain strings so the assets, the tests and bench/metric_queries.py run the very same SQL.
fact_sales is a view (VIEWS): it is cleaned_transactions keyed to the dimensions, and a copy would
cost a full pass over tens of millions of lines for no new information.
"""

VIEWS = {"fact_sales"}
# tables a table's SQL reads besides cleaned_transactions (asset dependencies; STAR_SQL lists them first)
READS = {"top_products": ["dim_product"]}

STAR_SQL = {
    "fact_sales": """
        SELECT
            source_file,            -- (source_file, source_row) is the line's natural key
            source_row,
            order_id,
            customer_id,
            product_id,
            year(order_date) * 10000 + month(order_date) * 100 + day(order_date) AS date_key,
            order_datetime,
            order_date,
            country,
            store_id,
            quantity,
            unit_price,
            discount,
            line_total
        FROM cleaned_transactions
    """,
    # dim_customer and dim_product aggregate first and join names / countries to the aggregate
    # (joining every line first cost twice as much at 10.8M lines, with the same result).
    "dim_customer": """
        WITH orders AS (
            -- one row per (customer, order, country): ~20x fewer rows than lines
            SELECT customer_id, order_id, country,
                   min(order_datetime) AS first_dt, max(order_datetime) AS last_dt, sum(line_total) AS revenue
            FROM cleaned_transactions
            GROUP BY customer_id, order_id, country
        ),
        main_country AS (
            -- a customer who ordered from several countries gets the one with most orders
            -- (a tie goes to the alphabetically last, so the result is stable)
            SELECT customer_id, arg_max(country, (n, country)) AS country
            FROM (SELECT customer_id, country, count(*) AS n FROM orders GROUP BY customer_id, country)
            GROUP BY customer_id
        ),
        products AS (
            SELECT customer_id, count(DISTINCT product_id) AS distinct_products
            FROM cleaned_transactions GROUP BY customer_id
        )
        SELECT
            o.customer_id,
            min(o.first_dt) AS first_purchase,
            max(o.last_dt) AS last_purchase,
            any_value(m.country) AS country,
            count(DISTINCT o.order_id) AS orders,
            round(sum(o.revenue), 2) AS revenue,
            any_value(p.distinct_products) AS distinct_products
        FROM orders o
        JOIN main_country m ON m.customer_id = o.customer_id
        JOIN products p ON p.customer_id = o.customer_id
        GROUP BY o.customer_id
    """,
    "dim_product": """
        WITH agg AS (
            SELECT product_id,
                   min(order_datetime) AS first_sale,
                   max(order_datetime) AS last_sale,
                   sum(quantity) AS units_sold,
                   round(sum(line_total), 2) AS revenue,
                   median(unit_price) AS median_unit_price,
                   count(DISTINCT order_id) AS orders
            FROM cleaned_transactions WHERE product_id IS NOT NULL
            GROUP BY product_id
        ),
        names AS (
            SELECT product_id, product_name, count(*) AS n
            FROM cleaned_transactions WHERE product_id IS NOT NULL
            GROUP BY ALL
        ),
        best_name AS (
            -- most frequent description; ties broken alphabetically so the result is stable
            SELECT product_id, arg_max(product_name, (n, product_name)) AS product_name,
                   count(*) AS description_variants
            FROM names GROUP BY product_id
        )
        SELECT a.product_id, b.product_name, b.description_variants, a.first_sale, a.last_sale,
               a.units_sold, a.revenue, a.median_unit_price, a.orders
        FROM agg a JOIN best_name b USING (product_id)
    """,
    "dim_date": """
        WITH bounds AS (SELECT min(order_date) AS lo, max(order_date) AS hi FROM cleaned_transactions)
        SELECT
            year(d) * 10000 + month(d) * 100 + day(d) AS date_key,
            CAST(d AS DATE) AS date,
            year(d) AS year,
            quarter(d) AS quarter,
            month(d) AS month,
            strftime(d, '%B') AS month_name,
            CAST(date_trunc('week', d) AS DATE) AS week_start,
            isodow(d) AS iso_day_of_week,
            strftime(d, '%A') AS day_name,
            isodow(d) >= 6 AS is_weekend
        FROM bounds, range(CAST(lo AS TIMESTAMP), CAST(hi AS TIMESTAMP) + INTERVAL 1 DAY, INTERVAL 1 DAY) AS r(d)
    """,
    "sales_trends": """
        WITH grains AS (
            SELECT 'week' AS grain, CAST(date_trunc('week', order_date) AS DATE) AS period_start, *
            FROM cleaned_transactions
            UNION ALL
            SELECT 'month' AS grain, CAST(date_trunc('month', order_date) AS DATE) AS period_start, *
            FROM cleaned_transactions
        )
        SELECT
            grain,
            period_start,
            round(sum(line_total), 2) AS revenue,
            count(DISTINCT order_id) AS orders,
            count(DISTINCT customer_id) AS active_customers,
            round(sum(line_total) / count(DISTINCT order_id), 2) AS avg_order_value
        FROM grains
        GROUP BY grain, period_start
        ORDER BY grain, period_start
    """,
    # top_products reads units, revenue, orders and the name from dim_product (built first) and
    # counts only the distinct customers: counting distinct orders twice over every line cost 3x.
    "top_products": """
        WITH p AS (
            SELECT d.product_id, d.product_name, d.units_sold AS units, d.revenue, d.orders, c.customers
            FROM dim_product d
            JOIN (SELECT product_id, count(DISTINCT customer_id) AS customers
                  FROM cleaned_transactions WHERE product_id IS NOT NULL
                  GROUP BY product_id) c USING (product_id)
        )
        SELECT * FROM (
            SELECT 'units' AS ranked_by, rank() OVER (ORDER BY units DESC, product_id) AS rank, * FROM p
            UNION ALL
            SELECT 'revenue' AS ranked_by, rank() OVER (ORDER BY revenue DESC, product_id) AS rank, * FROM p
        ) WHERE rank <= 50
        ORDER BY ranked_by, rank
    """,
    "revenue_by_region": """
        SELECT
            coalesce(country, '(unknown)') AS country,
            round(sum(line_total), 2) AS revenue,
            count(DISTINCT order_id) AS orders,
            count(DISTINCT customer_id) AS customers,
            round(sum(line_total) / sum(sum(line_total)) OVER (), 4) AS revenue_share
        FROM cleaned_transactions
        GROUP BY 1
        ORDER BY revenue DESC
    """,
}

DESCRIPTIONS = {
    "fact_sales": "Fact table (a view over cleaned_transactions): one row per sale line, keyed to the customer, product and date dimensions.",
    "dim_customer": "Customer dimension: first and last purchase, main country, orders, revenue.",
    "dim_product": "Product dimension: most frequent description, first and last sale, units, revenue.",
    "dim_date": "Date dimension: every day from the first to the last sale, with week, month, quarter.",
    "sales_trends": "Weekly and monthly revenue, orders, active customers and average order value.",
    "top_products": "Top 50 products by units and by revenue (names, units, revenue and orders from dim_product).",
    "revenue_by_region": "Revenue, orders, customers and revenue share by country.",
}


def build_table(con, name: str) -> None:
    """Create one star-schema table (or view) from cleaned_transactions."""
    from customer_assets.common.db import quote_ident, replace_table

    kind = con.execute(
        "SELECT table_type FROM information_schema.tables WHERE table_schema = 'main' AND table_name = ?", [name]
    ).fetchone()
    if name in VIEWS:
        if kind and kind[0] != "VIEW":  # a warehouse built when this was a table
            con.execute(f"DROP TABLE {quote_ident(name)}")
        con.execute(f"CREATE OR REPLACE VIEW {quote_ident(name)} AS {STAR_SQL[name]}")
    else:
        if kind and kind[0] == "VIEW":
            con.execute(f"DROP VIEW {quote_ident(name)}")
        replace_table(con, name, STAR_SQL[name])
