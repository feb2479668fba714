"""The two blocking checks of the actions stage are check_specs of their assets: evaluated inside
retention_actions' / notification_outbox's step (same names, blocking), with the same verdicts."""

import dagster as dg
import duckdb
import pandas as pd
from handmade import N, write_upstream

from customer_assets.actions import CHECKS
from customer_assets.actions import assets as aa
from customer_assets.common.db import write_typed


def test_checks_ship_with_their_assets():
    assert CHECKS == []
    specs = {s.name: s for a in (aa.retention_actions, aa.notification_outbox) for s in a.check_specs}
    assert set(specs) == {"retention_control_group_holdout", "outbox_excludes_control_group"}
    assert all(s.blocking for s in specs.values())
    assert specs["retention_control_group_holdout"].asset_key == dg.AssetKey("retention_actions")
    assert specs["outbox_excludes_control_group"].asset_key == dg.AssetKey("notification_outbox")


def test_holdout_check_verdicts():
    ok = aa.retention_control_group_holdout(1000, 100, 0, 0.1)
    assert ok.passed and ok.check_name == "retention_control_group_holdout"
    assert ok.metadata["control_share"].value == 0.1 and ok.metadata["customers"].value == 1000
    assert not aa.retention_control_group_holdout(1000, 100, 1, 0.1).passed  # a control customer contacted
    assert not aa.retention_control_group_holdout(1000, 200, 0, 0.1).passed  # holdout far from the setting
    assert aa.retention_control_group_holdout(0, 0, 0, 0.1).passed  # empty table


def test_outbox_check_verdicts(con):
    write_typed(con, "retention_actions", pd.DataFrame({"customer_id": ["a", "b"], "control_group": [False, True]}),
                {"customer_id": "VARCHAR", "control_group": "BOOLEAN"})
    types = {"customer_id": "VARCHAR", "idempotency_key": "VARCHAR"}
    write_typed(con, "notification_outbox", pd.DataFrame({"customer_id": ["a"], "idempotency_key": ["k1"]}), types)
    ok = aa.outbox_excludes_control_group(con)
    assert ok.passed and ok.check_name == "outbox_excludes_control_group"
    write_typed(con, "notification_outbox",
                pd.DataFrame({"customer_id": ["a", "a", "b"], "idempotency_key": ["k1", "k1", "k2"]}), types)
    bad = aa.outbox_excludes_control_group(con)
    assert not bad.passed
    assert bad.metadata["control_customers_in_outbox"].value == 1 and bad.metadata["duplicate_keys"].value == 1


def test_holdout_evaluated_in_the_step_and_blocking(tmp_path, resources_for, monkeypatch):
    resources = resources_for(tmp_path, control_group_fraction=0.25)
    c = duckdb.connect(resources["duckdb"].database)
    write_upstream(c)
    c.close()
    result = dg.materialize([aa.retention_actions], resources=resources, instance=dg.DagsterInstance.ephemeral())
    (ev,) = result.get_asset_check_evaluations()
    c = duckdb.connect(resources["duckdb"].database, read_only=True)
    n, control = c.execute("SELECT count(*), count(*) FILTER (control_group) FROM retention_actions").fetchone()
    c.close()
    assert ev.check_name == "retention_control_group_holdout" and ev.passed
    assert (ev.metadata["customers"].value, ev.metadata["control"].value) == (n, control) and n == N
    # a holdout far from the setting (built with 0.9, the setting says 0.25) fails the check
    # inside the step, and (blocking) the run
    real = aa.rt.retention_actions_sql
    monkeypatch.setattr(aa.rt, "retention_actions_sql", lambda frame, fraction, week: real(frame, 0.9, week))
    result = dg.materialize([aa.retention_actions], resources=resources, instance=dg.DagsterInstance.ephemeral(),
                            raise_on_error=False)
    (ev,) = result.get_asset_check_evaluations()
    assert not result.success and not ev.passed and ev.metadata["control"].value > control
