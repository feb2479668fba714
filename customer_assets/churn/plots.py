"""ROC curves and the reliability diagram of the churn models on the evaluation window."""

from __future__ import annotations

import numpy as np

from customer_assets.churn.metrics import reliability_table
from customer_assets.common.plotting import plt

LABELS = {"logistic_regression": "logistic regression", "xgboost": "XGBoost"}


def roc_figure(y, probs: dict, metrics: dict, title: str):
    from sklearn.metrics import roc_curve  # here, not at import: see churn/model.make_base_model

    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    for kind, p in probs.items():
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=f"{LABELS.get(kind, kind)} (AUC {metrics[kind]['roc_auc']:.3f})")
    rule = metrics.get("rule_baseline")
    if rule:
        # the rule is a yes/no prediction: one point on the ROC plane
        pos = rule["churn_rate"] * rule["n"]
        tp = rule["recall"] * pos
        fp = tp * (1 / rule["precision"] - 1) if rule["precision"] > 0 else 0.0
        fpr_rule = fp / max(rule["n"] - pos, 1)
        ax.plot([fpr_rule], [rule["recall"]], "s", color="black",
                label=f"rule baseline (AUC {rule['roc_auc']:.3f})")
    ax.plot([0, 1], [0, 1], ":", color="grey", label="majority class (AUC 0.5)")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate (churners caught)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def reliability_figure(y, probs: dict, metrics: dict, title: str):
    fig, (ax, axh) = plt.subplots(2, 1, figsize=(5.2, 5.6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    for kind, p in probs.items():
        t = reliability_table(y, p)
        ax.plot(t["mean_predicted"], t["observed_rate"], "o-",
                label=f"{LABELS.get(kind, kind)} (ECE {metrics[kind]['ece']:.3f})")
        axh.hist(p, bins=np.linspace(0, 1, 21), alpha=0.5, label=LABELS.get(kind, kind))
    ax.axhline(float(np.mean(y)), color="black", lw=0.8, ls="--", label=f"observed churn rate {np.mean(y):.2f}")
    ax.set_ylabel("observed churn rate")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    axh.set_xlabel("predicted churn probability (10 equal-width bins)")
    axh.set_ylabel("customers")
    return fig
