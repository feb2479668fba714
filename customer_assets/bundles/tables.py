"""Typed writes of the stage's tables: the shared helpers, so an empty result is still a typed table."""

from customer_assets.common.db import empty_sql, write_typed  # noqa: F401
