"""Reference feature distributions stored with each model (the drift stage computes PSI on them).

Bins are reference quantiles (deciles by default). Stored per feature: the interior cut points
and the share of reference rows in each bin (len(edges) + 1 bins, open at both ends).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def reference_distribution(df: pd.DataFrame, features: list, bins: int = 10) -> dict:
    out = {}
    for f in features:
        x = pd.to_numeric(df[f], errors="coerce").dropna().to_numpy(dtype=float)
        if len(x) == 0:
            out[f] = {"edges": [], "proportions": [1.0], "n": 0}
            continue
        qs = np.quantile(x, np.linspace(0, 1, bins + 1)[1:-1])
        edges = np.unique(qs)  # a constant or lumpy feature has fewer distinct cut points
        counts = bin_counts(x, edges)
        out[f] = {"edges": edges.tolist(), "proportions": (counts / counts.sum()).tolist(), "n": int(len(x))}
    return out


def bin_counts(x: np.ndarray, edges) -> np.ndarray:
    """Counts per bin: (-inf, e0], (e0, e1], ..., (e_last, inf)."""
    idx = np.searchsorted(np.asarray(edges, dtype=float), x, side="left")
    return np.bincount(idx, minlength=len(edges) + 1).astype(float)
