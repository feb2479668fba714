"""customer_assets: a Dagster code location for customer analytics on DuckDB.

`defs` is exported here so `dagster ... -m customer_assets` finds the Definitions.
"""

from customer_assets.definitions import defs  # noqa: E402,F401
