"""Assets of the "actions" group: retention_actions and notification_outbox (thin glue)."""

import math

import dagster as dg
from dagster_duckdb import DuckDBResource

from customer_assets.actions import outbox as ob
from customer_assets.actions.figures import value_at_risk_figure
from customer_assets.actions import retention as rt
from customer_assets.actions.notifier import Notifier
from customer_assets.actions.inputs import write_typed
from customer_assets.common.db import replace_table, resolve_as_of, table_exists
from customer_assets.common.figure_cache import table_figure_png
from customer_assets.common.metadata import df_to_markdown, png_to_md, table_metadata
from customer_assets.resources import SourceConfig
from customer_assets.settings import AnalyticsSettings

GROUP = "actions"
UPSTREAM = ["churn_scores", "customer_ltv", "loyalty_tiers", "rfm_segments", "dim_customer"]

# The two blocking checks are check_specs of their assets: evaluated inside the asset's step on the
# same connection and on what the asset already holds (a separate check step costs more in Dagster
# bookkeeping than the check itself).
HOLDOUT_CHECK = "retention_control_group_holdout"
HOLDOUT_DESCRIPTION = ("The holdout is never contacted and its size matches the setting "
                       "(within 4 binomial standard deviations).")
OUTBOX_CHECK = "outbox_excludes_control_group"
OUTBOX_DESCRIPTION = "No control-group customer in the outbox; one message per idempotency key."


def _campaign_week(con, settings: AnalyticsSettings) -> str:
    if table_exists(con, "cleaned_transactions"):
        return rt.campaign_week_of(resolve_as_of(con, settings.as_of_date()))
    return rt.campaign_week_of(settings.as_of_date() or __import__("datetime").date.today())


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb", "pandas"},
    pool="duckdb",
    deps=UPSTREAM,
    description="Per customer: loyalty tier and reward, churn risk band and the seed's action for it, "
    "value at risk (churn probability x 12-month CLV), contact priority, and a stable 10% holdout "
    "control group that is never contacted.",
    check_specs=[dg.AssetCheckSpec(HOLDOUT_CHECK, asset="retention_actions", blocking=True,
                                   description=HOLDOUT_DESCRIPTION)],
)
def retention_actions(duckdb: DuckDBResource, settings: AnalyticsSettings) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        gathered = rt.inputs_sql(con)
        week = _campaign_week(con, settings)
        if gathered.frame is None:  # no population table: an empty, typed table
            empty = rt.build_retention_actions(rt.gather_inputs(con).frame, settings.control_group_fraction, week)
            write_typed(con, "retention_actions", empty, rt.RETENTION_TYPES)
        else:  # built in DuckDB: the same rows as rt.build_retention_actions (tested)
            sql, params = rt.retention_actions_sql(gathered.frame, settings.control_group_fraction, week)
            replace_table(con, "retention_actions", sql, params)
        actions = rt.summary_inputs(con)
        summary = rt.summarize(actions)
        md = table_metadata(con, "retention_actions", order_by="priority NULLS LAST, customer_id")
        # the report shows the same figure: rendered once per run (common/figure_cache)
        plot = png_to_md(table_figure_png(con, ("retention_actions",), value_at_risk_figure), "value at risk") \
            if len(actions) else None
    n = len(actions)
    # the frame holds every row of the table: the same counts as count(*) FILTER (...) in SQL
    control_group = actions["control_group"].fillna(False).astype(bool)
    check = retention_control_group_holdout(
        n, int(control_group.sum()), int((control_group & actions["contact"].fillna(False).astype(bool)).sum()),
        settings.control_group_fraction)
    metadata = {
        **md,
        "campaign_week": week,
        "population_from": str(gathered.population_table),
        "control_group_customers": int(actions["control_group"].sum()),
        "control_group_share": round(float(actions["control_group"].mean()), 4) if n else 0.0,
        "contacted_customers": int(actions["contact"].sum()),
        "total_value_at_risk": round(float(actions["value_at_risk"].sum(skipna=True)), 2),
        "by_risk_band": dg.MetadataValue.md(df_to_markdown(summary, floatfmt=",.2f")),
        "input_notes": dg.MetadataValue.md("\n".join(f"- {x}" for x in gathered.notes) or "all inputs present"),
    }
    if plot is not None:
        metadata["plot"] = dg.MetadataValue.md(plot)
    return dg.MaterializeResult(metadata=metadata, check_results=[check])


