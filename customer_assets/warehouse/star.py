"""Star schema and core sales metrics: one readable SQL query per table, over cleaned_transactions.

STAR_SQL is the definition of each table (tests and bench/metric_queries.py run it as is); the assets
compute the same rows from intermediates kept up to date from the appended lines (see "Incremental
maintenance" below), whose SQL is derived from STAR_SQL where it can be. fact_sales is a view
(VIEWS): it is cleaned_transactions keyed to the dimensions, and a copy would cost a full pass over
tens of millions of lines for no new information.
"""

import hashlib

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


# ---------------------------------------------------------------------------------------------
# Incremental maintenance (the weekly refresh).
#
# STAR_SQL above is the definition of every table (and what bench/metric_queries.py times). The
# assets compute the same result from small intermediates in schema `star_state` (not `main`, where
# every table is an asset), kept up to date from the appended lines only when ingestion appended
# (common/data_version.appended_since), and rebuilt from every line otherwise:
#
#   customer_orders    (customer_id, order_id, country): first/last datetime, revenue - STAR_SQL's own
#                      `orders` CTE of dim_customer, ~20x fewer rows than lines; an order that already
#                      existed and gets new lines (rare) is recomputed from all of its lines
#   customer_products  distinct (customer_id, product_id) pairs: count(DISTINCT ...) does not merge,
#                      so a new line adds to a count only when its pair is not here yet
#   customer_counts    customer_id -> distinct_products (a count of customer_products)
#   product_totals     product_id -> first/last sale, units, revenue, orders, customers: additive
#                      (orders: a (product, order) pair is new unless its order already existed and
#                      had that product - checked on the old lines of those orders only)
#   product_names      (product_id, product_name) -> lines: additive; most frequent name = arg_max
#   product_prices     (product_id, unit_price) -> lines: additive; the median is read off this
#                      histogram (the two middle values, interpolated by DuckDB's own median)
#
# dim_product, top_products and revenue_by_region are then recomputed whole from the intermediates
# (thousands to hundreds of thousands of rows: milliseconds); dim_customer only for the customers
# with new lines (DELETE + INSERT in one transaction); sales_trends re-reads only the lines of the
# weeks and months the new lines fall in. Integer aggregates, min/max and medians are exact;
# revenue sums are added in another order than one pass over the lines (as a parallel scan
# does too): equal after the round(..., 2) every revenue gets (tested against STAR_SQL).
# Every intermediate set and every table records the data_fingerprint (and the SQL version) it was
# built from in star_state.built, in the same transaction as the data it describes.
# ---------------------------------------------------------------------------------------------

STATE = "star_state"
BUILT = f"{STATE}.built"
INTERMEDIATES = "intermediates"  # the name under which the intermediate set records its state

# Full build of the intermediates from every line (`{src}`: cleaned_transactions).
_INTERMEDIATE_SQL = {
    "customer_orders": """
        SELECT customer_id, order_id, country,
               min(order_datetime) AS first_dt, max(order_datetime) AS last_dt, sum(line_total) AS revenue
        FROM {src} GROUP BY customer_id, order_id, country
    """,
    "customer_products": "SELECT DISTINCT customer_id, product_id FROM {src}",
    "customer_counts": f"""
        SELECT customer_id, count(product_id) AS distinct_products
        FROM {STATE}.customer_products GROUP BY customer_id
    """,
    "product_totals": f"""
        SELECT a.*, c.customers
        FROM (SELECT product_id, min(order_datetime) AS first_sale, max(order_datetime) AS last_sale,
                     sum(quantity) AS units_sold, sum(line_total) AS revenue, count(DISTINCT order_id) AS orders
              FROM {{src}} WHERE product_id IS NOT NULL GROUP BY product_id) a
        JOIN (SELECT product_id, count(*) AS customers FROM {STATE}.customer_products
              WHERE product_id IS NOT NULL GROUP BY product_id) c USING (product_id)
    """,
    "product_names": """
        SELECT product_id, product_name, count(*) AS n
        FROM {src} WHERE product_id IS NOT NULL GROUP BY product_id, product_name
    """,
    "product_prices": """
        SELECT product_id, unit_price, count(*) AS n
        FROM {src} WHERE product_id IS NOT NULL AND unit_price IS NOT NULL GROUP BY product_id, unit_price
    """,
}



