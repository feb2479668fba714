"""Project-relative default locations (so `dagster dev` works from any working directory)."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = PROJECT_ROOT / "data"
WAREHOUSE_DIR = PROJECT_ROOT / "warehouse"

DEFAULT_SOURCE = str(DATA_DIR / "online_retail.parquet")
DEFAULT_MAPPING = str(DATA_DIR / "online_retail_mapping.json")
DEFAULT_LANDING = str(DATA_DIR / "incoming")
DEFAULT_INVENTORY = str(DATA_DIR / "online_retail_inventory_SYNTHETIC.csv")
DEFAULT_WAREHOUSE = str(WAREHOUSE_DIR / "customer_analytics.duckdb")
DEFAULT_MODELS = str(WAREHOUSE_DIR / "models")
DEFAULT_REPORTS = str(WAREHOUSE_DIR / "reports")
