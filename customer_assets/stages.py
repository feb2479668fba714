"""The stage packages, in pipeline order. Each exposes ASSETS and CHECKS."""

from customer_assets import (
    actions,
    bundles,
    churn,
    customers,
    ingestion,
    ltv,
    monitoring,
    reporting,
    warehouse,
)

STAGES = [ingestion, warehouse, customers, churn, ltv, bundles, monitoring, actions, reporting]
