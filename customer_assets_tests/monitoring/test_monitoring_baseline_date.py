"""drift.baseline_as_of: the data end of the files ingested before the champion was registered."""

import datetime as dt

from customer_assets.monitoring.drift import baseline_as_of


def _tables(con):
    con.execute("CREATE TABLE cleaned_transactions (order_date DATE, source_file VARCHAR)")
    con.execute("INSERT INTO cleaned_transactions VALUES ('2011-01-05', 'a.csv'), ('2011-01-10', 'a.csv'), "
                "('2011-02-01', 'b.csv'), ('2011-03-01', 'hand-made')")
    con.execute("CREATE TABLE ingested_files (path VARCHAR, loaded_at TIMESTAMP)")
    con.execute("INSERT INTO ingested_files VALUES ('a.csv', '2024-01-01 10:00'), ('b.csv', '2024-01-08 10:00')")


def test_baseline_date_per_champion_and_shared_scan(con):
    _tables(con)
    as_of = dt.date(2011, 2, 1)
    first = {"trained_at": dt.datetime(2024, 1, 2)}
    second = {"trained_at": dt.datetime(2024, 1, 9)}
    memo = {}
    assert baseline_as_of(con, first, as_of, memo) == dt.date(2011, 1, 10)
    assert baseline_as_of(con, second, as_of, memo) == dt.date(2011, 2, 1)  # not the hand-made row's date
    assert baseline_as_of(con, {"trained_at": dt.datetime(2024, 1, 3)}, as_of, memo) == dt.date(2011, 1, 10)
    assert memo == {("a.csv",): dt.date(2011, 1, 10), ("a.csv", "b.csv"): dt.date(2011, 2, 1)}
    assert baseline_as_of(con, second, dt.date(2011, 1, 20)) == dt.date(2011, 1, 20)  # capped at as_of
    assert baseline_as_of(con, {"trained_at": dt.datetime(2023, 1, 1)}, as_of, memo) is None  # no file yet
    assert baseline_as_of(con, {"trained_at": None}, as_of) is None


def test_baseline_date_unknown_without_ingested_files(con):
    con.execute("CREATE TABLE cleaned_transactions (order_date DATE, source_file VARCHAR)")
    assert baseline_as_of(con, {"trained_at": dt.datetime(2024, 1, 2)}, dt.date(2011, 2, 1)) is None
