import pandas as pd

from customer_assets.common.sampling import sample_customers


def _frame(n_customers: int, rows_each: int) -> pd.DataFrame:
    ids = [f"C{i}" for i in range(n_customers) for _ in range(rows_each)]
    return pd.DataFrame({"customer_id": ids, "x": range(len(ids))})


def test_sample_keeps_exactly_max_customers_with_all_their_rows():
    df = _frame(1000, 3)
    s = sample_customers(df, 100)
    assert s["customer_id"].nunique() == 100
    assert len(s) == 300  # every row of a chosen customer


def test_sample_is_deterministic_and_order_independent():
    df = _frame(500, 2)
    a = set(sample_customers(df, 50)["customer_id"])
    b = set(sample_customers(df.sample(frac=1, random_state=1), 50)["customer_id"])
    assert a == b


def test_sample_is_consistent_across_snapshots():
    # a customer chosen in a larger frame is chosen in any frame where it ranks as low
    df = _frame(400, 1)
    small = set(sample_customers(df, 40)["customer_id"])
    large = set(sample_customers(df, 80)["customer_id"])
    assert small < large


def test_no_limit_when_fewer_customers_or_zero():
    df = _frame(10, 2)
    assert len(sample_customers(df, 100)) == 20
    assert len(sample_customers(_frame(1000, 1), 0)) == 1000


def test_hash_units_are_the_blake2b_definition_cached_or_not():
    import hashlib

    import numpy as np

    from customer_assets.common import sampling

    ids = ["12345", "A-7", "", "12345", "ü"]
    expected = [int.from_bytes(hashlib.blake2b(c.encode(), digest_size=8).digest(), "big") / 2.0**64 for c in ids]
    sampling._UNIT_CACHE.clear()
    assert np.array_equal(sampling._hash_units(ids), expected)   # computed
    assert np.array_equal(sampling._hash_units(ids), expected)   # from the cache
    assert set(sampling._UNIT_CACHE) == set(ids)