def _swap(sql: str, parts: dict) -> str:
    """`sql` with each key replaced by its value (each must be there: STAR_SQL stays the definition)."""
    for old, new in parts.items():
        if old not in sql:
            raise ValueError(f"STAR_SQL changed: {old!r} not found")
        sql = sql.replace(old, new)
    return sql


# the parts of STAR_SQL that read every line, and what reads the intermediates instead
_DIM_CUSTOMER_ORDERS = STAR_SQL["dim_customer"][
    STAR_SQL["dim_customer"].index("orders AS ("):STAR_SQL["dim_customer"].index("main_country AS")].rstrip()
_DIM_CUSTOMER_PRODUCTS = STAR_SQL["dim_customer"][
    STAR_SQL["dim_customer"].index("products AS ("):STAR_SQL["dim_customer"].index("SELECT\n")].rstrip()
_TOP_CUSTOMERS = STAR_SQL["top_products"][
    STAR_SQL["top_products"].index("JOIN (SELECT product_id, count(DISTINCT customer_id)"):
    STAR_SQL["top_products"].index("c USING (product_id)") + len("c USING (product_id)")]

# The tables, from the intermediates (same columns, types and values as STAR_SQL).
_FROM_STATE_SQL = {
    "dim_customer": _swap(STAR_SQL["dim_customer"], {
        _DIM_CUSTOMER_ORDERS: f"orders AS (SELECT * FROM {STATE}.customer_orders /*customers*/),",
        _DIM_CUSTOMER_PRODUCTS: f"products AS (SELECT * FROM {STATE}.customer_counts /*customers*/)",
    }),
    "dim_product": f"""
        WITH best_name AS (
            SELECT product_id, arg_max(product_name, (n, product_name)) AS product_name,
                   count(*) AS description_variants
            FROM {STATE}.product_names GROUP BY product_id
        ),
        prices AS (
            SELECT product_id, unit_price,
                   sum(n) OVER (PARTITION BY product_id ORDER BY unit_price ROWS UNBOUNDED PRECEDING) AS upto,
                   sum(n) OVER (PARTITION BY product_id) AS total
            FROM {STATE}.product_prices
        ),
        med AS (
            -- the values at 0-based positions (total-1)//2 and total//2, interpolated as median() does
            SELECT product_id,
                   list_median([min(unit_price) FILTER (WHERE upto > (total - 1) // 2),
                                min(unit_price) FILTER (WHERE upto > total // 2)]) AS median_unit_price
            FROM prices GROUP BY product_id
        )
        SELECT a.product_id, b.product_name, b.description_variants, a.first_sale, a.last_sale,
               a.units_sold, round(a.revenue, 2) AS revenue, m.median_unit_price, a.orders
        FROM {STATE}.product_totals a JOIN best_name b USING (product_id) LEFT JOIN med m USING (product_id)
    """,
    "top_products": _swap(STAR_SQL["top_products"], {_TOP_CUSTOMERS: f"JOIN {STATE}.product_totals c USING (product_id)"}),
    # order-level revenues added up per country (sums of the same lines, grouped first)
    "revenue_by_region": _swap(STAR_SQL["revenue_by_region"], {
        "sum(line_total)": "sum(revenue)", "FROM cleaned_transactions": f"FROM {STATE}.customer_orders"}),
}

# sales_trends for the lines of a date range [lo, hi) only (same SQL as STAR_SQL's)
_TRENDS_RANGE_SQL = STAR_SQL["sales_trends"].replace(
    "FROM cleaned_transactions", "FROM cleaned_transactions WHERE order_date >= $lo AND order_date < $hi"
)
_NEW_COLUMNS = ("customer_id, order_id, country, order_datetime, order_date, product_id, product_name, "
                "quantity, unit_price, line_total")


def _version(*sql: str) -> str:
    return hashlib.sha256("\n".join(sql).encode()).hexdigest()[:16]


_VERSIONS = {
    INTERMEDIATES: _version(*_INTERMEDIATE_SQL.values(), "merge-1"),
    "sales_trends": _version(STAR_SQL["sales_trends"], "range-1"),
    "dim_customer": _version(_FROM_STATE_SQL["dim_customer"], "customers-1"),
}
_AFFECTED = " WHERE customer_id IN (SELECT customer_id FROM __star_affected)"


