"""customer_assets: a Dagster code location for customer analytics on DuckDB.

`defs` is exported lazily (PEP 562) so `dagster ... -m customer_assets` finds the Definitions,
while importing a logic module (customer_assets.ingestion.pipeline, ...) does not load every
stage's Dagster definitions.
"""


def __getattr__(name):
    if name == "defs":
        from customer_assets.definitions import defs

        return defs
    raise AttributeError(f"module 'customer_assets' has no attribute {name!r}")


def __dir__():
    return ["defs"]
