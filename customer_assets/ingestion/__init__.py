"""Ingestion: source files -> ingested_files, cleaned_transactions, quarantined_transactions."""

from customer_assets.ingestion.assets import great_expectations_suite, ingest_transactions

ASSETS: list = [ingest_transactions]
CHECKS: list = [great_expectations_suite]