def _ensure_state(con) -> None:
    from customer_assets.common.db import shared_state

    with shared_state("star_state"):  # two steps creating the schema at once would collide
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {STATE}")
        con.execute(f"CREATE TABLE IF NOT EXISTS {BUILT} (name VARCHAR, fingerprint VARCHAR, version VARCHAR, "
                    "built_at TIMESTAMP DEFAULT now())")


def built_from(con, name: str):
    """(fingerprint, version) `name` was last built from, or None."""
    from customer_assets.common.db import table_exists

    if not table_exists(con, "built", schema=STATE):
        return None
    return con.execute(f"SELECT fingerprint, version FROM {BUILT} WHERE name = ?", [name]).fetchone()


def _record(con, name: str, fingerprint: str) -> None:
    con.execute(f"DELETE FROM {BUILT} WHERE name = ?", [name])
    con.execute(f"INSERT INTO {BUILT} (name, fingerprint, version) VALUES (?, ?, ?)",
                [name, fingerprint, _VERSIONS.get(name, "")])


def _changes(con, name: str, current: str):
    """'same' when `name` was built from the current data with this code, an Appended when only
    appends happened since, None when it must be rebuilt from everything."""
    from customer_assets.common.data_version import appended_since

    state = built_from(con, name)
    if state is None or state[1] != _VERSIONS.get(name, ""):
        return None
    if state[0] == current:
        return "same"
    return appended_since(con, state[0], current)


def _state_tables_exist(con) -> bool:
    n = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = ? "
        "AND table_name IN (SELECT unnest(?))", [STATE, list(_INTERMEDIATE_SQL)]
    ).fetchone()[0]
    return n == len(_INTERMEDIATE_SQL)


def _rebuild_intermediates(con) -> None:
    from customer_assets.common.db import fsst_disabled

    # customer_products has ~2/3 as many rows as there are lines and is read only by the refresh's
    # anti-join: without FSST string compression (dictionary stays) it is written with ~10% less CPU
    # and scanned no slower (N=20, 5.3M pairs: 3.5 -> 3.1 s CPU; the anti-join 0.20 -> 0.18 s).
    # The tables up to it are written so; the rest with FSST.
    names = list(_INTERMEDIATE_SQL)
    plain = names[: names.index("customer_products") + 1]
    with fsst_disabled(con):
        for name in plain:
            _create_intermediate(con, name)
    for name in names[len(plain):]:
        _create_intermediate(con, name)


def _create_intermediate(con, name: str) -> None:
    con.execute(f"CREATE OR REPLACE TABLE {STATE}.{name} AS {_INTERMEDIATE_SQL[name].format(src='cleaned_transactions')}")


def _merge(con, table: str, delta: str, keys: list, combine: dict) -> None:
    """Replace the rows of `table` whose keys are in `delta` by the combination of both
    (`combine`: column -> SQL over t (old, may be missing) and d (delta))."""
    on = " AND ".join(f"t.{k} IS NOT DISTINCT FROM d.{k}" for k in keys)
    cols = ", ".join([f"d.{k}" for k in keys] + [f"{expr} AS {c}" for c, expr in combine.items()])
    con.execute(f"CREATE OR REPLACE TEMP TABLE __star_merged AS SELECT {cols} FROM {delta} d LEFT JOIN {STATE}.{table} t ON {on}")
    con.execute(f"DELETE FROM {STATE}.{table} t USING {delta} d WHERE {on}")
    con.execute(f"INSERT INTO {STATE}.{table} BY NAME SELECT * FROM __star_merged")


def _add(col: str) -> str:
    """Sum of two sums, either of which may be NULL (sum() of no values)."""
    return f"CASE WHEN t.{col} IS NULL THEN d.{col} WHEN d.{col} IS NULL THEN t.{col} ELSE t.{col} + d.{col} END"


