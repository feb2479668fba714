"""The report and regional extracts (group "reporting"): collected by customer_assets.definitions."""

from customer_assets.reporting.assets import ASSETS, CHECKS  # noqa: F401
