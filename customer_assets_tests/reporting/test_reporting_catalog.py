"""The report reads the warehouse catalog once (sections.catalog_cache) and answers the sections'
table_exists / table_columns / read_optional from it, as the uncached functions do."""

from customer_assets.common.db import table_columns as uncached_columns
from customer_assets.common.db import table_exists as uncached_exists
from customer_assets.reporting import sections as S


def test_catalog_answers_as_the_uncached_functions(con):
    con.execute("CREATE TABLE t (b INTEGER, a VARCHAR, c DOUBLE)")
    con.execute("INSERT INTO t VALUES (1, 'x', 2.5)")
    con.execute("CREATE VIEW v AS SELECT a FROM t")
    names = ["t", "v", "missing", "T"]
    expected = {n: (uncached_exists(con, n), uncached_columns(con, n)) for n in names}
    with S.catalog_cache(con):
        got = {n: (S.table_exists(con, n), S.table_columns(con, n)) for n in names}
        assert S.read_optional(con, "missing") is None
        assert S.read_optional(con, "t").to_dict("records") == [{"b": 1, "a": "x", "c": 2.5}]
    assert got == expected and expected["t"] == (True, ["b", "a", "c"]) and expected["missing"] == (False, [])
    assert id(con) not in S._CATALOG  # released after the block
    con.execute("CREATE TABLE later (x INTEGER)")
    assert S.table_exists(con, "later") and S.table_columns(con, "later") == ["x"]  # uncached outside
