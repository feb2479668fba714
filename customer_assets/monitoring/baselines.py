"""The deployment baselines of the drift report, frozen in the warehouse when first computed.

A champion's PSI baseline is the population it scored when it was trained: the binned features at
the data end it saw (drift.baseline_as_of). That date stays the same from one weekly refresh to
the next until the model is retrained, and computing the features there is a full feature
snapshot (at N=20 about a second of every refresh, for each model). As in any deployment monitor,
the reference is frozen: the run that trains the champion stores the population it scores
(drift_report runs in the training run with the baseline date = as_of), and later runs read it.

It is kept while the data is the data it was computed from plus appended rows (ingestion's append
log, common.data_version): appends add rows, they never change the ones the champion saw. Late
rows dated on or before the baseline date are not part of that population (the champion never
scored them), so they do not change it either. Anything else (a rebuild, an edited or deleted
line) computes it again from the data as it is then: the features at the baseline date.

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


def stored_reference(con, key: str, compute: Callable[[], dict]) -> tuple[dict, bool]:
    """(reference distribution, reused?): the stored one while the data is the data it was
    computed from plus appends (see the module docstring), else `compute()`, stored for later runs."""
    current = data_version.data_fingerprint(con)
    row = None
    if table_exists(con, "baselines", schema=SCHEMA):
        row = con.execute(f"SELECT data_fingerprint, reference FROM {TABLE} WHERE key = ?", [key]).fetchone()
    if row is not None and (row[0] == current or data_version.appended_since(con, row[0], current) is not None):
        if row[0] != current:  # the next run follows the append log from here
            con.execute(f"UPDATE {TABLE} SET data_fingerprint = ? WHERE key = ?", [current, key])
        return json.loads(row[1]), True
    reference = compute()
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    con.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (key VARCHAR PRIMARY KEY, data_fingerprint VARCHAR, "
                "reference VARCHAR, computed_at TIMESTAMP)")
    con.execute(f"INSERT OR REPLACE INTO {TABLE} VALUES (?, ?, ?, current_timestamp)",
                [key, current, json.dumps(reference)])
    return reference, False
