"""The real Online Retail data: counts the data set's README documents, and nothing lost."""

import duckdb
import pytest

from customer_assets.ingestion.pipeline import reconciliation

from conftest import RETAIL_PARQUET

SOURCE = f"read_parquet('{RETAIL_PARQUET}')"


@pytest.fixture(scope="module")
def rcon(retail_db):
    c = duckdb.connect(str(retail_db), read_only=True)
    yield c
    c.close()


def test_every_source_row_is_read(rcon):
    assert rcon.execute("SELECT sum(rows) FROM ingested_files").fetchone()[0] == 541_909
    assert rcon.execute(
        "SELECT (SELECT count(*) FROM cleaned_transactions) + (SELECT count(*) FROM quarantined_transactions)"
    ).fetchone()[0] == 541_909


def test_every_c_invoice_row_is_a_cancellation(rcon):
    c_rows = rcon.execute(f"SELECT count(*) FROM {SOURCE} WHERE InvoiceNo LIKE 'C%'").fetchone()[0]
    assert c_rows == 9_288  # the data set's README
    assert rcon.execute(
        "SELECT count(*) FROM quarantined_transactions WHERE order_id LIKE 'C%' AND reason = 'cancellation'"
    ).fetchone()[0] == c_rows
    assert rcon.execute("SELECT count(*) FROM cleaned_transactions WHERE order_id LIKE 'C%'").fetchone()[0] == 0


def test_cleaned_rows_are_valid_sales(rcon):
    bad = rcon.execute(
        """SELECT count(*) FILTER (WHERE customer_id IS NULL),
                  count(*) FILTER (WHERE quantity <= 0 OR unit_price <= 0),
                  count(*) FILTER (WHERE product_id IN ('POST', 'DOT', 'M', 'BANK CHARGES', 'AMAZONFEE'))
           FROM cleaned_transactions"""
    ).fetchone()
    assert bad == (0, 0, 0)


def test_reconciliation_exact_to_the_row_and_the_penny(rcon):
    rec = reconciliation(rcon)
    assert rec["passed"], rec
    assert rec["raw_rows"] == rec["cleaned_rows"] + rec["quarantined_rows"] == 541_909
    assert abs(rec["money_difference"]) < 0.005


def test_quarantine_reasons_on_online_retail(rcon):
    reasons = dict(rcon.execute("SELECT reason, count(*) FROM quarantined_transactions GROUP BY 1").fetchall())
    # Rows without a customer (135,080 in the README) less the 1,719 cancellations and 3 other
    # earlier-precedence rows among them; all duplicates found among otherwise valid rows.
    assert reasons["cancellation"] == 9_288
    assert reasons["missing_customer"] == rcon.execute(
        f"SELECT count(*) FROM {SOURCE} WHERE CustomerID IS NULL AND InvoiceNo NOT LIKE 'C%'"
    ).fetchone()[0]
    assert set(reasons) <= {"cancellation", "missing_customer", "duplicate", "non_product_code",
                            "non_positive_price", "non_positive_quantity"}
