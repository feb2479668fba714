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


def customer_hash_unit(customer_ids: pd.Series) -> np.ndarray:
    """A stable value in [0, 1) per customer id (blake2b of the id text: independent of Python's
    per-process hash seed and of the pandas version)."""
    ids = customer_ids.astype(str).to_numpy()
    out = np.empty(len(ids), dtype=np.float64)
    cache: dict = {}
    for i, cid in enumerate(ids):
        v = cache.get(cid)
        if v is None:
            v = int.from_bytes(hashlib.blake2b(cid.encode(), digest_size=8).digest(), "big") / 2.0**64
            cache[cid] = v
        out[i] = v
    return out


def sample_customers(df: pd.DataFrame, max_customers: int, id_col: str = "customer_id") -> pd.DataFrame:
    """The rows of at most `max_customers` distinct customers of `df` (all rows when fewer).

    Keeps every row of a chosen customer. `max_customers <= 0` means no limit."""
    if max_customers <= 0:
        return df
    n_customers = df[id_col].nunique()
    if n_customers <= max_customers:
        return df
    u = customer_hash_unit(df[id_col])
    # the max_customers smallest hash values: an exact count, whatever the hash distribution
    unique_u = np.unique(u)
    cutoff = unique_u[max_customers - 1]
    return df[u <= cutoff].reset_index(drop=True)
