"""Cleaning rules and bad input, on small hand-made files where the answer is known."""

import gzip
import json
import os

import duckdb
import pandas as pd
import pytest

from customer_assets.ingestion.mapping import MappingError, load_mapping
from customer_assets.ingestion.pipeline import ingest, reconciliation
from customer_assets.ingestion.readers import IngestError

HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
MAPPING = {
    "customer_id": "CustomerID", "order_id": "InvoiceNo", "order_datetime": "InvoiceDate",
    "product_id": "StockCode", "product_name": "Description", "quantity": "Quantity",
    "unit_price": "UnitPrice", "country": "Country",
    "cancellation_prefix": "C", "non_product_codes": ["POST", "BANK CHARGES"],
}


def write(tmp_path, name, text, mapping=MAPPING):
    src = tmp_path / name
    src.write_text(text, encoding="utf-8")
    m = tmp_path / "mapping.json"
    m.write_text(json.dumps(mapping))
    return str(src), str(m)


def outcomes(con):
    """source_row -> reason (None for a cleaned row)."""
    q = dict(con.execute("SELECT source_row, reason FROM quarantined_transactions").fetchall())
    c = {r: None for (r,) in con.execute("SELECT source_row FROM cleaned_transactions").fetchall()}
    assert not set(q) & set(c), "a row has two outcomes"
    return {**q, **c}


RULE_ROWS = [
    # (row, expected reason)
    ("1001,A1,Mug,2,2011-01-03 10:00:00,2.50,17850,United Kingdom", None),
    ("C1002,A1,Mug,-1,2011-01-03 11:00:00,2.50,17850,United Kingdom", "cancellation"),
    ("C1003,A1,Mug,-1,2011-01-03 11:00:00,2.50,,United Kingdom", "cancellation"),  # C beats missing customer
    ("1004,A1,Mug,2,2011-01-03 10:00:00,2.50,,United Kingdom", "missing_customer"),
    ("1005,A1,Mug,0,2011-01-03 10:00:00,2.50,17850,United Kingdom", "non_positive_quantity"),
    ("1006,A1,Mug,-3,2011-01-03 10:00:00,2.50,17850,United Kingdom", "non_positive_quantity"),
    ("1007,A1,Mug,1,2011-01-03 10:00:00,0,17850,United Kingdom", "non_positive_price"),
    ("1008,A1,Mug,1,2011-01-03 10:00:00,-11062.06,17850,United Kingdom", "non_positive_price"),
    ("1009,POST,Postage,1,2011-01-03 10:00:00,18.00,17850,United Kingdom", "non_product_code"),
    ("1010,A1,Mug,1,not a date,2.50,17850,United Kingdom", "unparseable_date"),
    ("1011,A1,Mug,1,1900-01-01 00:00:00,2.50,17850,United Kingdom", "unparseable_date"),
    ("1012,A1,Mug,two,2011-01-03 10:00:00,2.50,17850,United Kingdom", "unparseable_number"),
    ("1001,A1,Mug,2,2011-01-03 10:00:00,2.50,17850,United Kingdom", "duplicate"),  # repeat of row 1
    (",A1,Mug,2,2011-01-03 10:00:00,2.50,17850,United Kingdom", "missing_order_id"),
    ("1013,A2,Bowl,3,03/01/2011 10:00,1.00,12345.0,France", None),  # US m/d/Y fallback; float-style id
]


def test_each_rule_gives_its_reason(tmp_path, con):
    src, m = write(tmp_path, "t.csv", "\n".join([HEADER] + [r for r, _ in RULE_ROWS]) + "\n")
    summary = ingest(con, src, m, None)
    got = outcomes(con)
    expected = {i + 1: reason for i, (_, reason) in enumerate(RULE_ROWS)}
    assert got == expected
    assert summary.reasons["cancellation"] == 2
    # cleaned values are parsed and typed
    row = con.execute(
        "SELECT customer_id, order_date, line_total, country FROM cleaned_transactions WHERE order_id = '1013'"
    ).fetchone()
    assert row[0] == "12345" and str(row[1]) == "2011-03-01" and row[2] == pytest.approx(3.0)
    assert reconciliation(con)["passed"]


