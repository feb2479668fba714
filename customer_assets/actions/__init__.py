"""Retention actions and notifications (group "actions"): collected by customer_assets.definitions."""

from customer_assets.actions.assets import ASSETS, CHECKS  # noqa: F401
