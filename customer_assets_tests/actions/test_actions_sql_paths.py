"""The assets build retention_actions and notification_outbox in DuckDB (retention_actions_sql,
build_outbox_table, outbox_with_status_sql); the pandas functions are the reference they must equal."""

import pandas as pd
import pytest
from handmade import N, cid, write_upstream

from customer_assets.actions import outbox as ob
from customer_assets.actions import retention as rt
from customer_assets.common.db import replace_table, write_typed


def _odd_upstream(con):
    write_upstream(con)
    con.execute("UPDATE customer_ltv SET clv_12m = -5 WHERE customer_id = 'C005'")       # negative CLV
    con.execute("UPDATE loyalty_tiers SET reward = NULL WHERE customer_id = 'C003'")    # reward from tier
    con.execute("UPDATE churn_scores SET risk_band = NULL WHERE customer_id = 'C010'")  # no score
    con.execute("UPDATE churn_scores SET churn_probability = NULL WHERE customer_id = 'C020'")
    con.execute("UPDATE churn_scores SET churn_probability = 0.9, risk_band = 'High' "
                "WHERE customer_id IN ('C031', 'C032')")                               # value-at-risk ties


@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.6])
def test_retention_sql_equals_pandas(con, fraction):
    _odd_upstream(con)
    write_typed(con, "expected", rt.build_retention_actions(rt.gather_inputs(con).frame, fraction, "2011-W49"),
                rt.RETENTION_TYPES)
    sql, params = rt.retention_actions_sql(rt.inputs_sql(con).frame, fraction, "2011-W49")
    replace_table(con, "got", sql, params)
    expected = con.execute("SELECT * FROM expected").df()
    got = con.execute("SELECT * FROM got").df()
    assert len(got) == N and got["control_group"].any() == (fraction > 0)
    pd.testing.assert_frame_equal(expected, got)
    with pytest.raises(ValueError):
        rt.retention_actions_sql(rt.inputs_sql(con).frame, 1.0)


def test_retention_sql_without_some_inputs(con):
    write_upstream(con, skip=("customer_ltv", "loyalty_tiers"))
    gathered = rt.inputs_sql(con)
    assert any("clv_12m" in n for n in gathered.notes)
    write_typed(con, "expected", rt.build_retention_actions(rt.gather_inputs(con).frame, 0.25, None),
                rt.RETENTION_TYPES)
    sql, params = rt.retention_actions_sql(gathered.frame, 0.25, None)
    replace_table(con, "got", sql, params)
    pd.testing.assert_frame_equal(con.execute("SELECT * FROM expected").df(), con.execute("SELECT * FROM got").df())


@pytest.mark.parametrize("sending", [False, True])
def test_outbox_sql_equals_pandas(con, sending):
    _odd_upstream(con)
    con.execute("UPDATE loyalty_tiers SET tier = '' WHERE customer_id = 'C033'")  # '' reads as no tier
    sql, params = rt.retention_actions_sql(rt.inputs_sql(con).frame, 0.25, "2011-W49")
    replace_table(con, "retention_actions", sql, params)
    actions = con.execute("SELECT * FROM retention_actions").df()
    contacts = {cid(i): f"+4477009000{i:02d}" for i in range(0, N, 2)}
    expected_outbox = ob.build_outbox(actions, contacts)
    sms_keys = expected_outbox.loc[expected_outbox["channel"] == "sms", "idempotency_key"].tolist()
    assert len(sms_keys) >= 2
    ob.ensure_log(con)  # one key already sent, one failed once
    con.execute("INSERT INTO notification_log VALUES (?, 'x', 'sms', '2011-W49', 'sent', 1, 'SM1', NULL, "
                "TIMESTAMP '2011-12-01 10:00', TIMESTAMP '2011-12-01 10:00')", [sms_keys[0]])
    con.execute("INSERT INTO notification_log VALUES (?, 'x', 'sms', '2011-W49', 'failed', 2, NULL, 'boom', "
                "TIMESTAMP '2011-12-01 10:00', TIMESTAMP '2011-12-02 10:00')", [sms_keys[1]])
    write_typed(con, "expected", ob.outbox_with_status(con, expected_outbox, sending), ob.OUTBOX_TYPES)
    ob.build_outbox_table(con, contacts, "__ob")
    replace_table(con, "got", ob.outbox_with_status_sql(con, "__ob", sending))
    expected = con.execute("SELECT * FROM expected").df()
    got = con.execute("SELECT * FROM got").df()
    assert set(got["delivery_status"]) >= {"sent", "failed", "crm_email", "pending" if sending else "dry_run"}
    pd.testing.assert_frame_equal(expected, got)


def test_outbox_sql_without_contacts(con):
    write_upstream(con)
    sql, params = rt.retention_actions_sql(rt.inputs_sql(con).frame, 0.25, "2011-W49")
    replace_table(con, "retention_actions", sql, params)
    expected = ob.build_outbox(con.execute("SELECT * FROM retention_actions").df(), {})
    ob.build_outbox_table(con, {}, "__ob")
    got = con.execute("SELECT * FROM __ob").df()
    assert (got["channel"] == "email").all() and got["phone_masked"].isna().all()
    pd.testing.assert_frame_equal(expected.astype({"priority": "int32"}), got, check_dtype=False)