def test_quarantine_keeps_original_values_and_detail(tmp_path, con):
    src, m = write(tmp_path, "t.csv", HEADER + "\n1006,A1,Mug,-3,2011-01-03 10:00:00,2.50,17850,United Kingdom\n")
    ingest(con, src, m, None)
    reason, detail, raw = con.execute("SELECT reason, detail, raw_values FROM quarantined_transactions").fetchone()
    assert reason == "non_positive_quantity"
    assert "Quantity" in detail and "-3" in detail
    assert json.loads(raw)["Quantity"] == "-3"


def test_reconciliation_counts_money(tmp_path, con):
    src, m = write(tmp_path, "t.csv", "\n".join([HEADER] + [r for r, _ in RULE_ROWS]) + "\n")
    ingest(con, src, m, None)
    rec = reconciliation(con)
    assert rec["raw_rows"] == len(RULE_ROWS) == rec["cleaned_rows"] + rec["quarantined_rows"]
    assert rec["money_difference"] == 0
    # break it: a lost row must fail the reconciliation
    con.execute("DELETE FROM quarantined_transactions WHERE reason = 'duplicate'")
    assert not reconciliation(con)["passed"]


def test_order_total_source_keeps_zero_value_orders(tmp_path, con):
    mapping = {"customer_id": "cust", "order_id": "order", "order_datetime": "date", "order_total": "amount",
               "date_format": "%Y%m%d"}
    src, m = write(tmp_path, "orders.csv", "cust,order,date,amount\n1,o1,19970101,29.33\n1,o2,19970118,0\n2,o3,19970102,-5\n",
                   mapping)
    ingest(con, src, m, None)
    assert outcomes(con) == {1: None, 2: None, 3: "non_positive_price"}


# ---------------------------------------------------------------- bad input


def test_source_file_missing(tmp_path, con):
    _, m = write(tmp_path, "x.csv", HEADER + "\n")
    with pytest.raises(IngestError, match=r"Source file not found: .*nope\.csv"):
        ingest(con, str(tmp_path / "nope.csv"), m, None)


def test_empty_file_and_header_only(tmp_path, con):
    src, m = write(tmp_path, "empty.csv", "")
    with pytest.raises(IngestError, match=r"empty.csv: empty file"):
        ingest(con, src, m, None)
    src2, _ = write(tmp_path, "header.csv", HEADER + "\n")
    with pytest.raises(IngestError, match=r"header.csv: header only"):
        ingest(con, src2, m, None)


def test_mapping_names_missing_column_lists_existing(tmp_path, con):
    bad = dict(MAPPING, customer_id="Customer ID")
    src, m = write(tmp_path, "t.csv", HEADER + "\n" + RULE_ROWS[0][0] + "\n", bad)
    with pytest.raises(MappingError) as e:
        ingest(con, src, m, None)
    msg = str(e.value)
    assert "'Customer ID'" in msg and "'CustomerID'" in msg and "t.csv" in msg


def test_required_field_unmapped(tmp_path, con):
    bad = {k: v for k, v in MAPPING.items() if k != "order_datetime"}
    src, m = write(tmp_path, "t.csv", HEADER + "\n", bad)
    with pytest.raises(MappingError, match="order_datetime"):
        ingest(con, src, m, None)


def test_mapping_file_missing_or_invalid(tmp_path):
    with pytest.raises(MappingError, match="not found"):
        load_mapping(tmp_path / "none.json")
    p = tmp_path / "bad.json"
    p.write_text("{ not json")
    with pytest.raises(MappingError, match=r"not valid JSON: line 1"):
        load_mapping(p)


def test_non_utf8_bytes_are_decoded_with_a_note(tmp_path, con):
    src = tmp_path / "latin.csv"
    src.write_bytes((HEADER + "\n1001,A1,Caf\xe9 mug,2,2011-01-03 10:00:00,2.50,17850,France\n").encode("latin-1"))
    m = tmp_path / "mapping.json"
    m.write_text(json.dumps(MAPPING))
    summary = ingest(con, str(src), str(m), None)
    assert "latin-1" in summary.loaded[0].notes[0]
    assert con.execute("SELECT product_name FROM cleaned_transactions").fetchone()[0] == "Café mug"


