"""Star schema and core sales metrics."""

from customer_assets.warehouse.assets import WAREHOUSE_ASSETS

ASSETS: list = list(WAREHOUSE_ASSETS)
CHECKS: list = []
