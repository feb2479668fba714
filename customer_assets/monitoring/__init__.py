"""Monitoring stage: drift_report (PSI + AUC decay) and its checks; jobs/schedule/sensors live in
customer_assets/automation.py."""

from customer_assets.monitoring.assets import drift_report

ASSETS: list = [drift_report]
CHECKS: list = []  # the two checks are check_specs of drift_report (they ship with the asset)