def test_column_names_with_spaces_quotes_and_sql(tmp_path, con):
    cols = ['Customer "ID"', "Order; DROP TABLE x; --", "Date Time", "Amount (EUR)"]
    header = ",".join('"' + c.replace('"', '""') + '"' for c in cols)
    mapping = {"customer_id": cols[0], "order_id": cols[1], "order_datetime": cols[2], "order_total": cols[3]}
    src, m = write(tmp_path, "weird.csv", header + "\n7,o1,2011-01-03,10.5\n", mapping)
    ingest(con, src, m, None)
    assert con.execute("SELECT customer_id, line_total FROM cleaned_transactions").fetchone() == ("7", 10.5)


def test_same_file_twice_is_loaded_once(tmp_path, con):
    src, m = write(tmp_path, "t.csv", HEADER + "\n" + RULE_ROWS[0][0] + "\n")
    ingest(con, src, m, None)
    second = ingest(con, src, m, None)
    assert second.skipped_known and not second.loaded
    assert con.execute("SELECT sum(rows) FROM ingested_files").fetchone()[0] == 1
    assert con.execute("SELECT count(*) FROM cleaned_transactions").fetchone()[0] == 1
    # the same bytes under another name in the landing folder are recognised too
    landing = tmp_path / "incoming"
    landing.mkdir()
    (landing / "copy.csv").write_text(open(src).read())
    third = ingest(con, src, m, str(landing))
    assert len(third.skipped_known) == 2
    assert con.execute("SELECT count(*) FROM ingested_files").fetchone()[0] == 1


def test_truncated_last_line_is_quarantined(tmp_path, con):
    text = HEADER + "\n" + RULE_ROWS[0][0] + "\n1020,A1,Mug,2,2011-01-03 10:00:00,2.5\n1021,A2,Bowl,1,2011-01-04 10:00:00,1.0,17850,United Kingdom\n1022,A1,Mu"
    src, m = write(tmp_path, "trunc.csv", text)
    ingest(con, src, m, None)
    got = outcomes(con)
    assert got == {1: None, 2: "malformed_row", 3: None, 4: "malformed_row"}
    detail = con.execute("SELECT detail FROM quarantined_transactions WHERE source_row = 4").fetchone()[0]
    assert "1022,A1,Mu" in detail
    assert reconciliation(con)["passed"]


def test_unparseable_and_out_of_range_dates_with_format(tmp_path, con):
    mapping = dict(MAPPING, date_format="%d/%m/%Y %H:%M")
    rows = [
        "1001,A1,Mug,2,31/01/2011 10:00,2.50,17850,United Kingdom",
        "1002,A1,Mug,2,31/02/2011 10:00,2.50,17850,United Kingdom",   # no 31 February
        "1003,A1,Mug,2,01/01/2999 10:00,2.50,17850,United Kingdom",   # out of range
        "1004,A1,Mug,2,,2.50,17850,United Kingdom",                    # empty
    ]
    src, m = write(tmp_path, "d.csv", "\n".join([HEADER] + rows) + "\n", mapping)
    ingest(con, src, m, None)
    assert outcomes(con) == {1: None, 2: "unparseable_date", 3: "unparseable_date", 4: "unparseable_date"}
    assert "31/02/2011" in con.execute(
        "SELECT detail FROM quarantined_transactions WHERE source_row = 2").fetchone()[0]


def test_xlsx_with_several_sheets(tmp_path, con):
    path = tmp_path / "book.xlsx"
    good = pd.DataFrame([r.split(",") for r, _ in RULE_ROWS[:2]], columns=HEADER.split(","))
    with pd.ExcelWriter(path) as w:
        pd.DataFrame({"note": ["read me"]}).to_excel(w, sheet_name="About", index=False)
        good.to_excel(w, sheet_name="Sales 2011", index=False)
        good.to_excel(w, sheet_name="Sales 2012", index=False)
    m = tmp_path / "mapping.json"
    m.write_text(json.dumps(MAPPING))
    summary = ingest(con, str(path), str(m), None)
    assert any("About" in n for n in summary.loaded[0].notes)
    files = {r[0] for r in con.execute(
        "SELECT source_file FROM cleaned_transactions UNION SELECT source_file FROM quarantined_transactions"
    ).fetchall()}
    assert files == {f"{path}#Sales 2011", f"{path}#Sales 2012"}
    # the second sheet repeats the first: its rows are duplicates, nothing is lost
    assert con.execute("SELECT count(*) FROM cleaned_transactions").fetchone()[0] == 1
    assert con.execute("SELECT count(*) FROM quarantined_transactions").fetchone()[0] == 3
    assert reconciliation(con)["passed"]
    # a workbook where no sheet has the mapped columns names them all
    other = tmp_path / "other.xlsx"
    pd.DataFrame({"x": [1]}).to_excel(other, sheet_name="Only", index=False)
    with pytest.raises(MappingError, match=r"'Only': \['x'\]"):
        ingest(duckdb.connect(), str(other), str(m), None)