def retention_control_group_holdout(n: int, control: int, contacted_control: int,
                                    p: float) -> dg.AssetCheckResult:
    """The blocking check of retention_actions from its counts: customers, control-group customers,
    control-group customers marked for contact; `p` = settings.control_group_fraction."""
    tolerance = 4 * math.sqrt(max(p * (1 - p), 1e-12) / max(n, 1))
    share = control / n if n else 0.0
    passed = contacted_control == 0 and (n == 0 or abs(share - p) <= tolerance)
    return dg.AssetCheckResult(
        check_name=HOLDOUT_CHECK,
        passed=bool(passed),
        metadata={"customers": n, "control": control, "control_share": share, "setting": p,
                  "tolerance": tolerance, "control_marked_for_contact": contacted_control},
    )


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb", "twilio"},
    pool="duckdb",
    deps=[retention_actions],
    description="Messages to send this campaign week (customer, channel, text, idempotency key) "
    "with their delivery status. Dry run unless Twilio credentials are set; SMS only to High-risk "
    "customers with a phone in the contact file; never twice per key; failed sends retried next run.",
    check_specs=[dg.AssetCheckSpec(OUTBOX_CHECK, asset="notification_outbox", blocking=True,
                                   description=OUTBOX_DESCRIPTION)],
)
def notification_outbox(
    context: dg.AssetExecutionContext,
    duckdb: DuckDBResource,
    source: SourceConfig,
    notifier: Notifier,
) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        contacts, notes = ob.read_contacts(con, source.contacts)
        # built in DuckDB: the same rows as ob.build_outbox / ob.outbox_with_status (tested)
        building = "__notification_outbox_build"
        ob.build_outbox_table(con, contacts, building)
        try:
            sms = con.execute(f"SELECT * FROM {building} WHERE channel = 'sms' ORDER BY priority").df()
            report = ob.deliver(con, sms, contacts, notifier)
            replace_table(con, "notification_outbox", ob.outbox_with_status_sql(con, building, notifier.sending_enabled()))
        finally:
            con.execute(f"DROP TABLE IF EXISTS {building}")
        counts = ob.status_counts(con)
        md = table_metadata(con, "notification_outbox", order_by="priority")
        check = outbox_excludes_control_group(con)
    for e in report.errors[:20]:
        context.log.warning(f"SMS not sent to customer {e}")
    return dg.MaterializeResult(
        metadata={
            **md,
            "mode": report.mode,
            **{f"delivery_{k}": v for k, v in report.as_dict().items() if k != "mode"},
            "status_counts": dg.MetadataValue.md(df_to_markdown(counts, max_rows=20)),
            "notes": dg.MetadataValue.md("\n".join(f"- {x}" for x in notes)),
        },
        check_results=[check],
    )


def outbox_excludes_control_group(con) -> dg.AssetCheckResult:
    """The blocking check of notification_outbox, on the asset's connection (one query)."""
    control_in_outbox, dup_keys = con.execute(
        "SELECT (SELECT count(*) FROM notification_outbox o JOIN retention_actions r USING (customer_id) "
        "WHERE r.control_group), "
        "(SELECT count(*) - count(DISTINCT idempotency_key) FROM notification_outbox)"
    ).fetchone()
    return dg.AssetCheckResult(
        check_name=OUTBOX_CHECK,
        passed=bool(control_in_outbox == 0 and dup_keys == 0),
        metadata={"control_customers_in_outbox": control_in_outbox, "duplicate_keys": dup_keys},
    )


ASSETS = [retention_actions, notification_outbox]
CHECKS: list = []  # the two checks are check_specs of their assets (evaluated in the asset's step)
