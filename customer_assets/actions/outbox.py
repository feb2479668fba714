"""The notification outbox and its delivery log.

- `build_outbox`: one message per contacted customer (never the control group): channel, text,
  campaign week and an idempotency key = sha256(campaign week | customer | channel). High-risk
  customers with a phone number in the contact file get an SMS; everyone else is queued for the
  CRM's e-mail channel (this project sends no e-mail itself).
- `deliver`: sends the outbox's SMS through the Notifier and records every attempt in
  `notification_log` (a warehouse table that survives rebuilds of the outbox):
    * a key already `sent` is never sent again;
    * `failed` is retried on the next run (up to notifier.max_attempts);
    * a row is marked `in_flight` before the HTTP call; if a run dies between the call and the
      update, the row stays `in_flight` and is NOT retried automatically (the SMS may have gone
      out): it is counted in the metadata for a person to reconcile. Never twice beats never lost.
  Phone numbers are stored masked; no credential is ever written.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import duckdb
import pandas as pd

from customer_assets.actions.notifier import Notifier, mask_phone, normalize_phone
from customer_assets.common.db import quote_ident

LOG_DDL = """
CREATE TABLE IF NOT EXISTS notification_log (
    idempotency_key     VARCHAR PRIMARY KEY,
    customer_id         VARCHAR NOT NULL,
    channel             VARCHAR NOT NULL,
    campaign_week       VARCHAR,
    status              VARCHAR NOT NULL,   -- in_flight / sent / failed
    attempts            INTEGER NOT NULL,
    provider_message_id VARCHAR,
    last_error          VARCHAR,
    first_attempt_at    TIMESTAMP,
    last_attempt_at     TIMESTAMP
)
"""

# The notification_outbox table: column -> DuckDB type.
OUTBOX_TYPES = {
    "idempotency_key": "VARCHAR", "customer_id": "VARCHAR", "priority": "INTEGER", "channel": "VARCHAR",
    "risk_band": "VARCHAR", "tier": "VARCHAR", "text": "VARCHAR", "campaign_week": "VARCHAR",
    "phone_masked": "VARCHAR", "delivery_status": "VARCHAR", "attempts": "INTEGER",
    "provider_message_id": "VARCHAR", "last_error": "VARCHAR", "last_attempt_at": "TIMESTAMP",
}

TEMPLATES = {
    "High": "We miss you! As a {tier} member you get {reward} on your next order this week.",
    "Medium": "Thank you for shopping with us. Your {tier} benefits this month: {reward}.",
    "Low": "New picks chosen for you from what you love. Your {tier} benefit: {reward}.",
}
OPT_OUT = " Reply STOP to opt out."


def idempotency_key(campaign_week: str, customer_id: str, channel: str) -> str:
    return hashlib.sha256(f"{campaign_week}|{customer_id}|{channel}".encode()).hexdigest()[:32]


def message_text(risk_band: str, tier: Optional[str], reward: Optional[str]) -> str:
    template = TEMPLATES.get(risk_band, TEMPLATES["Low"])
    text = template.format(tier=tier or "valued", reward=reward or "a thank-you offer")
    return text + OPT_OUT


def read_contacts(con: duckdb.DuckDBPyConnection, path: Optional[str]) -> tuple[dict, list]:
    """customer_id -> E.164 phone from an optional CSV (columns customer_id, phone).

    Returns (contacts, notes). A missing or malformed file is a note, not an error."""
    if not path:
        return {}, ["no contact file configured (CUSTOMER_ASSETS_CONTACTS): no SMS recipients"]
    p = Path(path)
    if not p.exists():
        return {}, [f"contact file {p} does not exist: no SMS recipients"]
    df = con.execute(
        "SELECT * FROM read_csv(?, all_varchar = true, header = true)", [str(p)]
    ).df()
    cols = {c.lower().strip(): c for c in df.columns}
    if "customer_id" not in cols or "phone" not in cols:
        return {}, [f"contact file {p} needs columns customer_id and phone; it has {list(df.columns)}"]
    contacts, invalid = {}, 0
    for cid, raw in zip(df[cols["customer_id"]], df[cols["phone"]]):
        phone = normalize_phone(raw)
        if cid is None:
            continue
        if phone is None:
            invalid += 1
            continue
        contacts[str(cid).strip()] = phone
    notes = [f"contact file: {len(contacts)} valid phone numbers"]
    if invalid:
        notes.append(f"{invalid} contact rows without a valid E.164 phone number were ignored")
    return contacts, notes


def build_outbox(actions: pd.DataFrame, contacts: dict) -> pd.DataFrame:
    """Messages for contacted customers, in priority order. Control-group customers never appear."""
    cols = ["idempotency_key", "customer_id", "priority", "channel", "risk_band", "tier", "text",
            "campaign_week", "phone_masked"]
    todo = actions[actions["contact"] & ~actions["control_group"]].sort_values("priority")
    rows = []
    for r in todo.itertuples(index=False):
        phone = contacts.get(str(r.customer_id))
        channel = "sms" if (r.risk_band == "High" and phone) else "email"
        rows.append({
            "idempotency_key": idempotency_key(r.campaign_week, r.customer_id, channel),
            "customer_id": r.customer_id,
            "priority": r.priority,
            "channel": channel,
            "risk_band": r.risk_band,
            "tier": r.tier,
            "text": message_text(r.risk_band, r.tier, r.reward),
            "campaign_week": r.campaign_week,
            "phone_masked": mask_phone(phone) if channel == "sms" else None,
        })
    return pd.DataFrame(rows, columns=cols)


def _template_sql(template: str, fields: dict, params: list) -> str:
    """A str.format template as a SQL concatenation of its literal parts (parameters) and fields."""
    import string

    parts = []
    for literal, name, _spec, _conv in string.Formatter().parse(template):
        if literal:
            parts.append("?")
            params.append(literal)
        if name is not None:
            parts.append(fields[name])
    return " || ".join(parts) if parts else "''"


def build_outbox_table(con: duckdb.DuckDBPyConnection, contacts: dict, name: str,
                       actions: str = "retention_actions") -> None:
    """`build_outbox` in DuckDB: (re)creates TEMP table `name` with the same columns, values and
    row order as `build_outbox(SELECT * FROM actions, contacts)`, without pulling the customer
    table into pandas (the phone mask is computed in Python for the contact file's rows only)."""
    params: list = []
    fields = {"tier": "coalesce(nullif(a.tier, ''), 'valued')",
              "reward": "coalesce(nullif(a.reward, ''), 'a thank-you offer')"}
    low = _template_sql(TEMPLATES["Low"] + OPT_OUT, fields, params)
    # parameters in SQL text order: the CASE's WHEN keys and literals, then the ELSE (Low)
    case_params: list = []
    case_sql = []
    for band, template in TEMPLATES.items():
        p: list = [band]
        case_sql.append(f"WHEN ? THEN {_template_sql(template + OPT_OUT, fields, p)}")
        case_params += p
    text_sql = f"CASE a.risk_band {' '.join(case_sql)} ELSE {low} END"
    params = case_params + params
    rows = [(str(k), v, mask_phone(v) if v else None) for k, v in contacts.items()]
    contacts_df = pd.DataFrame(rows, columns=["customer_id", "phone", "phone_masked"], dtype=object)
    view = f"{name}_contacts"
    if len(contacts_df):
        con.register(view, contacts_df)
        contacts_sql = f"SELECT CAST(customer_id AS VARCHAR) AS customer_id, CAST(phone AS VARCHAR) AS phone, " \
                       f"CAST(phone_masked AS VARCHAR) AS phone_masked FROM {quote_ident(view)}"
    else:
        contacts_sql = ("SELECT CAST(NULL AS VARCHAR) AS customer_id, CAST(NULL AS VARCHAR) AS phone, "
                        "CAST(NULL AS VARCHAR) AS phone_masked WHERE false")
    try:
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE {quote_ident(name)} AS
            WITH m AS (
                SELECT a.*, {text_sql} AS text,
                       CASE WHEN a.risk_band = 'High' AND coalesce(c.phone, '') <> '' THEN 'sms' ELSE 'email' END
                           AS channel,
                       c.phone_masked AS contact_phone_masked
                FROM (SELECT * FROM {quote_ident(actions)} WHERE contact AND NOT control_group) a
                LEFT JOIN ({contacts_sql}) c ON c.customer_id = CAST(a.customer_id AS VARCHAR)
            )
            SELECT left(sha256(coalesce(CAST(campaign_week AS VARCHAR), 'None') || '|'
                               || CAST(customer_id AS VARCHAR) || '|' || channel), 32) AS idempotency_key,
                   customer_id, priority, channel, risk_band, tier, text, campaign_week,
                   CASE WHEN channel = 'sms' THEN contact_phone_masked END AS phone_masked
            FROM m ORDER BY priority, customer_id""", params)
    finally:
        if len(contacts_df):
            con.unregister(view)


def outbox_with_status_sql(con: duckdb.DuckDBPyConnection, outbox: str, sending: bool) -> str:
    """`outbox_with_status` as a SELECT over the table `outbox` (same columns and values)."""
    ensure_log(con)
    pending = "pending" if sending else "dry_run"
    casts = {
        "delivery_status": f"coalesce(l.status, CASE WHEN o.channel = 'email' THEN 'crm_email' ELSE '{pending}' END)",
        "attempts": "coalesce(l.attempts, 0)",
        "provider_message_id": "l.provider_message_id",
        "last_error": "l.last_error",
        "last_attempt_at": "l.last_attempt_at",
    }
    cols = ", ".join(f"CAST({casts.get(c, 'o.' + quote_ident(c))} AS {t}) AS {quote_ident(c)}"
                     for c, t in OUTBOX_TYPES.items())
    return (f"SELECT {cols} FROM {quote_ident(outbox)} o "
            f"LEFT JOIN notification_log l ON l.idempotency_key = o.idempotency_key "
            f"ORDER BY o.priority, o.customer_id")


@dataclass
class DeliveryReport:
    mode: str
    attempted: int = 0
    sent: int = 0
    failed: int = 0
    skipped_already_sent: int = 0
    skipped_in_flight: int = 0
    skipped_gave_up: int = 0
    skipped_run_cap: int = 0
    errors: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "errors"}


def ensure_log(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(LOG_DDL)


def _log_state(con, key: str) -> Optional[tuple]:
    return con.execute(
        "SELECT status, attempts FROM notification_log WHERE idempotency_key = ?", [key]
    ).fetchone()


def deliver(
    con: duckdb.DuckDBPyConnection, outbox: pd.DataFrame, contacts: dict, notifier: Notifier
) -> DeliveryReport:
    """Send the outbox's SMS (sending mode only), recording each attempt in notification_log."""
    ensure_log(con)
    report = DeliveryReport(mode=notifier.mode_reason())
    if not notifier.sending_enabled():
        return report
    for r in outbox[outbox["channel"] == "sms"].sort_values("priority").itertuples(index=False):
        state = _log_state(con, r.idempotency_key)
        if state is not None:
            status, attempts = state
            if status == "sent":
                report.skipped_already_sent += 1
                continue
            if status == "in_flight":
                report.skipped_in_flight += 1
                continue
            if attempts >= notifier.max_attempts:
                report.skipped_gave_up += 1
                continue
        if report.attempted >= notifier.max_sends_per_run:
            report.skipped_run_cap += 1
            continue
        now = dt.datetime.now()
        con.execute(
            """INSERT INTO notification_log VALUES (?, ?, ?, ?, 'in_flight', 1, NULL, NULL, ?, ?)
               ON CONFLICT (idempotency_key) DO UPDATE SET status = 'in_flight',
                   attempts = notification_log.attempts + 1, last_attempt_at = excluded.last_attempt_at""",
            [r.idempotency_key, r.customer_id, r.channel, r.campaign_week, now, now],
        )
        report.attempted += 1
        result = notifier.send_sms(contacts[str(r.customer_id)], r.text)
        if result.ok:
            report.sent += 1
        else:
            report.failed += 1
            report.errors.append(f"{r.customer_id}: {result.error}")
        con.execute(
            "UPDATE notification_log SET status = ?, provider_message_id = ?, last_error = ?, "
            "last_attempt_at = ? WHERE idempotency_key = ?",
            ["sent" if result.ok else "failed", result.provider_message_id, result.error,
             dt.datetime.now(), r.idempotency_key],
        )
    return report


def outbox_with_status(con: duckdb.DuckDBPyConnection, outbox: pd.DataFrame, sending: bool) -> pd.DataFrame:
    """The outbox joined with its delivery status from notification_log."""
    ensure_log(con)
    log = con.execute(
        "SELECT idempotency_key, status, attempts, provider_message_id, last_error, last_attempt_at "
        "FROM notification_log"
    ).df()
    out = outbox.merge(log, on="idempotency_key", how="left")
    pending = "pending" if sending else "dry_run"
    out["delivery_status"] = out["status"].fillna(
        pd.Series(["crm_email" if c == "email" else pending for c in out["channel"]], index=out.index)
    )
    out["attempts"] = out["attempts"].fillna(0).astype(int)
    return out.drop(columns=["status"])


def status_counts(con: duckdb.DuckDBPyConnection, table: str = "notification_outbox") -> pd.DataFrame:
    return con.execute(
        f"SELECT channel, delivery_status, count(*) AS messages FROM {quote_ident(table)} "
        "GROUP BY ALL ORDER BY channel, delivery_status"
    ).df()
