"""Population stability index (PSI) against a model's stored reference distribution.

The reference (written by the registry at training, see registry/reference.py) holds per feature
the interior cut points `edges` of reference quantile bins and the share of reference rows in each
bin; bins are (-inf, e0], (e0, e1], ..., (e_last, inf). The current values are counted in the same
bins and

    PSI = sum_i (cur_i - ref_i) * ln(cur_i / ref_i)

where a bin share of 0 (an empty bin on either side) is replaced by `eps` so the logarithm stays
finite: an empty bin contributes a large but bounded term instead of infinity.
Common reading: < 0.1 stable, 0.1-0.2 moderate shift, > 0.2 significant shift (the retrain trigger).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from customer_assets.registry import bin_counts

PSI_EPS = 1e-4


def psi_from_proportions(ref, cur, eps: float = PSI_EPS) -> float:
    """PSI between two vectors of bin shares (each summing to 1), empty bins floored at `eps`."""
    ref = np.asarray(ref, dtype=float)
    cur = np.asarray(cur, dtype=float)
    if ref.shape != cur.shape:
        raise ValueError(f"PSI needs the same bins on both sides: {ref.shape} vs {cur.shape}")
    r = np.where(ref > 0, ref, eps)
    c = np.where(cur > 0, cur, eps)
    return float(np.sum((c - r) * np.log(c / r)))


def feature_psi(reference: dict, values, eps: float = PSI_EPS) -> dict:
    """PSI of one feature: `reference` is the registry's {"edges", "proportions", "n"} entry.

    Returns psi (NaN with a `note` when it cannot be computed), the current row count and both
    share vectors (for the report)."""
    x = pd.to_numeric(pd.Series(values), errors="coerce").dropna().to_numpy(dtype=float)
    edges = list(reference.get("edges") or [])
    ref_props = list(reference.get("proportions") or [])
    if len(ref_props) != len(edges) + 1:
        return {"psi": math.nan, "current_n": int(len(x)), "note": "malformed reference (bins != edges + 1)",
                "reference_proportions": ref_props, "current_proportions": []}
    if int(reference.get("n") or 0) == 0:
        return {"psi": math.nan, "current_n": int(len(x)), "note": "reference had no values",
                "reference_proportions": ref_props, "current_proportions": []}
    if len(x) == 0:
        return {"psi": math.nan, "current_n": 0, "note": "no current values",
                "reference_proportions": ref_props, "current_proportions": []}
    counts = bin_counts(x, edges)
    cur = counts / counts.sum()
    return {
        "psi": psi_from_proportions(ref_props, cur, eps),
        "current_n": int(len(x)),
        "note": "",
        "reference_proportions": ref_props,
        "current_proportions": cur.tolist(),
    }


def psi_table(reference_distribution: dict, current: pd.DataFrame, features: list,
              eps: float = PSI_EPS) -> pd.DataFrame:
    """One row per model feature: feature, psi, reference_n, current_n, note.

    A feature the reference or the current frame lacks gets psi NaN and a note (never a crash)."""
    rows = []
    for f in features:
        ref = (reference_distribution or {}).get(f)
        if ref is None:
            rows.append({"feature": f, "psi": math.nan, "reference_n": 0, "current_n": 0,
                         "note": "feature missing from the reference distribution"})
            continue
        if f not in current.columns:
            rows.append({"feature": f, "psi": math.nan, "reference_n": int(ref.get("n") or 0),
                         "current_n": 0, "note": "feature missing from the current features"})
            continue
        r = feature_psi(ref, current[f], eps)
        rows.append({"feature": f, "psi": r["psi"], "reference_n": int(ref.get("n") or 0),
                     "current_n": r["current_n"], "note": r["note"]})
    return pd.DataFrame(rows, columns=["feature", "psi", "reference_n", "current_n", "note"])

