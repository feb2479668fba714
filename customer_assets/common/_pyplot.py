"""matplotlib.pyplot with the Agg backend (Dagster runs headless). Imported on first use through
`customer_assets.common.plotting.plt`, or ahead of time by common/warm_imports."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as pyplot  # noqa: E402

__all__ = ["pyplot"]
