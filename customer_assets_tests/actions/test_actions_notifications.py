"""The outbox, the idempotent SMS sending path (against a local HTTP server) and the assets."""

import json

import dagster as dg
import duckdb
import pandas as pd
import pytest
from fake_sms_api import FakeSmsApi
from handmade import N, cid, write_upstream

from customer_assets.actions import ASSETS, CHECKS
from customer_assets.actions import outbox as ob
from customer_assets.actions import retention as rt
from customer_assets.actions.notifier import Notifier, mask_phone, normalize_phone
from customer_assets.resources import SourceConfig

SID, TOKEN, FROM = "AC_test_sid_0123456789", "very-secret-token-xyz", "+15005550006"


def _actions(con, fraction=0.25):
    write_upstream(con)
    return rt.build_retention_actions(rt.gather_inputs(con).frame, fraction, "2011-W49")


def _contacts_file(tmp_path, ids):
    path = tmp_path / "contacts.csv"
    lines = ["customer_id,phone"] + [f"{c},+44 7700 900{int(c[1:]):03d}" for c in ids]
    lines += ["C001,not a phone", "C002,"]
    path.write_text("\n".join(lines) + "\n")
    return path


def _sender(url, **kw):
    return Notifier(account_sid=SID, auth_token=TOKEN, from_number=FROM, api_base_url=url, **kw)


def test_phone_normalisation_and_masking():
    assert normalize_phone("+44 7700-900 123") == "+447700900123"
    assert normalize_phone("0044 7700 900123") == "+447700900123"
    assert normalize_phone("07700 900123") is None  # no country code: not E.164
    assert normalize_phone(None) is None
    assert mask_phone("+447700900123") == "+44*******123"


def test_outbox_rules(con, tmp_path):
    actions = _actions(con)
    all_ids = [cid(i) for i in range(N)]
    contacts, notes = ob.read_contacts(con, str(_contacts_file(tmp_path, all_ids)))
    assert len(contacts) == N and contacts[cid(7)] == "+447700900007"
    assert any(n.startswith("2 contact rows") for n in notes)  # "not a phone" and an empty phone
    outbox = ob.build_outbox(actions, contacts)
    control = set(actions.loc[actions["control_group"], "customer_id"])
    assert control and not control & set(outbox["customer_id"])
    assert len(outbox) == N - len(control)
    assert outbox["idempotency_key"].is_unique
    merged = outbox.merge(actions[["customer_id", "risk_band"]], on="customer_id", suffixes=("", "_a"))
    assert ((merged["channel"] == "sms") == (merged["risk_band_a"] == "High")).all()
    assert outbox.loc[outbox["channel"] == "sms", "phone_masked"].str.contains(r"\*").all()
    assert not outbox["text"].str.contains("{", regex=False).any()
    # Keys are stable for the same week, different for another week.
    assert ob.idempotency_key("2011-W49", "C1", "sms") == ob.idempotency_key("2011-W49", "C1", "sms")
    assert ob.idempotency_key("2011-W49", "C1", "sms") != ob.idempotency_key("2011-W50", "C1", "sms")


def test_contact_file_problems(con, tmp_path):
    assert ob.read_contacts(con, None)[0] == {}
    assert "does not exist" in ob.read_contacts(con, str(tmp_path / "nope.csv"))[1][0]
    bad = tmp_path / "bad.csv"
    bad.write_text("id,mobile\n1,+447700900123\n")
    contacts, notes = ob.read_contacts(con, str(bad))
    assert contacts == {} and "needs columns customer_id and phone" in notes[0]
    _, notes = ob.read_contacts(con, str(_contacts_file(tmp_path, [cid(5)])))
    assert any("2 contact rows" in n for n in notes)


def test_dry_run_sends_nothing(con, tmp_path):
    actions = _actions(con)
    contacts, _ = ob.read_contacts(con, str(_contacts_file(tmp_path, [cid(i) for i in range(N)])))
    outbox = ob.build_outbox(actions, contacts)
    with FakeSmsApi() as api:
        for notifier in (Notifier(api_base_url=api.url), _sender(api.url, dry_run=True)):
            report = ob.deliver(con, outbox, contacts, notifier)
            assert report.attempted == 0 and report.mode.startswith("dry run")
        assert api.requests == []
    assert "TWILIO_AUTH_TOKEN" in Notifier(account_sid=SID, from_number=FROM).mode_reason()
    status = ob.outbox_with_status(con, outbox, sending=False)
    assert set(status.loc[status["channel"] == "sms", "delivery_status"]) == {"dry_run"}


