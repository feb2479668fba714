"""Bundles stage (group "bundles"): dead stock, association rules, bundle recommendations.

Collected by customer_assets.definitions. Logic: dead_stock.py, rules.py, recommendations.py;
the shipped SYNTHETIC inventory file comes from synthetic_inventory.py.
"""

from customer_assets.bundles.assets import ASSETS, CHECKS  # noqa: F401