def _apply_appended(con, appended) -> None:
    """Bring the intermediates up to date with the appended lines (appended.cleaned rowids)."""
    start = int(appended.cleaned[0])
    con.execute(f"CREATE OR REPLACE TEMP TABLE __star_new AS SELECT {_NEW_COLUMNS} FROM cleaned_transactions "
                f"WHERE {appended.where('cleaned_transactions')}")
    # orders that existed before and got new lines (normally none)
    con.execute(f"""CREATE OR REPLACE TEMP TABLE __star_touched AS
        SELECT DISTINCT order_id FROM __star_new WHERE order_id IN (SELECT order_id FROM {STATE}.customer_orders)""")
    touched = con.execute("SELECT count(*) FROM __star_touched").fetchone()[0] > 0

    # customer_orders: new orders from the new lines; touched orders again from all of their lines
    orders_sql = _INTERMEDIATE_SQL["customer_orders"]
    if touched:
        con.execute(f"DELETE FROM {STATE}.customer_orders WHERE order_id IN (SELECT order_id FROM __star_touched)")
        con.execute(f"INSERT INTO {STATE}.customer_orders " + orders_sql.format(
            src="(SELECT * FROM cleaned_transactions WHERE order_id IN (SELECT order_id FROM __star_touched))"))
        con.execute(f"INSERT INTO {STATE}.customer_orders " + orders_sql.format(
            src="(SELECT * FROM __star_new WHERE order_id NOT IN (SELECT order_id FROM __star_touched))"))
    else:
        con.execute(f"INSERT INTO {STATE}.customer_orders " + orders_sql.format(src="__star_new"))

    # customer_products / customer_counts: the pairs seen for the first time
    con.execute(f"""CREATE OR REPLACE TEMP TABLE __star_pairs AS
        SELECT DISTINCT customer_id, product_id FROM __star_new n
        WHERE NOT EXISTS (SELECT 1 FROM {STATE}.customer_products p
                          WHERE p.customer_id = n.customer_id AND p.product_id IS NOT DISTINCT FROM n.product_id)""")
    con.execute(f"INSERT INTO {STATE}.customer_products SELECT customer_id, product_id FROM __star_pairs")
    con.execute("""CREATE OR REPLACE TEMP TABLE __star_delta AS
        SELECT customer_id, count(product_id) AS distinct_products FROM __star_pairs GROUP BY customer_id""")
    _merge(con, "customer_counts", "__star_delta", ["customer_id"],
           {"distinct_products": "coalesce(t.distinct_products, 0) + d.distinct_products"})

    # product_totals: (product, order) pairs are new unless the order existed with that product
    old_pairs = ""
    if touched:
        con.execute(f"""CREATE OR REPLACE TEMP TABLE __star_old_pairs AS
            SELECT DISTINCT product_id, order_id FROM cleaned_transactions
            WHERE rowid < {start} AND product_id IS NOT NULL AND order_id IN (SELECT order_id FROM __star_touched)""")
        old_pairs = "ANTI JOIN __star_old_pairs USING (product_id, order_id)"
    con.execute(f"""CREATE OR REPLACE TEMP TABLE __star_delta AS
        SELECT a.*, coalesce(o.orders, 0) AS orders, coalesce(c.customers, 0) AS customers
        FROM (SELECT product_id, min(order_datetime) AS first_sale, max(order_datetime) AS last_sale,
                     sum(quantity) AS units_sold, sum(line_total) AS revenue
              FROM __star_new WHERE product_id IS NOT NULL GROUP BY product_id) a
        LEFT JOIN (SELECT product_id, count(*) AS orders
                   FROM (SELECT DISTINCT product_id, order_id FROM __star_new WHERE product_id IS NOT NULL) {old_pairs}
                   GROUP BY product_id) o USING (product_id)
        LEFT JOIN (SELECT product_id, count(*) AS customers FROM __star_pairs
                   WHERE product_id IS NOT NULL GROUP BY product_id) c USING (product_id)""")
    _merge(con, "product_totals", "__star_delta", ["product_id"], {
        "first_sale": "least(t.first_sale, d.first_sale)",
        "last_sale": "greatest(t.last_sale, d.last_sale)",
        "units_sold": _add("units_sold"),
        "revenue": _add("revenue"),
        "orders": "coalesce(t.orders, 0) + d.orders",
        "customers": "coalesce(t.customers, 0) + d.customers",
    })

    # product_names / product_prices: line counts per value
    for table, key in (("product_names", "product_name"), ("product_prices", "unit_price")):
        con.execute(f"CREATE OR REPLACE TEMP TABLE __star_delta AS "
                    + _INTERMEDIATE_SQL[table].format(src="__star_new"))
        _merge(con, table, "__star_delta", ["product_id", key], {"n": "coalesce(t.n, 0) + d.n"})
    for t in ("__star_new", "__star_touched", "__star_pairs", "__star_delta", "__star_merged", "__star_old_pairs"):
        con.execute(f"DROP TABLE IF EXISTS {t}")


