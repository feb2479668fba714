"""The one Definitions object of the code location.

Each stage package exposes ASSETS and CHECKS; automation.py holds jobs, schedules and sensors.
Runs execute in one process (DuckDB admits one writing process), two independent steps at a time
in threads: see executor.py.
"""

import dagster as dg

from customer_assets.automation import JOBS, SCHEDULES, SENSORS
from customer_assets.executor import threaded_in_process_executor
from customer_assets.resources import build_resources
from customer_assets.stages import STAGES

defs = dg.Definitions(
    assets=[a for s in STAGES for a in s.ASSETS],
    asset_checks=[c for s in STAGES for c in s.CHECKS],
    jobs=JOBS,
    schedules=SCHEDULES,
    sensors=SENSORS,
    resources=build_resources(),
    executor=threaded_in_process_executor,
)
