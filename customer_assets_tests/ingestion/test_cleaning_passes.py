"""How clean() finds duplicates and reasons cheaply must not change what it finds: duplicates across
files whose row numbers overlap, and typed (Parquet) numbers tested without their text."""

import json

import duckdb

from customer_assets.ingestion.cleaning import reason_case
from customer_assets.ingestion.mapping import load_mapping
from customer_assets.ingestion.pipeline import ingest, reconciliation
from retail_csv import HEADER, MAPPING

X = "1001,A1,Mug,2,2011-01-03 10:00:00,1.50,100,UK"


def _outcomes(con):
    return sorted(con.execute(
        "SELECT source_file, source_row, NULL AS reason FROM cleaned_transactions "
        "UNION ALL SELECT source_file, source_row, reason FROM quarantined_transactions").fetchall(), key=str)


def test_duplicates_across_files_with_overlapping_row_numbers(tmp_path):
    """Candidate duplicates are found by row number alone (the same numbers occur in every file):
    rows of another file that share a candidate's number, valid or not, must not become duplicates."""
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "a.csv").write_text("\n".join([HEADER, X, "1002,A2,Cup,1,2011-01-03 10:00:00,2.00,100,UK"]) + "\n")
    (folder / "b.csv").write_text("\n".join([
        HEADER,
        "1003,A3,Bowl,1,2011-01-04 10:00:00,3.00,101,UK",   # row 1: valid, same number as a.csv's X
        X,                                                  # row 2: repeats a.csv row 1
        "1001,A1,Mug,2,2011-01-03 10:00:00,1.50,,UK",       # row 3: X without a customer
        X,                                                  # row 4: repeats it again
    ]) + "\n")
    m = tmp_path / "mapping.json"
    m.write_text(json.dumps(MAPPING))
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    ingest(con, str(folder), str(m), None)
    a, b = str(folder / "a.csv"), str(folder / "b.csv")
    assert _outcomes(con) == sorted([(a, 1, None), (a, 2, None), (b, 1, None), (b, 2, "duplicate"),
                                     (b, 3, "missing_customer"), (b, 4, "duplicate")], key=str)
    # the duplicate rows keep their original values
    raw = con.execute("SELECT raw_values FROM quarantined_transactions WHERE reason = 'duplicate'").fetchall()
    assert [json.loads(r)["InvoiceNo"] for (r,) in raw] == ["1001", "1001"]
    assert reconciliation(con)["passed"]


def test_typed_numbers_give_the_reasons_and_details_of_text_numbers(tmp_path):
    """A Parquet file's typed Quantity/UnitPrice are tested for NULL without the number -> text cast:
    same outcomes as the same rows read as text from a CSV, and the details still show the values."""
    rows = [X,
            "1002,A1,Mug,,2011-01-03 10:00:00,1.50,100,UK",      # no quantity
            "1003,A1,Mug,2,2011-01-03 10:00:00,,100,UK",          # no price
            "1004,A1,Mug,0,2011-01-03 10:00:00,1.50,100,UK",
            "1005,A1,Mug,2,2011-01-03 10:00:00,-1.5,100,UK",
            X,
            "1006,A1,Mug,2, not a date ,1.50,100,UK"]
    csv = tmp_path / "t.csv"
    csv.write_text("\n".join([HEADER] + rows) + "\n")
    pq = tmp_path / "t.parquet"
    duckdb.execute(
        f"COPY (SELECT * REPLACE (CAST(Quantity AS BIGINT) AS Quantity, CAST(UnitPrice AS DOUBLE) AS UnitPrice) "
        f"FROM read_csv('{csv}', all_varchar = true)) TO '{pq}' (FORMAT parquet)")
    m = tmp_path / "mapping.json"
    m.write_text(json.dumps(MAPPING))
    got = {}
    for name, path in (("csv", csv), ("parquet", pq)):
        con = duckdb.connect(str(tmp_path / f"{name}.duckdb"))
        ingest(con, str(path), str(m), None)
        got[name] = con.execute(
            "SELECT source_row, reason, detail FROM quarantined_transactions ORDER BY source_row").fetchall()
        con.close()
    assert [r[:2] for r in got["parquet"]] == [r[:2] for r in got["csv"]] == [
        (2, "unparseable_number"), (3, "unparseable_number"), (4, "non_positive_quantity"),
        (5, "non_positive_price"), (6, "duplicate"), (7, "unparseable_date")]
    details = {r[0]: r[2] for r in got["parquet"]}
    assert details[2].endswith("Quantity=(empty), UnitPrice=1.5")
    assert details[3].endswith("Quantity=2, UnitPrice=(empty)")
    assert details[7] == "InvoiceDate = not a date does not parse as a date in 1970..2100"
    assert details == {r[0]: r[2] for r in got["csv"]} | {2: details[2], 5: details[5]}  # CSV shows "1.50"


def test_reason_case_tests_typed_columns_without_text(tmp_path):
    m = tmp_path / "mapping.json"
    m.write_text(json.dumps(MAPPING))
    mapping = load_mapping(str(m))
    assert "quantity_text IS NOT NULL" in reason_case(mapping)
    typed = reason_case(mapping, {"quantity": "__src_3 IS NOT NULL", "unit_price": "__src_5 IS NOT NULL"})
    assert "quantity_text" not in typed and "unit_price_text" not in typed and "__src_3 IS NOT NULL" in typed