def _products_synced(con) -> bool:
    """Whether the intermediates describe the current data with this code, for the bundle steps'
    per-product reads below (which return None otherwise: the caller counts in cleaned_transactions;
    they would otherwise scan every line for what the intermediates keep).

    When only appends happened since the intermediates were synced (the weekly refresh), they are
    brought up to date here first, from the appended lines: the work the star's own steps would do
    later in the run anyway (they then find them up to date), instead of the bundle steps scanning
    every line beside it. Measured at N=20 + one week: the sync 0.43 s, the scans it replaces
    ~0.6 s. After a rebuild (a full build) they are left to the star's steps: rebuilding them here
    would hold a bundle step for seconds."""
    from customer_assets.common.data_version import appended_since, data_fingerprint
    from customer_assets.common.db import is_read_only

    if not _state_tables_exist(con):
        return False
    state = built_from(con, INTERMEDIATES)
    if state is None or state[1] != _VERSIONS[INTERMEDIATES]:
        return False
    current = data_fingerprint(con)
    if state[0] != current:
        if is_read_only(con) or appended_since(con, state[0], current) is None:
            return False
        sync_intermediates(con, current)
    return True


def product_counts_sql(con) -> str | None:
    """A SELECT of (product_id, lines, orders) over every line with a product - lines and distinct
    orders per product - from the intermediates (thousands of rows), or None (see _products_synced)."""
    if not _products_synced(con):
        return None
    return f"""SELECT t.product_id, CAST(n.lines AS BIGINT) AS lines, CAST(t.orders AS BIGINT) AS orders
               FROM {STATE}.product_totals t
               JOIN (SELECT product_id, sum(n) AS lines FROM {STATE}.product_names GROUP BY product_id) n
                 USING (product_id)"""


def product_names_sql(con, named_only: bool = True, last_sold: bool = False) -> str | None:
    """A SELECT of (product_id, product_name): each product's most frequent name over every line, a
    tie going to the alphabetically last (as dim_product; arg_max passes over NULL names); or None
    (see _products_synced). `named_only`: only the products with a name (else a product without
    any gets a row with a NULL name, as in dead_stock's own scan). `last_sold`: also
    last_sold_date, the date of the product's last line."""
    if not _products_synced(con):
        return None
    where = "WHERE n.product_name IS NOT NULL" if named_only else ""
    last = ", any_value(CAST(t.last_sale AS DATE)) AS last_sold_date" if last_sold else ""
    join = f"JOIN {STATE}.product_totals t USING (product_id)" if last_sold else ""
    return f"""SELECT n.product_id, arg_max(n.product_name, (n.n, n.product_name)) AS product_name{last}
               FROM {STATE}.product_names n {join} {where} GROUP BY n.product_id"""


def orders_with_products_sql(con) -> str | None:
    """A SELECT of one count: the distinct orders over every line with a product, or None (see
    _products_synced). customer_orders holds every order, so only when no line lacks a product
    (the column statistics answer that without a scan)."""
    if not _products_synced(con):
        return None
    if con.execute("SELECT count(*) FROM cleaned_transactions WHERE product_id IS NULL").fetchone()[0]:
        return None
    return f"SELECT count(DISTINCT order_id) FROM {STATE}.customer_orders"


def sync_intermediates(con, current: str) -> str:
    """Bring star_state's intermediates to the data with fingerprint `current`; returns how:
    'same', 'appended' or 'rebuilt'. The star steps share them and may run at once (executor.py):
    one brings them up to date, the others wait and find them so."""
    from customer_assets.common.db import shared_state

    with shared_state("star_state"):
        return _sync_intermediates(con, current)


def _sync_intermediates(con, current: str) -> str:
    from customer_assets.common.db import transaction

    _ensure_state(con)
    changes = _changes(con, INTERMEDIATES, current) if _state_tables_exist(con) else None
    if changes == "same":
        return "same"
    with transaction(con):
        if changes is None:
            _rebuild_intermediates(con)
        elif not changes.empty:
            _apply_appended(con, changes)
        _record(con, INTERMEDIATES, current)
    return "rebuilt" if changes is None else "appended"


