"""LTV stage: BG/NBD-family + Gamma-Gamma CLV, an XGBoost spend model, and per-customer scores."""

from customer_assets.ltv.assets import ASSETS, CHECKS  # noqa: F401