def test_sends_once_retries_failures_and_keeps_secrets(con, tmp_path):
    actions = _actions(con)
    contacts, _ = ob.read_contacts(con, str(_contacts_file(tmp_path, [cid(i) for i in range(N)])))
    outbox = ob.build_outbox(actions, contacts)
    sms = outbox[outbox["channel"] == "sms"]
    assert len(sms) >= 3
    with FakeSmsApi() as api:
        api.fail_next = 2  # the first two (highest priority) fail
        first = ob.deliver(con, outbox, contacts, _sender(api.url))
        assert (first.attempted, first.sent, first.failed) == (len(sms), len(sms) - 2, 2)
        assert all("HTTP 500" in e for e in first.errors)

        req = api.requests[0]
        assert req["path"] == f"/2010-04-01/Accounts/{SID}/Messages.json"
        assert req["auth"] == f"{SID}:{TOKEN}"
        top = sms.sort_values("priority").iloc[0]
        assert req["form"] == {"To": contacts[top["customer_id"]], "From": FROM, "Body": top["text"]}

        second = ob.deliver(con, outbox, contacts, _sender(api.url))
        assert (second.attempted, second.sent, second.skipped_already_sent) == (2, 2, len(sms) - 2)
        third = ob.deliver(con, outbox, contacts, _sender(api.url))
        assert third.attempted == 0 and third.skipped_already_sent == len(sms)
        # Each customer received exactly one SMS over three runs (plus the two failed attempts).
        delivered = [r["form"]["To"] for r in api.requests[2:]]
        assert len(delivered) == len(set(delivered)) == len(sms)

    log = con.execute("SELECT * FROM notification_log").df()
    assert (log["status"] == "sent").all() and len(log) == len(sms)
    assert sorted(log["attempts"].tolist()) == [1] * (len(sms) - 2) + [2, 2]
    dump = log.to_csv() + ob.outbox_with_status(con, outbox, True).to_csv()
    assert TOKEN not in dump and SID not in dump


def test_in_flight_is_not_resent_and_attempts_are_capped(con, tmp_path):
    actions = _actions(con)
    contacts, _ = ob.read_contacts(con, str(_contacts_file(tmp_path, [cid(i) for i in range(N)])))
    outbox = ob.build_outbox(actions, contacts)
    sms = outbox[outbox["channel"] == "sms"].sort_values("priority")
    ob.ensure_log(con)
    con.execute("INSERT INTO notification_log VALUES (?, ?, 'sms', '2011-W49', 'in_flight', 1, "
                "NULL, NULL, now(), now())", [sms.iloc[0]["idempotency_key"], sms.iloc[0]["customer_id"]])
    with FakeSmsApi() as api:
        api.fail_next = 100
        notifier = _sender(api.url, max_attempts=2)
        r1 = ob.deliver(con, outbox, contacts, notifier)
        assert r1.skipped_in_flight == 1 and r1.failed == len(sms) - 1
        r2 = ob.deliver(con, outbox, contacts, notifier)
        assert r2.failed == len(sms) - 1
        r3 = ob.deliver(con, outbox, contacts, notifier)
        assert r3.attempted == 0 and r3.skipped_gave_up == len(sms) - 1
        assert sms.iloc[0]["customer_id"] not in {r["form"]["To"] for r in api.requests}


def test_unreachable_api_is_recorded_not_raised(con, tmp_path):
    actions = _actions(con)
    contacts, _ = ob.read_contacts(con, str(_contacts_file(tmp_path, [cid(i) for i in range(N)])))
    outbox = ob.build_outbox(actions, contacts)
    report = ob.deliver(con, outbox, contacts, _sender("http://127.0.0.1:9", timeout_seconds=2))
    assert report.sent == 0 and report.failed == report.attempted > 0
    assert all("connection error" in e for e in report.errors)


def test_assets_materialize_and_send_through_local_api(tmp_path, resources_for):
    resources = resources_for(tmp_path)
    db = resources["duckdb"].database
    c = duckdb.connect(db)
    write_upstream(c)
    c.close()
    contacts = _contacts_file(tmp_path, [cid(i) for i in range(N)])
    src = resources["source"]
    resources["source"] = SourceConfig(source=src.source, mapping=src.mapping, landing_dir=src.landing_dir,
                                       inventory=src.inventory, contacts=str(contacts))
    with FakeSmsApi() as api:
        resources["notifier"] = _sender(api.url)
        for _ in range(2):
            result = dg.materialize(ASSETS + CHECKS, resources=resources,
                                    instance=dg.DagsterInstance.ephemeral())
            assert result.success
            assert all(e.passed for e in result.get_asset_check_evaluations())
        n_requests = len(api.requests)
    c = duckdb.connect(db, read_only=True)
    actions = c.execute("SELECT * FROM retention_actions").df()
    outbox = c.execute("SELECT * FROM notification_outbox").df()
    c.close()
    assert len(actions) == N
    high_contacted = actions[(actions["risk_band"] == "High") & actions["contact"]]
    assert n_requests == len(high_contacted) > 0  # two runs, one SMS each
    assert set(outbox.loc[outbox["channel"] == "sms", "delivery_status"]) == {"sent"}
    mats = result.asset_materializations_for_node("notification_outbox")
    meta = json.dumps({k: str(v.value) for m in mats for k, v in m.metadata.items()})
    assert TOKEN not in meta and SID not in meta
    assert mats[0].metadata["delivery_skipped_already_sent"].value == len(high_contacted)


def test_run_cap_leaves_the_rest_pending_for_the_next_run(con, tmp_path):
    actions = _actions(con)
    contacts, _ = ob.read_contacts(con, str(_contacts_file(tmp_path, [cid(i) for i in range(N)])))
    outbox = ob.build_outbox(actions, contacts)
    n_sms = int((outbox["channel"] == "sms").sum())
    with FakeSmsApi() as api:
        first = ob.deliver(con, outbox, contacts, _sender(api.url, max_sends_per_run=2))
        assert (first.sent, first.skipped_run_cap) == (2, n_sms - 2)
        status = ob.outbox_with_status(con, outbox, sending=True)
        sms = status[status["channel"] == "sms"].sort_values("priority")
        assert sms["delivery_status"].tolist() == ["sent", "sent"] + ["pending"] * (n_sms - 2)
        second = ob.deliver(con, outbox, contacts, _sender(api.url))
        assert (second.sent, second.skipped_already_sent) == (n_sms - 2, 2)
        assert len(api.requests) == n_sms
