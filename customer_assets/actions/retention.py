"""Retention actions: one row per current customer, what to do with them and in which order.

- loyalty tier and its reward (loyalty_tiers),
- churn risk band and the seed's action for it (churn_scores, settings.RISK_BAND_ACTIONS),
- value at risk = churn probability x 12-month CLV (customer_ltv), and a priority order by it,
- a holdout control group that is never contacted, so the actions' effect can be measured later.

The control group is a stable hash of the customer id (sha256 of a salted id mapped to [0, 1)),
not a random draw: the same customer is in or out on every run, on every machine, and raising the
fraction only adds customers to the holdout (never swaps them).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd

from customer_assets.common.db import quote_ident, table_columns
from customer_assets.settings import LOYALTY_REWARDS, RISK_BAND_ACTIONS

HOLDOUT_SALT = "customer_assets.holdout.v1"
CONTROL_ACTION = "Control group: no contact (holdout to measure the actions' effect)"
NO_SCORE_ACTION = "No churn score: not contacted"

# Where each column comes from: (table, column, alias, type). Tables are optional; a missing
# one gives a typed NULL column.
INPUT_COLUMNS = [
    ("dim_customer", "country", "country", "VARCHAR"),
    ("rfm_segments", "segment", "segment", "VARCHAR"),
    ("loyalty_tiers", "tier", "tier", "VARCHAR"),
    ("loyalty_tiers", "reward", "reward", "VARCHAR"),
    ("churn_scores", "churn_probability", "churn_probability", "DOUBLE"),
    ("churn_scores", "risk_band", "risk_band", "VARCHAR"),
    ("churn_scores", "reason_1", "reason_1", "VARCHAR"),
    ("churn_scores", "reason_2", "reason_2", "VARCHAR"),
    ("churn_scores", "reason_3", "reason_3", "VARCHAR"),
    ("customer_ltv", "clv_12m", "clv_12m", "DOUBLE"),
    ("customer_ltv", "value_decile", "value_decile", "INTEGER"),
]
# The population: the first of these tables that exists (churn_scores scores every current customer).
POPULATION_TABLES = ["churn_scores", "customer_ltv", "loyalty_tiers", "rfm_segments", "dim_customer"]


# The retention_actions table: column -> DuckDB type.
RETENTION_TYPES = {
    "customer_id": "VARCHAR", "priority": "INTEGER", "control_group": "BOOLEAN", "contact": "BOOLEAN",
    "risk_band": "VARCHAR", "churn_probability": "DOUBLE", "action": "VARCHAR", "tier": "VARCHAR",
    "reward": "VARCHAR", "clv_12m": "DOUBLE", "value_at_risk": "DOUBLE", "value_decile": "INTEGER",
    "segment": "VARCHAR", "country": "VARCHAR", "reason_1": "VARCHAR", "reason_2": "VARCHAR",
    "reason_3": "VARCHAR", "campaign_week": "VARCHAR",
}


def holdout_bucket(customer_id: str) -> float:
    """A stable number in [0, 1) for a customer id (same on every run and machine)."""
    digest = hashlib.sha256(f"{HOLDOUT_SALT}:{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def in_control_group(customer_id: str, fraction: float) -> bool:
    return holdout_bucket(customer_id) < fraction


@dataclass
class RetentionResult:
    frame: object                            # a DataFrame (gather_inputs) or a SELECT (inputs_sql)
    notes: list = field(default_factory=list)
    population_table: str | None = None


def inputs_sql(con: duckdb.DuckDBPyConnection) -> RetentionResult:
    """The SELECT gathering one row per customer with every available input column (missing ones
    are NULL + a note), as `frame` (a SQL string; None when no population table exists)."""
    notes = []
    population = next((t for t in POPULATION_TABLES if "customer_id" in table_columns(con, t)), None)
    if population is None:
        return RetentionResult(None, [f"none of {', '.join(POPULATION_TABLES)} exists: no customers to act on"])
    selects, joins, joined, columns = [], [], {}, {}
    for table, column, alias, sql_type in INPUT_COLUMNS:
        if table not in columns:
            columns[table] = table_columns(con, table)
        cols = columns[table]
        if column in cols and "customer_id" in cols:
            if table not in joined:
                joined[table] = f"t{len(joined)}"
                # One row per customer even if an upstream table had duplicates.
                joins.append(
                    f"LEFT JOIN (SELECT * FROM {quote_ident(table)} "
                    f"QUALIFY row_number() OVER (PARTITION BY customer_id ORDER BY customer_id) = 1) "
                    f"{joined[table]} ON {joined[table]}.customer_id = p.customer_id"
                )
            selects.append(f"CAST({joined[table]}.{quote_ident(column)} AS {sql_type}) AS {alias}")
        else:
            why = "table missing" if not cols else f"no column {column}"
            notes.append(f"{alias}: {table} unavailable ({why})")
            selects.append(f"CAST(NULL AS {sql_type}) AS {alias}")
    sql = (
        f"SELECT p.customer_id, {', '.join(selects)} FROM "
        f"(SELECT DISTINCT CAST(customer_id AS VARCHAR) AS customer_id FROM {quote_ident(population)}) p "
        + " ".join(joins)
    )
    return RetentionResult(sql, notes, population)


def gather_inputs(con: duckdb.DuckDBPyConnection) -> RetentionResult:
    """One row per customer with every available input column (missing ones are NULL + a note)."""
    gathered = inputs_sql(con)
    if gathered.frame is None:
        return RetentionResult(pd.DataFrame(columns=["customer_id"] + [c[2] for c in INPUT_COLUMNS]),
                               gathered.notes)
    return RetentionResult(con.execute(gathered.frame).df(), gathered.notes, gathered.population_table)


def _case(column: str, mapping: dict, params: list) -> str:
    """CASE column WHEN key THEN value ... END (NULL when no key matches), values as parameters."""
    whens = []
    for k, v in mapping.items():
        whens.append("WHEN ? THEN ?")
        params += [k, v]
    return f"CASE {column} {' '.join(whens)} END" if whens else "CAST(NULL AS VARCHAR)"


def retention_actions_sql(inputs: str, control_fraction: float, campaign_week: str | None = None) -> tuple:
    """(SELECT, params) computing in DuckDB exactly what `build_retention_actions` computes in pandas
    from the rows of `inputs` (the `inputs_sql` SELECT): same columns, types, values and row order.
    The holdout bucket is the same number: the first 8 bytes of sha256(salt:customer_id) as an
    unsigned integer / 2**64 (rounded to a double, as Python's int / int does)."""
    if not 0.0 <= control_fraction < 1.0:
        raise ValueError(f"control_group_fraction must be in [0, 1), got {control_fraction}")
    params: list = []
    reward_of_tier = _case("tier", LOYALTY_REWARDS, params)
    band_action = _case("risk_band", RISK_BAND_ACTIONS, params)
    params += [HOLDOUT_SALT, float(control_fraction), CONTROL_ACTION, NO_SCORE_ACTION, campaign_week]
    casts = ", ".join(f"CAST({quote_ident(c)} AS {t}) AS {quote_ident(c)}" for c, t in RETENTION_TYPES.items())
    sql = f"""
        WITH i AS ({inputs}),
        d AS (
            SELECT * REPLACE (coalesce(customer_id, 'None') AS customer_id,
                              coalesce(reward, {reward_of_tier}) AS reward),
                   {band_action} AS band_action
            FROM i
        ),
        h AS (
            SELECT *,
                   CAST(CAST('0x' || left(sha256(? || ':' || customer_id), 16) AS UBIGINT) AS DOUBLE)
                       / 18446744073709551616.0 < ? AS control_group,
                   churn_probability * CASE WHEN clv_12m < 0 THEN 0.0 ELSE clv_12m END AS value_at_risk
            FROM d
        ),
        a AS (
            SELECT *,
                   CASE WHEN control_group THEN ? ELSE coalesce(band_action, ?) END AS action,
                   (NOT control_group) AND band_action IS NOT NULL AS contact,
                   ? AS campaign_week
            FROM h
        ),
        r AS (
            SELECT *,
                   CASE WHEN contact THEN row_number() OVER (
                       PARTITION BY contact
                       ORDER BY value_at_risk DESC NULLS LAST, churn_probability DESC NULLS LAST, customer_id
                   ) END AS priority
            FROM a
        )
        SELECT {casts} FROM r ORDER BY priority NULLS LAST, customer_id
    """
    return sql, params


def build_retention_actions(
    inputs: pd.DataFrame, control_fraction: float, campaign_week: str | None = None
) -> pd.DataFrame:
    """The retention action table from the gathered inputs (pure pandas, one row per customer)."""
    if not 0.0 <= control_fraction < 1.0:
        raise ValueError(f"control_group_fraction must be in [0, 1), got {control_fraction}")
    df = inputs.copy()
    df["customer_id"] = df["customer_id"].astype(str)
    for c in ("churn_probability", "clv_12m"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    # A tier without a reward column still gets the seed's reward.
    df["reward"] = df["reward"].where(df["reward"].notna(), df["tier"].map(LOYALTY_REWARDS))
    df["control_group"] = [in_control_group(c, control_fraction) for c in df["customer_id"]]
    df["value_at_risk"] = df["churn_probability"] * df["clv_12m"].clip(lower=0)
    band_action = df["risk_band"].map(RISK_BAND_ACTIONS)
    df["action"] = np.where(
        df["control_group"], CONTROL_ACTION, band_action.fillna(NO_SCORE_ACTION)
    )
    df["contact"] = (~df["control_group"]) & band_action.notna()
    # Priority among the customers we contact: highest value at risk first; customers without a
    # CLV follow, by churn probability; ties by customer id so the order is deterministic.
    contacted = df[df["contact"]].sort_values(
        ["value_at_risk", "churn_probability", "customer_id"],
        ascending=[False, False, True],
        na_position="last",
    )
    df["priority"] = pd.Series(pd.NA, index=df.index, dtype="Int64")
    df.loc[contacted.index, "priority"] = np.arange(1, len(contacted) + 1)
    df["campaign_week"] = campaign_week
    out = df[list(RETENTION_TYPES)].sort_values(["priority", "customer_id"], na_position="last").reset_index(drop=True)
    return out


def campaign_week_of(day) -> str:
    """ISO week label of a date, e.g. 2011-W49: the campaign a message belongs to."""
    iso = pd.Timestamp(day).isocalendar()
    return f"{iso.year}-W{iso.week:02d}"


def summary_inputs(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The retention_actions columns `summarize` reads (and the asset's counts), one row per customer."""
    return con.execute(
        "SELECT customer_id, risk_band, contact, control_group, value_at_risk FROM retention_actions").df()


def summarize(actions: pd.DataFrame) -> pd.DataFrame:
    """Customers, contacted, control and value at risk per risk band."""
    if actions.empty:
        return pd.DataFrame(columns=["risk_band", "customers", "contacted", "control", "value_at_risk"])
    g = actions.assign(risk_band=actions["risk_band"].astype(object).fillna("(no score)")).groupby("risk_band")
    out = g.agg(
        customers=("customer_id", "count"),
        contacted=("contact", "sum"),
        control=("control_group", "sum"),
        value_at_risk=("value_at_risk", "sum"),
    ).reset_index()
    order = {"High": 0, "Medium": 1, "Low": 2}
    return out.sort_values("risk_band", key=lambda s: s.map(order).fillna(9)).reset_index(drop=True)
