"""Ingestion: sources -> ingested_files, raw_transactions, cleaned_transactions, quarantined_transactions."""

from customer_assets.ingestion.assets import great_expectations_suite, ingest_transactions

ASSETS: list = [ingest_transactions]
CHECKS: list = [great_expectations_suite]
