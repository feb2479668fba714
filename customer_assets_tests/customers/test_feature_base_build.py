"""How the feature base is built: narrow line_keys (INTEGER quantity only when exact, line_total only
for lines without a positive unit price), equal to the definition in each case."""

from __future__ import annotations

from customer_assets.customers import features as f
from customer_assets.ingestion.schema import write_cleaned

from test_customers_features import BEFORE, line
from test_features_fast_path import assert_same

SNAPS = ["2021-01-01", "2021-04-01", "2021-06-20", "2021-06-30", "2021-08-01"]


def _line_keys_types(con, base) -> dict:
    return dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {base.prefix}line_keys)").fetchall())


def _check_all(con):
    for snap in SNAPS:
        assert_same(con.execute(f.features_query(con, snap)).df(),
                    con.execute(f.reference_features_query(con, snap)).df())


def test_whole_quantities_are_stored_as_integer(con):
    write_cleaned(con, BEFORE)
    base = f.ensure_feature_base(con)
    types = _line_keys_types(con, base)
    assert types["quantity"] == "INTEGER"
    assert "line_total" not in types  # lines with a positive unit price: summed per day instead
    _check_all(con)


def test_fractional_quantity_keeps_double(con):
    write_cleaned(con, BEFORE + [line("A", "A9", "2021-06-25 10:00", "P2", 0.5, 5.0),
                                 line("B", "B9", "2021-07-10 10:00", "P1", 2.25, 9.0)])
    base = f.ensure_feature_base(con)
    assert _line_keys_types(con, base)["quantity"] == "DOUBLE"
    _check_all(con)
    ref = con.execute(f.reference_features_query(con, "2021-06-30")).df().set_index("customer_id")
    # the fractional line moves A's price index (P2 at 5.0 with median 5.0: a line at the median)
    assert ref.loc["A", "price_index"] != 1.0


def test_lines_without_a_positive_unit_price(con):
    """A line with unit_price NULL counts in price_index (numerator: its line_total) exactly when its
    product has a positively priced line up to s: here P2 from 2021-01-01, P9 only from 2021-07-05."""
    rows = BEFORE + [
        line("A", "A7", "2021-05-01 10:00", "P2", 3, None, line_total=18.0),
        line("B", "B7", "2021-05-02 10:00", "P9", 2, None, line_total=40.0),
        line("C", "C7", "2021-07-05 10:00", "P9", 1, 30.0),
    ]
    write_cleaned(con, rows)
    assert "price_index" in f.available_optional_features(con)
    _check_all(con)
    before = con.execute(f.reference_features_query(con, "2021-06-30")).df().set_index("customer_id")
    after = con.execute(f.reference_features_query(con, "2021-08-01")).df().set_index("customer_id")
    assert before.loc["B", "price_index"] != after.loc["B", "price_index"]  # P9 priced only from 2021-07-05
