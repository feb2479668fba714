"""The deployment baselines of the drift report, kept in the warehouse between runs.

A champion's PSI baseline is the binned distribution of its features at the data end it was trained
on (drift.baseline_as_of): a date that stays the same from one weekly refresh to the next until
the model is retrained. Computing it means a full feature snapshot at that date (at N=20 about a
second of the refresh, for each model), and the answer only changes when rows dated on or before
that date are added. So the reference distribution is stored here with the data fingerprint
(common.data_version) it was computed from, and reused while the data since is that data plus
appended rows all dated after the baseline date (features at a date read only the rows dated on or
before it). Anything else (a rebuild, an edited table, a late row dated on or before the baseline,
a row without a date) computes it again.

The key holds the model, its version and artifact hash, the baseline date, the bins and the
feature list, and BASELINE_VERSION: raise it when a feature's definition changes, so that no
baseline computed with the old definition is read.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Callable

from customer_assets.common import data_version
from customer_assets.common.db import table_exists

SCHEMA = "drift_state"
TABLE = f"{SCHEMA}.baselines"
BASELINE_VERSION = 1


def baseline_key(model: str, champion: dict, base_date: dt.date, bins: int, features: list) -> str:
    return json.dumps({
        "model": model, "version": int(champion["version"]), "sha256": champion.get("artifact_sha256"),
        "base_date": str(base_date), "bins": int(bins), "features": list(features),
        "baseline_version": BASELINE_VERSION,
    }, sort_keys=True)


def stored_reference(con, key: str, base_date: dt.date, compute: Callable[[], dict]) -> tuple[dict, bool]:
    """(reference distribution, reused?): the stored one when the data it was computed from is still
    valid at `base_date` (see the module docstring), else `compute()`, stored for the next run."""
    current = data_version.data_fingerprint(con)
    row = None
    if table_exists(con, "baselines", schema=SCHEMA):
        row = con.execute(f"SELECT data_fingerprint, reference FROM {TABLE} WHERE key = ?", [key]).fetchone()
    if row is not None and unchanged_up_to(con, row[0], current, base_date):
        if row[0] != current:  # the next run checks only the rows appended after this one
            con.execute(f"UPDATE {TABLE} SET data_fingerprint = ? WHERE key = ?", [current, key])
        return json.loads(row[1]), True
    reference = compute()
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    con.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (key VARCHAR PRIMARY KEY, data_fingerprint VARCHAR, "
                "reference VARCHAR, computed_at TIMESTAMP)")
    con.execute(f"INSERT OR REPLACE INTO {TABLE} VALUES (?, ?, ?, current_timestamp)",
                [key, current, json.dumps(reference)])
    return reference, False


def unchanged_up_to(con, built_from: str, current: str, base_date: dt.date) -> bool:
    """True when the data `current` is the data `built_from` plus appended rows that all have an
    order date after `base_date` (in the cleaned and in the quarantined lines)."""
    if built_from == current:
        return True
    appended = data_version.appended_since(con, built_from, current)
    if appended is None:
        return False
    for table in data_version.TABLES:
        if not table_exists(con, table):
            continue
        early = con.execute(
            f"SELECT count(*) FROM {table} WHERE {appended.where(table)} "
            "AND (order_date IS NULL OR order_date <= ?)", [base_date],
        ).fetchone()[0]
        if early:
            return False
    return True
