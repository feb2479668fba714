"""Churn stage (group "churn"): training set, calibrated models with out-of-time evaluation, scores."""

from customer_assets.churn.assets import ASSETS, CHECKS  # noqa: F401
