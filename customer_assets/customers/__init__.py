"""Customers stage: features (shared snapshot function), RFM segments, K-Means personas, loyalty
tiers and cohort retention. Assets and checks are collected by customer_assets.definitions."""

from customer_assets.customers.assets import ASSETS
from customer_assets.customers.checks import CHECKS

__all__ = ["ASSETS", "CHECKS"]
