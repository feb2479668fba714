"""Retention actions on hand-made upstream tables with known answers."""

import pandas as pd
import pytest
from handmade import N, band, cid, write_upstream

from customer_assets.actions import retention as rt
from customer_assets.actions.inputs import write_typed
from customer_assets.settings import LOYALTY_REWARDS, RISK_BAND_ACTIONS


def test_holdout_is_stable_known_and_about_the_requested_share():
    # A pinned value: if the hash ever changes, every customer's holdout membership changes.
    assert rt.holdout_bucket("12346") == pytest.approx(0.242447, abs=1e-6)  # sha256 via coreutils
    ids = [str(12000 + i) for i in range(20000)]
    share = sum(rt.in_control_group(c, 0.10) for c in ids) / len(ids)
    assert 0.09 < share < 0.11
    # Raising the fraction only adds customers to the holdout.
    small = {c for c in ids if rt.in_control_group(c, 0.05)}
    large = {c for c in ids if rt.in_control_group(c, 0.10)}
    assert small < large
    assert not any(rt.in_control_group(c, 0.0) for c in ids)


def test_retention_actions_known_answers(con):
    write_upstream(con)
    gathered = rt.gather_inputs(con)
    assert gathered.population_table == "churn_scores" and gathered.notes == []
    actions = rt.build_retention_actions(gathered.frame, 0.25, "2011-W49")
    assert len(actions) == N and actions["customer_id"].is_unique
    by_id = actions.set_index("customer_id")

    # value at risk = churn probability x CLV, per customer.
    for i in (5, 20, 38):
        assert by_id.loc[cid(i), "value_at_risk"] == pytest.approx(i / N * (100 + 10 * i))
    assert pd.isna(by_id.loc[cid(N - 1), "value_at_risk"])  # no CLV row

    control = {c for c in by_id.index if rt.in_control_group(c, 0.25)}
    assert 0 < len(control) < N
    assert set(by_id.index[by_id["control_group"]]) == control
    for c in control:
        assert not by_id.loc[c, "contact"] and pd.isna(by_id.loc[c, "priority"])
        assert by_id.loc[c, "action"] == rt.CONTROL_ACTION

    # Action follows the band; reward follows the tier.
    for i in range(N):
        row = by_id.loc[cid(i)]
        assert row["risk_band"] == band(i / N)
        assert row["reward"] == LOYALTY_REWARDS[row["tier"]]
        if cid(i) not in control:
            assert row["action"] == RISK_BAND_ACTIONS[band(i / N)]

    # Priority: value at risk descending (it grows with i here); C039 has no CLV and so comes last
    # (C000 has value at risk 0, still ahead of an unknown one).
    contacted = [cid(i) for i in range(N) if cid(i) not in control]
    expected = sorted((c for c in contacted if c != cid(N - 1)), reverse=True)
    if cid(N - 1) in contacted:
        expected.append(cid(N - 1))
    got = by_id[by_id["contact"]].sort_values("priority").index.tolist()
    assert got == expected
    assert by_id.loc[expected[0], "priority"] == 1


def test_boundaries_and_bad_fraction(con):
    write_upstream(con)
    frame = rt.gather_inputs(con).frame
    with pytest.raises(ValueError, match="control_group_fraction"):
        rt.build_retention_actions(frame, 1.0)
    none_held = rt.build_retention_actions(frame, 0.0)
    assert none_held["contact"].all() and none_held["priority"].tolist() == list(range(1, N + 1))


def test_missing_inputs_are_notes_not_crashes(con):
    write_upstream(con, skip=("customer_ltv", "loyalty_tiers"))
    gathered = rt.gather_inputs(con)
    assert any("clv_12m" in n for n in gathered.notes) and any("tier" in n for n in gathered.notes)
    actions = rt.build_retention_actions(gathered.frame, 0.1, "2011-W49")
    assert len(actions) == N
    assert actions["value_at_risk"].isna().all() and actions["reward"].isna().all()
    # Without CLV the order falls back to churn probability.
    pri = actions[actions["contact"]].sort_values("priority")
    assert pri["churn_probability"].is_monotonic_decreasing


def test_no_population_at_all(con):
    gathered = rt.gather_inputs(con)
    assert gathered.population_table is None and gathered.notes
    assert rt.build_retention_actions(gathered.frame, 0.1).empty


def test_campaign_week_label():
    assert rt.campaign_week_of("2011-12-09") == "2011-W49"
    assert rt.campaign_week_of("2011-01-02") == "2010-W52"  # ISO week belongs to the previous year


def test_without_churn_scores_nobody_is_contacted(con):
    write_upstream(con, skip=("churn_scores", "customer_ltv"))
    gathered = rt.gather_inputs(con)
    assert gathered.population_table == "loyalty_tiers"
    actions = rt.build_retention_actions(gathered.frame, 0.1, "2011-W49")
    assert len(actions) == N and not actions["contact"].any()
    assert set(actions.loc[~actions["control_group"], "action"]) == {rt.NO_SCORE_ACTION}
    summary = rt.summarize(actions)
    assert summary["risk_band"].tolist() == ["(no score)"] and summary["customers"].tolist() == [N]
    # Written with its declared types: an all-NULL risk_band is still VARCHAR (not INTEGER).
    write_typed(con, "retention_actions", actions, rt.RETENTION_TYPES)
    assert con.execute("SELECT count(*) FROM retention_actions WHERE risk_band = 'High'").fetchone()[0] == 0
    types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                             "WHERE table_name = 'retention_actions'").fetchall())
    assert types["risk_band"] == "VARCHAR" and types["clv_12m"] == "DOUBLE" and types["priority"] == "INTEGER"
