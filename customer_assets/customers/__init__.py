"""Customers stage: features (shared snapshot function), RFM segments, K-Means personas (fitted and
registered by persona_model, assigned with the registry's champion by customer_personas), loyalty
tiers and cohort retention. Assets and checks are collected by customer_assets.definitions."""

from customer_assets.customers.assets import ASSETS
from customer_assets.customers.checks import CHECKS

__all__ = ["ASSETS", "CHECKS"]
