"""The (frequency, recency) pair grouping cache answers correctly when two threads fit at once."""

import threading

import numpy as np

from customer_assets.ltv import clv


def _expected(freq, other):
    pairs = list(zip(freq.tolist(), other.tolist()))
    return [pairs.index(p) for p in pairs]  # row -> the first row of its pair


def test_distinct_pairs_from_two_threads():
    rng = np.random.default_rng(0)
    arrays = [(rng.integers(0, 5, 300).astype(float), rng.integers(0, 4, 300).astype(float)) for _ in range(12)]
    errors = []

    def work(offset):
        try:
            for i in range(60):  # more array pairs than the cache keeps: hits, inserts and clears interleave
                freq, other = arrays[(i + offset) % len(arrays)]
                first, inverse = clv._distinct_pairs(freq, other)
                assert (first[inverse] == np.array(_expected(freq, other))).all()
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k * 5,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(clv._PAIRS_CACHE) <= 8