def _period_bounds(con, appended):
    """[lo, hi): whole weeks and months that the appended lines fall in, or None."""
    return con.execute(f"""
        SELECT least(date_trunc('week', min(order_date)), date_trunc('month', min(order_date)))::DATE,
               greatest(date_trunc('week', max(order_date)) + INTERVAL 7 DAY,
                        date_trunc('month', max(order_date)) + INTERVAL 1 MONTH)::DATE
        FROM cleaned_transactions WHERE {appended.where('cleaned_transactions')} HAVING count(*) > 0""").fetchone()


def _build_sales_trends(con, current: str) -> str:
    from customer_assets.common.db import replace_table, table_exists, transaction

    _ensure_state(con)
    changes = _changes(con, "sales_trends", current) if table_exists(con, "sales_trends") else None
    if changes == "same":
        return "same"
    with transaction(con):
        if changes is None:
            replace_table(con, "sales_trends", STAR_SQL["sales_trends"])
        elif not changes.empty and (bounds := _period_bounds(con, changes)) is not None:
            lo, hi = bounds
            # every week / month that lies inside [lo, hi) is recomputed from all of its lines (those
            # the new lines fall in among them); the others are kept
            inside = ("(period_start >= $lo AND CASE grain WHEN 'week' THEN period_start + INTERVAL 7 DAY "
                      "ELSE period_start + INTERVAL 1 MONTH END <= $hi)")
            replace_table(con, "sales_trends", f"""
                SELECT * FROM (
                    SELECT * FROM sales_trends WHERE NOT {inside}
                    UNION ALL
                    SELECT * FROM ({_TRENDS_RANGE_SQL}) WHERE {inside}
                ) ORDER BY grain, period_start""", {"lo": lo, "hi": hi})
        _record(con, "sales_trends", current)
    return "rebuilt" if changes is None else "appended"


def build_table(con, name: str) -> str:
    """Create one star-schema table (or view): the result of STAR_SQL[name] over cleaned_transactions,
    updated from the appended lines only when that is all that changed since it was built. Returns
    how its data was brought up to date: 'rebuilt' (from every line), 'appended' (from the new lines
    only) or 'same' (nothing changed)."""
    from customer_assets.common.data_version import data_fingerprint
    from customer_assets.common.db import quote_ident, replace_table, table_exists, transaction

    kind = con.execute(
        "SELECT table_type FROM information_schema.tables WHERE table_schema = 'main' AND table_name = ?", [name]
    ).fetchone()
    if name in VIEWS:
        if kind and kind[0] != "VIEW":  # a warehouse built when this was a table
            con.execute(f"DROP TABLE {quote_ident(name)}")
        con.execute(f"CREATE OR REPLACE VIEW {quote_ident(name)} AS {STAR_SQL[name]}")
        return "rebuilt"
    if kind and kind[0] == "VIEW":
        con.execute(f"DROP VIEW {quote_ident(name)}")
    if name not in _FROM_STATE_SQL and name != "sales_trends":
        replace_table(con, name, STAR_SQL[name])  # dim_date: one pass over one column
        return "rebuilt"
    current = data_fingerprint(con)
    if name == "sales_trends":
        return _build_sales_trends(con, current)
    if name == "dim_customer" and table_exists(con, name):
        changes = _changes(con, name, current)  # before the intermediates move on
    else:
        changes = None
    how = sync_intermediates(con, current)
    sql = _FROM_STATE_SQL[name].replace("/*customers*/", "")
    with transaction(con):
        if changes is None or name != "dim_customer":
            replace_table(con, name, sql)
        elif changes != "same" and not changes.empty:
            # only the customers with new lines change: their rows again from the intermediates
            con.execute("CREATE OR REPLACE TEMP TABLE __star_affected AS SELECT DISTINCT customer_id "
                        f"FROM cleaned_transactions WHERE {changes.where('cleaned_transactions')}")
            con.execute("DELETE FROM dim_customer WHERE customer_id IN (SELECT customer_id FROM __star_affected)")
            con.execute("INSERT INTO dim_customer " + _FROM_STATE_SQL[name].replace("/*customers*/", _AFFECTED))
            con.execute("DROP TABLE __star_affected")
        _record(con, name, current)
    return how
