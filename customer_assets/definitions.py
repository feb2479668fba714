"""The one Definitions object of the code location.

Each stage package exposes ASSETS and CHECKS; automation.py holds jobs, schedules and sensors.
Runs use the in-process executor: every asset shares the single-slot DuckDB pool anyway, so
separate step processes would only add start-up time (see issue 9's measurements in the README).
"""

import dagster as dg

from customer_assets.automation import JOBS, SCHEDULES, SENSORS
from customer_assets.resources import build_resources
from customer_assets.stages import STAGES

defs = dg.Definitions(
    assets=[a for s in STAGES for a in s.ASSETS],
    asset_checks=[c for s in STAGES for c in s.CHECKS],
    jobs=JOBS,
    schedules=SCHEDULES,
    sensors=SENSORS,
    resources=build_resources(),
    executor=dg.in_process_executor,
)
