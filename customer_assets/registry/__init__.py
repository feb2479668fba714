from customer_assets.registry.registry import (  # noqa: F401
    ArtifactError,
    LoadedModel,
    Registration,
    current_champion,
    ensure_registry,
    load_model,
    register_model,
    RETRAIN_REASON_TAG,
    training_reason,
)
from customer_assets.registry.reference import bin_counts, reference_distribution  # noqa: F401
