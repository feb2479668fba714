"""Stage package: assets and checks are collected by customer_assets.definitions."""

ASSETS: list = []
CHECKS: list = []
