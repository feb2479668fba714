import duckdb
import pytest

from customer_assets.common.db import transaction


def _rows(con):
    return con.execute("SELECT count(*) FROM t").fetchone()[0]


def test_transaction_commits_and_rolls_back():
    con = duckdb.connect()
    con.execute("CREATE TABLE t (x INTEGER)")
    with transaction(con):
        con.execute("INSERT INTO t VALUES (1)")
    assert _rows(con) == 1
    with pytest.raises(RuntimeError):
        with transaction(con):
            con.execute("INSERT INTO t VALUES (2)")
            raise RuntimeError("boom")
    assert _rows(con) == 1


def test_transaction_joins_the_callers_open_transaction():
    con = duckdb.connect()
    con.execute("CREATE TABLE t (x INTEGER)")
    con.execute("BEGIN TRANSACTION")
    with transaction(con):  # a second BEGIN here would abort the caller's transaction
        con.execute("INSERT INTO t VALUES (1)")
    con.execute("ROLLBACK")  # the caller decides: its rollback takes the block's insert with it
    assert _rows(con) == 0
