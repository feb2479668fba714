"""Every business threshold in one place, each with its source.

`AnalyticsSettings` is a Dagster resource: every field shows in the launchpad under
`resources.settings.config` and can be overridden per run. Plain-Python logic takes the values it
needs as arguments; only asset glue reads this resource.
"""

from __future__ import annotations

from typing import Optional

import dagster as dg
from pydantic import Field

# Loyalty rewards: the seed specification's table.
LOYALTY_REWARDS = {
    "Platinum": "25% discount + VIP concierge",
    "Gold": "20% discount + free shipping",
    "Silver": "15% discount or birthday bonus",
    "Bronze": "loyalty points or 10% discount",
}

# Retention action per churn risk band: the seed specification's table.
RISK_BAND_ACTIONS = {
    "High": "Immediate personalized retention offer by SMS",
    "Medium": "Targeted campaign and loyalty benefits",
    "Low": "Standard engagement and cross-sell",
}


class AnalyticsSettings(dg.ConfigurableResource):
    """Business thresholds. Defaults come from the seed specification unless noted."""

    # --- time -------------------------------------------------------------------------------
    as_of: Optional[str] = Field(
        default=None,
        description="Observation end date (YYYY-MM-DD). Empty: the latest cleaned transaction date.",
    )
    horizon_days: int = Field(default=90, description="Prediction window in days (churn, LTV).")

    # --- churn ------------------------------------------------------------------------------
    risk_high: float = Field(
        default=0.7, description="churn_probability > risk_high is High (0.7 itself is Medium)."
    )
    risk_low: float = Field(
        default=0.3, description="churn_probability < risk_low is Low (0.3 itself is Medium)."
    )
    churn_training_snapshots: int = Field(
        default=4, description="How many stacked snapshots (30 days apart) train the churn model."
    )
    max_fit_customers: int = Field(
        default=10_000,
        description="Customers used to FIT models (a deterministic sample by customer-id hash, the same "
        "customers at every snapshot; 0 = all); scoring and evaluation use all customers. 10,000: on "
        "Online Retail x20 (57k training customers) the out-of-time churn ROC AUC is 0.736 (LR) / 0.738 "
        "(XGBoost) at 10,000, 0.738 / 0.740 at 25,000, 0.736 / 0.740 with all, at 2.1 s against 4.4 s "
        "of fitting (docs/bench.md).",
    )

    # --- model registry ---------------------------------------------------------------------
    promotion_tolerance: float = Field(
        default=0.0,
        description="A challenger becomes champion if its metric >= champion's - tolerance "
        "(same out-of-time window).",
    )

    # --- drift / retraining -----------------------------------------------------------------
    psi_threshold: float = Field(default=0.2, description="Retrain when any feature's PSI > this.")
    auc_drop_threshold: float = Field(
        default=0.10, description="Retrain when AUC drops by more than this fraction (relative)."
    )
    psi_bins: int = Field(default=10, description="Quantile bins for PSI.")
    psi_exempt_features: str = Field(
        default="tenure_days,purchase_span_days",
        description="Comma-separated features whose PSI is reported but never triggers a retrain: "
        "customer-age features grow with the calendar when the history starts at a fixed date "
        "(on Online Retail, tenure_days has PSI 0.25-1.0 between snapshots 1-3 months apart with "
        "no change in behaviour; see docs/monitoring.md). Empty: every feature counts.",
    )

    # --- LTV --------------------------------------------------------------------------------
    monthly_discount_rate: float = Field(
        default=0.01, description="Monthly discount rate for the 12-month discounted CLV."
    )
    clv_months: int = Field(default=12, description="CLV horizon in months.")
    ltv_training_snapshots: int = Field(
        default=4, description="How many stacked snapshots (30 days apart) train the XGBoost spend model."
    )
    gamma_gamma_max_corr: float = Field(
        default=0.3,
        description="Gamma-Gamma assumes spend per purchase is independent of purchase frequency: "
        "warn when |corr(frequency, monetary value)| among repeat buyers exceeds this.",
    )

    # --- bundles / dead stock ---------------------------------------------------------------
    dead_stock_ratio: float = Field(
        default=0.6, description="sold ratio < this marks dead stock (exactly 0.6 is not dead)."
    )
    min_support: float = Field(
        default=0.01,
        description="Apriori min support. The seed's 0.1 finds no itemset on real retail "
        "baskets (the most common item is in 10.7% of Online Retail orders, no pair in 10%); "
        "0.01 gives 1,122 rules in seconds (docs/bundles.md).",
    )
    min_confidence: float = Field(default=0.05, description="Association rule min confidence.")
    min_lift: float = Field(default=1.0, description="Association rule min lift.")
    max_itemset_len: int = Field(default=3, description="Apriori max itemset length.")
    rules_per_country: bool = Field(
        default=False, description="Also mine rules per country (countries with enough orders)."
    )
    rules_country_min_orders: int = Field(
        default=300,
        description="Per-country rules only for countries with at least this many orders (our choice).",
    )
    rules_min_orders: int = Field(
        default=20,
        description="An itemset also needs at least this many orders (besides min_support): keeps "
        "per-country runs on small countries from rules backed by 4 orders (our choice; with 20, "
        "Germany gives 38 rules, France 86, instead of 11k and 51k).",
    )
    dead_stock_window_days: int = Field(
        default=90,
        description="Sales window for the sold ratio when the inventory file has no date, and the "
        "'recent' window of the no-inventory velocity proxy (our choice: one quarter).",
    )
    dead_stock_baseline_days: int = Field(
        default=270,
        description="Proxy only: the product's earlier velocity is measured over this many days "
        "before the recent window (our choice: the rest of a year).",
    )
    bundle_partners: int = Field(
        default=3, description="Complementary products suggested per dead-stock product."
    )
    bundle_discount_min_pct: float = Field(
        default=5.0, description="Suggested bundle discount for a product just under the dead-stock ratio."
    )
    bundle_discount_max_pct: float = Field(
        default=25.0, description="Suggested bundle discount for a product that sold nothing (sold ratio 0)."
    )
    bundle_pair_fallback: bool = Field(
        default=True,
        description="Dead-stock products in no rule (too rare for min_support) get partners from "
        "co-purchase pairs counted in SQL: >= rules_min_orders orders together, lift >= min_lift, "
        "confidence >= min_confidence (labelled in evidence_source; our choice).",
    )
    also_bought_top_products: int = Field(
        default=20, description="'Customers who bought X often bought Y' for this many best sellers."
    )

    # --- customers (RFM, personas, loyalty) ---------------------------------------------------
    price_sensitive_index: float = Field(
        default=0.9,
        description="RFM 'Price Sensitive': price_index <= this (paid on average >= 10% below each "
        "product's median unit price). ~10% of Online Retail customers; not in the seed (our choice).",
    )
    persona_k_min: int = Field(default=3, description="K-Means personas: smallest k tried (seed: 3..8).")
    persona_k_max: int = Field(default=8, description="K-Means personas: largest k tried.")
    persona_silhouette_sample: int = Field(
        default=3000,
        description="Customers sampled (fixed seed) to score silhouette, which is O(n^2).",
    )
    loyalty_platinum_share: float = Field(
        default=0.05, description="Top share of customers by qualifying spend that is Platinum."
    )
    loyalty_gold_share: float = Field(default=0.15, description="Next share that is Gold.")
    loyalty_silver_share: float = Field(default=0.30, description="Next share that is Silver; the rest Bronze.")
    loyalty_window_days: int = Field(
        default=365,
        description="Qualifying spend = spend in the last N days before as_of (a yearly tier review); "
        "no spend in the window is Bronze.",
    )

    # --- actions ----------------------------------------------------------------------------
    control_group_fraction: float = Field(
        default=0.10, description="Random holdout never contacted (stable per customer)."
    )
    regions: Optional[str] = Field(
        default=None,
        description="Comma-separated countries that get a regional extract; empty: every country.",
    )

    def as_of_date(self):
        """The configured as_of as a date, or None when it should default to the data's end."""
        import datetime as _dt

        return _dt.date.fromisoformat(self.as_of) if self.as_of else None