def test_gzip_semicolon_csv_glob_and_landing_folder(tmp_path, con):
    folder = tmp_path / "exports"
    folder.mkdir()
    with gzip.open(folder / "a.csv.gz", "wt") as f:
        f.write(HEADER.replace(",", ";") + "\n" + RULE_ROWS[0][0].replace(",", ";") + "\n")
    (folder / "b.csv").write_text(HEADER + "\n" + RULE_ROWS[-1][0] + "\n")
    landing = tmp_path / "incoming"
    landing.mkdir()
    (landing / "c.csv").write_text(HEADER + "\n1030,A3,Plate,1,2011-02-01 09:00:00,4.00,99,Spain\n")
    m = tmp_path / "mapping.json"
    m.write_text(json.dumps(MAPPING))
    summary = ingest(con, str(folder / "*.csv*"), str(m), str(landing))
    assert len(summary.loaded) == 3
    assert con.execute("SELECT count(*) FROM cleaned_transactions").fetchone()[0] == 3


def test_whitespace_headerless_order_totals_without_order_id(tmp_path, con):
    """CDNOW's layout: runs of spaces, no header, no order id, one row per order, CRLF."""
    text = " 00004 0001 19970101  2   29.33\r\n 00004 0001 19970118  2   29.73\r\n" \
           " 00004 0001 19970118  2   29.73\r\n 00018 0002 19970101  2    0.00\r\n"
    mapping = {"customer_id": "cust", "order_datetime": "date", "order_total": "dollars", "quantity": "cds",
               "date_format": "%Y%m%d", "delimiter": "whitespace", "header": False,
               "column_names": ["orig", "cust", "date", "cds", "dollars"]}
    src, m = write(tmp_path, "cdnow.txt", text, mapping)
    ingest(con, src, m, None)
    rows = con.execute("SELECT customer_id, CAST(order_date AS VARCHAR), line_total FROM cleaned_transactions "
                       "ORDER BY source_row").fetchall()
    # identical rows are separate orders here (each row is its own order); the $0 order is kept
    assert rows == [("0001", "1997-01-01", 29.33), ("0001", "1997-01-18", 29.73),
                    ("0001", "1997-01-18", 29.73), ("0002", "1997-01-01", 0.0)]
    assert con.execute("SELECT count(DISTINCT order_id) FROM cleaned_transactions").fetchone()[0] == 4


def test_incremental_load_equals_full_rebuild(tmp_path):
    """A later file is classified on its own and appended; the result is what a full rebuild gives,
    including a duplicate of a row that was cleaned in an earlier load."""
    first = [r for r, _ in RULE_ROWS[:8]]
    second = [RULE_ROWS[0][0],                                           # repeats a cleaned row
              "2001,A9,Vase,1,2011-03-03 10:00:00,9.99,555,Spain",        # new valid row
              "2001,A9,Vase,1,2011-03-03 10:00:00,9.99,555,Spain",        # duplicate within the new file
              "C2002,A9,Vase,-1,2011-03-04 10:00:00,9.99,555,Spain"]      # cancellation
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "a.csv").write_text("\n".join([HEADER] + first) + "\n")
    m = tmp_path / "mapping.json"
    m.write_text(json.dumps(MAPPING))

    inc = duckdb.connect(str(tmp_path / "inc.duckdb"))
    ingest(inc, str(folder), str(m), None)
    (folder / "b.csv").write_text("\n".join([HEADER] + second) + "\n")
    summary = ingest(inc, str(folder), str(m), None)
    assert any("incremental" in n for n in summary.notes)

    full = duckdb.connect(str(tmp_path / "full.duckdb"))
    ingest(full, str(folder), str(m), None)

    def outcome(c):
        return sorted(c.execute(
            "SELECT source_file, source_row, NULL AS reason FROM cleaned_transactions "
            "UNION ALL SELECT source_file, source_row, reason FROM quarantined_transactions").fetchall(),
            key=str)

    assert outcome(inc) == outcome(full)
    b = str(folder / "b.csv")
    assert dict(inc.execute("SELECT source_row, reason FROM quarantined_transactions WHERE source_file = ?",
                            [b]).fetchall()) == {1: "duplicate", 3: "duplicate", 4: "cancellation"}
    assert reconciliation(inc)["passed"]


