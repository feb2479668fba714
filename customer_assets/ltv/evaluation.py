"""Holdout evaluation shared by the CLV models, the gradient-boosted model and the naive baseline.

All predictions are made at a cutoff for the customers known then, and compared with what those
customers did in `cutoff < order_date <= cutoff + horizon`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from customer_assets.common.plotting import plt


def naive_baseline(summary: pd.DataFrame, cutoff, horizon_days: int) -> pd.DataFrame:
    """Each customer's past rate carried forward: (purchase days, spend) per day observed so far,
    times the horizon. The observed span (first purchase .. cutoff, inclusive) is floored at the
    horizon so a customer first seen yesterday is not read as buying every day."""
    cutoff = pd.Timestamp(cutoff)
    span = (cutoff - pd.to_datetime(summary["first_purchase"])).dt.days + 1
    span = np.maximum(span.to_numpy(dtype=float), float(horizon_days))
    days = summary["frequency"].to_numpy(dtype=float) + 1
    return pd.DataFrame({
        "customer_id": summary["customer_id"].to_numpy(),
        "pred_purchases": days / span * horizon_days,
        "pred_revenue": summary["historical_spend"].to_numpy(dtype=float) / span * horizon_days,
    })


def normalized_gini(actual, predicted) -> float | None:
    """Gini of `actual` ordered by `predicted`, divided by the Gini of the perfect order.

    1 = perfect ranking, 0 = no better than random, -1 = reversed. Customers with tied predictions
    share their actual total evenly (so a constant prediction scores exactly 0)."""
    a = np.asarray(actual, float)
    p = np.asarray(predicted, float)
    if len(a) < 2 or a.sum() <= 0 or not np.all(np.isfinite(p)):
        return None

    def gini(key):
        order = np.argsort(-key, kind="stable")
        k, v = key[order], a[order]
        groups = np.concatenate([[0], np.cumsum(k[1:] != k[:-1])])
        v = (np.bincount(groups, weights=v) / np.bincount(groups))[groups]  # ties share evenly
        cum = np.cumsum(v) / a.sum()
        return cum.sum() / len(a) - (len(a) + 1) / (2 * len(a))

    best = gini(a)
    return float(gini(p) / best) if best > 0 else None


def regression_metrics(actual, predicted) -> dict:
    a = np.asarray(actual, float)
    p = np.asarray(predicted, float)
    ok = np.isfinite(p)
    if ok.sum() == 0:
        return {"n": 0}
    a, p = a[ok], p[ok]
    err = p - a
    constant = len(a) < 3 or np.ptp(a) == 0 or np.ptp(p) == 0
    spearman = None if constant else pd.Series(a).corr(pd.Series(p), method="spearman")
    return {
        "n": int(len(a)),
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err ** 2).mean())),
        "spearman": None if spearman is None or pd.isna(spearman) else float(spearman),
        "gini_normalized": normalized_gini(a, p),
        "predicted_total": float(p.sum()),
        "actual_total": float(a.sum()),
    }


def evaluate(frame: pd.DataFrame, revenue_col: str, purchases_col: str | None = None) -> dict:
    """Metrics of one model on a frame holding actual_revenue / actual_purchases and predictions."""
    out = {"revenue": regression_metrics(frame["actual_revenue"], frame[revenue_col])}
    if purchases_col is not None:
        out["purchases"] = regression_metrics(frame["actual_purchases"], frame[purchases_col])
    return out


def flat_metrics(model: str, metrics: dict) -> dict:
    """One row for the comparison table: model, revenue_* and purchases_* metrics."""
    row = {"model": model}
    for target in ("revenue", "purchases"):
        for k in ("mae", "rmse", "spearman", "gini_normalized", "predicted_total", "actual_total"):
            row[f"{target}_{k}"] = metrics.get(target, {}).get(k)
    row["n_customers"] = metrics.get("revenue", {}).get("n")
    return row


def decile_table(frame: pd.DataFrame, pred_col: str) -> pd.DataFrame:
    """Customers in 10 groups by predicted revenue (10 = highest): mean predicted and actual."""
    d = frame[["actual_revenue", pred_col]].dropna()
    if len(d) < 10:
        return pd.DataFrame(columns=["decile", "customers", "mean_predicted", "mean_actual"])
    rank = d[pred_col].rank(method="first")
    d = d.assign(decile=pd.qcut(rank, 10, labels=range(1, 11)).astype(int))
    return (
        d.groupby("decile")
        .agg(customers=("actual_revenue", "size"), mean_predicted=(pred_col, "mean"), mean_actual=("actual_revenue", "mean"))
        .reset_index()
    )


def decile_chart(frame: pd.DataFrame, pred_cols: dict, title: str):
    """One panel per model: mean predicted vs mean actual holdout revenue per predicted decile."""
    cols = {k: v for k, v in pred_cols.items() if v in frame and frame[v].notna().sum() >= 10}
    fig, axes = plt.subplots(1, max(len(cols), 1), figsize=(4.2 * max(len(cols), 1), 3.4), squeeze=False)
    for ax, (label, col) in zip(axes[0], cols.items()):
        t = decile_table(frame, col)
        x = t["decile"].to_numpy()
        ax.bar(x - 0.2, t["mean_predicted"], width=0.4, label="predicted")
        ax.bar(x + 0.2, t["mean_actual"], width=0.4, label="actual")
        ax.set_yscale("symlog", linthresh=10)  # the top decile would dwarf the others on a linear axis
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("predicted decile (10 = highest)")
        ax.set_xticks(range(1, 11))
    axes[0][0].set_ylabel("mean holdout revenue per customer (log)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig
