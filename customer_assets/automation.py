"""Jobs, schedules and sensors (filled in by the monitoring stage)."""

import dagster as dg

all_assets_job = dg.define_asset_job("all_assets", selection=dg.AssetSelection.all())

JOBS: list = [all_assets_job]
SCHEDULES: list = []
SENSORS: list = []
