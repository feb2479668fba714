"""Deterministic customer samples for model fitting at scale.

Model fits on customer-level rows grow with the number of customers, while their quality stops
improving long before (tens of thousands of customers pin the parameters of these small models).
So fitting uses at most `max_customers` customers, chosen by a stable hash of the customer id:

- deterministic: the same data gives the same sample, run after run (reproducible models);
- consistent across snapshots: a customer is in or out of the sample at every snapshot, so a
  stacked training set never mixes a customer's early rows into training and later rows out;
- unbiased: the hash is unrelated to anything the models look at.

Scoring and evaluation metrics still use every customer; only fitting is bounded.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd


# id -> hash unit, kept for the process: a run samples the same customers in ~7 steps (churn, LTV,
# personas, at several snapshots), and hashing 86k ids costs ~0.1 s each time
_UNIT_CACHE: dict = {}
_UNIT_CACHE_MAX = 2_000_000


def _unit(cid: str) -> float:
    return int.from_bytes(hashlib.blake2b(cid.encode(), digest_size=8).digest(), "big") / 2.0**64


def _hash_units(ids) -> np.ndarray:
    if len(_UNIT_CACHE) > _UNIT_CACHE_MAX:
        _UNIT_CACHE.clear()
    cache = _UNIT_CACHE
    out = np.empty(len(ids), dtype=np.float64)
    for i, cid in enumerate(map(str, ids)):
        u = cache.get(cid)
        if u is None:
            u = cache[cid] = _unit(cid)
        out[i] = u
    return out


def customer_hash_unit(customer_ids: pd.Series) -> np.ndarray:
    """A stable value in [0, 1) per customer id (blake2b of the id text: independent of Python's
    per-process hash seed and of the pandas version). Each distinct id is hashed once."""
    codes, uniques = pd.factorize(customer_ids.astype(str), sort=False)
    return _hash_units(uniques)[codes]


def sample_customers(df: pd.DataFrame, max_customers: int, id_col: str = "customer_id") -> pd.DataFrame:
    """The rows of at most `max_customers` distinct customers of `df` (all rows when fewer).

    Keeps every row of a chosen customer. `max_customers <= 0` means no limit."""
    if max_customers <= 0:
        return df
    codes, uniques = pd.factorize(df[id_col].astype(str), sort=False)
    if len(uniques) <= max_customers:
        return df
    per_customer = _hash_units(uniques)
    # the max_customers smallest hash values: an exact count, whatever the hash distribution
    chosen = np.zeros(len(uniques), dtype=bool)
    chosen[np.argpartition(per_customer, max_customers - 1)[:max_customers]] = True
    return df[chosen[codes]].reset_index(drop=True)