def test_reconciliation_finds_a_doubled_row_and_a_changed_amount(tmp_path, con):
    src, m = write(tmp_path, "t.csv", "\n".join([HEADER] + [r for r, _ in RULE_ROWS]) + "\n")
    ingest(con, src, m, None)
    assert reconciliation(con)["passed"]
    # a row with two outcomes (the same source row cleaned twice)
    con.execute("INSERT INTO cleaned_transactions SELECT * FROM cleaned_transactions LIMIT 1")
    rec = reconciliation(con)
    assert not rec["passed"] and rec["rows_with_two_outcomes"] == 1
    con.execute("DELETE FROM cleaned_transactions WHERE rowid = (SELECT max(rowid) FROM cleaned_transactions)")
    assert reconciliation(con)["passed"]
    # the last row of the file lost: found although no later row number reveals the gap
    last = con.execute("SELECT max(source_row) FROM quarantined_transactions").fetchone()[0]
    con.execute(f"DELETE FROM quarantined_transactions WHERE source_row = {last}")
    con.execute(f"DELETE FROM cleaned_transactions WHERE source_row = {last}")
    rec = reconciliation(con)
    assert not rec["passed"] and rec["raw_rows_without_outcome"] == 1


def test_mapping_change_reads_every_loaded_file_again(tmp_path, con):
    src, m = write(tmp_path, "t.csv", "\n".join([HEADER] + [r for r, _ in RULE_ROWS]) + "\n")
    ingest(con, src, m, None)
    before = outcomes(con)
    # one more non-product code (no row has it): a changed mapping, so both tables are rebuilt from the file
    (tmp_path / "mapping.json").write_text(json.dumps(dict(MAPPING, non_product_codes=["POST", "BANK CHARGES", "DOT"])))
    summary = ingest(con, src, m, None)
    assert summary.rebuilt and [f.path for f in summary.reread] == [src] and not summary.loaded
    assert outcomes(con) == before
    assert reconciliation(con)["passed"]
    assert con.execute("SELECT count(*) FROM ingested_files").fetchone()[0] == 1


def test_mapping_change_with_a_loaded_file_gone_names_it(tmp_path, con):
    src, m = write(tmp_path, "t.csv", HEADER + "\n" + RULE_ROWS[0][0] + "\n")
    ingest(con, src, m, None)
    os.remove(src)
    other = tmp_path / "new.csv"
    other.write_text(HEADER + "\n" + RULE_ROWS[1][0] + "\n")
    (tmp_path / "mapping.json").write_text(json.dumps(dict(MAPPING, non_product_codes=["DOT"])))
    with pytest.raises(IngestError, match=r"t\.csv is gone"):
        ingest(con, str(other), m, None)
    # nothing was changed: the earlier tables are still there and still reconcile
    assert con.execute("SELECT count(*) FROM cleaned_transactions").fetchone()[0] == 1
    assert reconciliation(con)["passed"]


def test_warehouse_from_an_earlier_version_is_rebuilt_once(tmp_path, con):
    # an earlier version kept raw_transactions and no money per file: the next ingest reads the
    # files again, records their money, drops the old copy, and the reconciliation passes
    src, m = write(tmp_path, "t.csv", "\n".join([HEADER] + [r for r, _ in RULE_ROWS]) + "\n")
    ingest(con, src, m, None)
    con.execute("UPDATE ingested_files SET money = NULL")
    con.execute("CREATE TABLE raw_transactions AS SELECT 1 AS x")
    assert not reconciliation(con)["passed"]
    summary = ingest(con, src, m, None)
    assert summary.rebuilt and [f.path for f in summary.reread] == [src]
    assert reconciliation(con)["passed"]
    assert con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'raw_transactions'").fetchone()[0] == 0
    assert not ingest(con, src, m, None).rebuilt  # once
