"""predict_customers computes the buying model once per distinct (frequency, recency, T): the distinct rows
and the map back must be exactly np.unique(axis=0)'s."""

import numpy as np
import pytest

from customer_assets.ltv.clv import _distinct_rows


@pytest.mark.parametrize("n", [0, 1, 7, 5000])
def test_distinct_rows_equal_numpy_unique(n):
    rng = np.random.default_rng(n)
    a = np.column_stack([rng.integers(0, 4, n), rng.integers(0, 3, n) / 7.0, rng.integers(0, 5, n) / 7.0]).astype(float)
    got_rows, got_inverse = _distinct_rows(a)
    rows, inverse = np.unique(a, axis=0, return_inverse=True)
    np.testing.assert_array_equal(got_rows, rows)
    np.testing.assert_array_equal(got_inverse, inverse.reshape(-1))
    np.testing.assert_array_equal(got_rows[got_inverse], a)
    assert n < 50 or len(rows) < n  # the large case has repeated histories
