"""ingested_files.last_order_date: each file's latest cleaned order date, recorded by ingestion and
read by the drift report's deployment baseline (monitoring/drift.baseline_as_of)."""

import datetime as dt
import json

import pandas as pd

from customer_assets.common.source_files import file_of, last_order_dates
from customer_assets.ingestion.pipeline import ingest
from customer_assets.monitoring.drift import baseline_as_of

HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
MAPPING = {
    "customer_id": "CustomerID", "order_id": "InvoiceNo", "order_datetime": "InvoiceDate",
    "product_id": "StockCode", "product_name": "Description", "quantity": "Quantity",
    "unit_price": "UnitPrice", "country": "Country", "cancellation_prefix": "C",
}


def _rows(prefix, dates, customer="17850"):
    return [f"{prefix}{i},P1,THING,2,{d} 10:00:00,3.5,{customer},United Kingdom" for i, d in enumerate(dates)]


def _recorded(con) -> dict:
    return dict(con.execute("SELECT path, last_order_date FROM ingested_files").fetchall())


def _scanned(con) -> dict:
    return last_order_dates(con, [p for (p,) in con.execute("SELECT path FROM ingested_files").fetchall()])


def test_dates_recorded_on_load_append_and_rebuild(tmp_path, con):
    landing = tmp_path / "landing"
    landing.mkdir()
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps(MAPPING))
    base = tmp_path / "base.csv"
    # the file's last line has no customer: quarantined, so the file's date is the line before
    base.write_text("\n".join([HEADER] + _rows("5", ["2011-01-05", "2011-02-07"])
                              + _rows("6", ["2011-03-01"], customer="")) + "\n")
    ingest(con, str(base), str(mapping), str(landing))
    assert _recorded(con) == {str(base): dt.date(2011, 2, 7)}

    (landing / "week.csv").write_text("\n".join([HEADER] + _rows("7", ["2011-03-02", "2011-03-09"])) + "\n")
    (landing / "empty_week.csv").write_text("\n".join([HEADER] + _rows("8", ["2011-03-10"], customer="")) + "\n")
    ingest(con, str(base), str(mapping), str(landing))  # a weekly append: only the new lines are read
    assert _recorded(con) == {str(base): dt.date(2011, 2, 7), str(landing / "week.csv"): dt.date(2011, 3, 9),
                              str(landing / "empty_week.csv"): None}
    assert _recorded(con) == {**_scanned(con), str(landing / "empty_week.csv"): None}

    # a new mapping rebuilds from every file: the dates are recorded again, from the new lines
    mapping.write_text(json.dumps({**MAPPING, "non_product_codes": ["P1"]}))
    ingest(con, str(base), str(mapping), str(landing))
    assert set(_recorded(con).values()) == {None}  # every line is now a non-product line


def test_a_warehouse_from_before_the_column_is_filled_once(tmp_path, con):
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps(MAPPING))
    base = tmp_path / "base.csv"
    base.write_text("\n".join([HEADER] + _rows("5", ["2011-01-05", "2011-02-07"])) + "\n")
    ingest(con, str(base), str(mapping), None)
    con.execute("ALTER TABLE ingested_files DROP COLUMN last_order_date")
    champion = {"trained_at": dt.datetime.now()}
    # the report before any ingestion with this version: the lines are scanned, same answer
    assert baseline_as_of(con, champion, dt.date(2012, 1, 1)) == dt.date(2011, 2, 7)
    ingest(con, str(base), str(mapping), None)  # nothing new to load: the column is added and filled
    assert _recorded(con) == {str(base): dt.date(2011, 2, 7)}
    # from now on the report reads the column (the lines are not read: a changed line changes nothing)
    con.execute("UPDATE cleaned_transactions SET order_date = DATE '2011-06-01'")
    assert baseline_as_of(con, champion, dt.date(2012, 1, 1)) == dt.date(2011, 2, 7)


def test_a_workbooks_sheets_count_for_the_workbook(tmp_path, con):
    """Lines of a workbook with several sheets carry `path#sheet`: they are the workbook's."""
    path = tmp_path / "book.xlsx"
    columns = HEADER.split(",")
    with pd.ExcelWriter(path) as w:
        pd.DataFrame([r.split(",") for r in _rows("5", ["2011-01-05"])], columns=columns).to_excel(
            w, sheet_name="Jan", index=False)
        pd.DataFrame([r.split(",") for r in _rows("6", ["2011-02-09"])], columns=columns).to_excel(
            w, sheet_name="Feb", index=False)
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps(MAPPING))
    ingest(con, str(path), str(mapping), None)
    assert _recorded(con) == {str(path): dt.date(2011, 2, 9)}
    champion = {"trained_at": dt.datetime.now()}
    assert baseline_as_of(con, champion, dt.date(2012, 1, 1)) == dt.date(2011, 2, 9)
    con.execute("ALTER TABLE ingested_files DROP COLUMN last_order_date")  # the scan finds the sheets too
    assert baseline_as_of(con, champion, dt.date(2012, 1, 1)) == dt.date(2011, 2, 9)


def test_file_of_names_the_longest_matching_path():
    paths = {"/d/a.xlsx", "/d/a.xlsx#b.xlsx", "/d/c.csv"}
    assert file_of("/d/c.csv", paths) == "/d/c.csv"
    assert file_of("/d/a.xlsx#Sheet1", paths) == "/d/a.xlsx"
    assert file_of("/d/a.xlsx#b.xlsx#Sheet1", paths) == "/d/a.xlsx#b.xlsx"
    assert file_of("/d/other.csv", paths) is None
