"""Scoring current customers with the registered champion: probability, risk band, reasons."""

from __future__ import annotations

import numpy as np
import pandas as pd

from customer_assets.churn.model import one_blas_thread
from customer_assets.churn.reasons import top_reasons

SCORE_COLUMNS = ["customer_id", "churn_probability", "risk_band", "reason_1", "reason_2", "reason_3", "model_version"]


def risk_band(p, high: float = 0.7, low: float = 0.3) -> np.ndarray:
    """High when p > high, Low when p < low, Medium otherwise: both bounds themselves are Medium."""
    if low > high:
        raise ValueError(f"risk_low ({low}) must not exceed risk_high ({high})")
    p = np.asarray(p, dtype=float)
    return np.where(p > high, "High", np.where(p < low, "Low", "Medium"))


def score_customers(artifact: dict, features_df: pd.DataFrame, model_version: int,
                    high: float = 0.7, low: float = 0.3) -> pd.DataFrame:
    """churn_scores rows for every customer in `features_df` (customer_id + the model's features)."""
    features = list(artifact["features"])
    missing = [f for f in features if f not in features_df.columns]
    if missing:
        raise ValueError(
            f"churn_model v{model_version} needs features {missing} that this warehouse does not provide "
            "(did the source mapping change?): retrain churn_model"
        )
    model = artifact["pipeline"]
    X = features_df[features].astype(float)
    with one_blas_thread():
        p = model.predict_proba(X)[:, 1]
    out = pd.DataFrame({
        "customer_id": features_df["customer_id"].astype(str).to_numpy(),
        "churn_probability": p,
        "risk_band": risk_band(p, high, low),
    })
    if hasattr(model, "contributions"):
        with one_blas_thread():
            contributions = model.contributions(X)
        reasons = top_reasons(X, contributions, artifact.get("feature_medians") or {},
                              directions=getattr(model, "feature_directions", None))
        out = pd.concat([out, reasons.reset_index(drop=True)], axis=1)
    else:
        for i in (1, 2, 3):
            out[f"reason_{i}"] = None
    out["model_version"] = int(model_version)
    return out[SCORE_COLUMNS].sort_values("churn_probability", ascending=False, kind="stable").reset_index(drop=True)
