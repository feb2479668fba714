"""The report's sections. Each reads its warehouse tables, and degrades to a clear note when an
input table (or a column it needs) is missing. Charts are inline base64 PNGs.

A section returns a `Section`: title, HTML body, a few markdown lines for the asset's metadata,
`facts` (numbers the recommendations are written from) and `missing` (why it could not be drawn).
"""

from __future__ import annotations

import base64
import html
import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Optional

import duckdb
import numpy as np
import pandas as pd

from customer_assets.actions.figures import value_at_risk_figure
from customer_assets.common import db as _db
from customer_assets.common.db import quote_ident
from customer_assets.common.figure_cache import table_figure_png
from customer_assets.common.metadata import fig_to_png_bytes
from customer_assets.common.plotting import plt
from customer_assets.customers.figures import cohort_heatmap_figure, segments_figure
from customer_assets.ltv.figures import clv_decile_figure
from customer_assets.monitoring.figures import psi_figure
from customer_assets.warehouse.figures import region_figure, top_products_figure, trend_figure

BLUE, RED, GREY = "#2e86c1", "#c0392b", "#95a5a6"


@dataclass
class Section:
    key: str
    title: str
    body: str = ""
    md: list = field(default_factory=list)
    facts: dict = field(default_factory=dict)
    missing: Optional[str] = None


# --- the warehouse catalog, read once per report ---------------------------------------------
# The sections ask ~40 times whether a table exists and which columns it has; while build_report
# runs (the tables do not change), one information_schema query answers all of them.

_CATALOG: dict = {}  # id(con) -> {table: [columns in order]}


@contextmanager
def catalog_cache(con: duckdb.DuckDBPyConnection):
    """Within the block, table_exists / table_columns / read_optional on `con` use one catalog read."""
    tables: dict = {}
    for table, column in con.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'main' ORDER BY table_name, ordinal_position"
    ).fetchall():
        tables.setdefault(table, []).append(column)
    _CATALOG[id(con)] = tables
    try:
        yield
    finally:
        _CATALOG.pop(id(con), None)


def table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    cached = _CATALOG.get(id(con))
    return name in cached if cached is not None else _db.table_exists(con, name)


def table_columns(con: duckdb.DuckDBPyConnection, name: str) -> list:
    cached = _CATALOG.get(id(con))
    return list(cached.get(name, [])) if cached is not None else _db.table_columns(con, name)


def read_optional(con: duckdb.DuckDBPyConnection, name: str, sql_tail: str = "") -> Optional[pd.DataFrame]:
    """`SELECT * FROM name <sql_tail>` as a DataFrame, or None when the table does not exist."""
    if not table_exists(con, name):
        return None
    return con.execute(f"SELECT * FROM {quote_ident(name)} {sql_tail}").df()


# --- small HTML helpers ----------------------------------------------------------------------

def esc(v) -> str:
    return html.escape("" if v is None else str(v))


def fmt(v, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        return f"{v:,.{digits}f}"
    if isinstance(v, pd.Timestamp):
        return v.strftime("%Y-%m-%d")
    return str(v)


def html_table(df: pd.DataFrame, max_rows: int = 15, digits: int = 2) -> str:
    if df is None or df.empty:
        return "<p class='note'>(no rows)</p>"
    df = df.head(max_rows)
    head = "".join(f"<th>{esc(c)}</th>" for c in df.columns)
    body = "".join(
        "<tr>" + "".join(
            f"<td class='{'num' if isinstance(v, (int, float, np.number)) and not isinstance(v, bool) else ''}'>"
            f"{esc(fmt(v, digits))}</td>"
            for v in row
        ) + "</tr>"
        for row in df.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def img(fig, alt: str) -> str:
    return img_png(fig_to_png_bytes(fig, dpi=80), alt)


def img_png(png: bytes, alt: str) -> str:
    """PNG bytes as an inline image. The figures the assets draw from their own table (sales trend,
    regions, segments, cohorts) come from common/figure_cache: the same picture as in the asset's
    metadata, rendered once per run."""
    return f"<img alt='{esc(alt)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'/>"


def note(text: str) -> str:
    return f"<p class='note'>{esc(text)}</p>"


def missing_section(key: str, title: str, table: str, what: str) -> Section:
    why = f"{table} is not in the warehouse (materialize it first)" if table else what
    return Section(key, title, note(f"Not available: {why}."), missing=why)


def pick(cols, *candidates) -> Optional[str]:
    """The first candidate column present (exact name, then substring)."""
    low = {c.lower(): c for c in cols}
    for cand in candidates:
        if cand in low:
            return low[cand]
    for cand in candidates:
        for lc, c in low.items():
            if cand in lc:
                return c
    return None


# --- sections ---------------------------------------------------------------------------------

# What the headline counts are, over every cleaned line (headline_counts reads the same from the
# feature base; the test compares the two)
HEADLINE_SQL = ("SELECT count(DISTINCT customer_id), count(DISTINCT order_id), sum(line_total), count(*), "
                "min(order_date), max(order_date) FROM cleaned_transactions")


def headline_counts(con: duckdb.DuckDBPyConnection) -> tuple:
    """(customers, orders, revenue, lines, first date, last date) of cleaned_transactions, read from
    the feature base (customers.features, brought up to date first; the customer features of the
    same run use it): order_days holds every line's customer, order, date and value summed per
    order, customer_days the line count per customer and day. At N=20 that is ~0.4 M rows instead
    of a count of distinct customers and orders over 8 M lines (0.45 s of the report, the run's
    last step). Cleaned lines all have a customer (a line without one is quarantined), so both
    tables hold every line; the revenue is the same sum added up in another order."""
    from customer_assets.customers.features import ensure_feature_base

    p = ensure_feature_base(con).prefix
    return con.execute(
        f"""SELECT o.customers, o.orders, o.revenue, d.lines, o.first, o.last
            FROM (SELECT count(DISTINCT customer_id) AS customers, count(DISTINCT order_id) AS orders,
                         sum(order_value) AS revenue, min(order_date) AS first, max(order_date) AS last
                  FROM {p}order_days) o,
                 (SELECT CAST(coalesce(sum(n_lines), 0) AS BIGINT) AS lines FROM {p}customer_days) d"""
    ).fetchone()


def kpis(con: duckdb.DuckDBPyConnection) -> Section:
    title = "Headline KPIs"
    if not table_exists(con, "cleaned_transactions"):
        return missing_section("kpis", title, "cleaned_transactions", "")
    customers, orders, revenue, lines, first, last = headline_counts(con)
    facts = {
        "customers": customers, "orders": orders, "revenue": float(revenue or 0), "lines": lines,
        "first_date": str(first), "last_date": str(last),
        "aov": float(revenue or 0) / orders if orders else None,
        "orders_per_customer": orders / customers if customers else None,
    }
    if table_exists(con, "quarantined_transactions"):
        facts["quarantined"] = con.execute("SELECT count(*) FROM quarantined_transactions").fetchone()[0]
    if "value_at_risk" in table_columns(con, "retention_actions"):
        scored, high, var = con.execute(
            "SELECT count(risk_band), count(*) FILTER (risk_band = 'High'), sum(value_at_risk) FROM retention_actions"
        ).fetchone()
        if scored:  # without churn scores there is no risk to show (not "0 at risk")
            facts["high_risk_customers"] = high
        if var is not None:
            facts["value_at_risk"] = float(var)
    if "clv_12m" in table_columns(con, "customer_ltv"):
        facts["clv_12m_total"] = float(con.execute("SELECT sum(clv_12m) FROM customer_ltv").fetchone()[0] or 0)
    tiles = [
        ("Revenue", f"£{facts['revenue']:,.0f}"), ("Customers", f"{customers:,}"),
        ("Orders", f"{orders:,}"), ("Average order value", f"£{facts['aov']:,.2f}" if orders else "-"),
        ("Orders per customer", f"{facts['orders_per_customer']:.2f}" if customers else "-"),
        ("Period", f"{first} to {last}"),
    ]
    if "quarantined" in facts:
        tiles.append(("Quarantined rows", f"{facts['quarantined']:,}"))
    if "high_risk_customers" in facts:
        tiles.append(("High churn risk", f"{facts['high_risk_customers']:,}"))
    if "value_at_risk" in facts:
        tiles.append(("Value at risk (12m)", f"£{facts['value_at_risk']:,.0f}"))
    if "clv_12m_total" in facts:
        tiles.append(("Predicted CLV, 12 months", f"£{facts['clv_12m_total']:,.0f}"))
    body = "<div class='tiles'>" + "".join(
        f"<div class='tile'><div class='k'>{esc(k)}</div><div class='v'>{esc(v)}</div></div>" for k, v in tiles
    ) + "</div>"
    md = [f"- **{k}**: {v}" for k, v in tiles]
    return Section("kpis", title, body, md, facts)


def sales_trend(con) -> Section:
    title = "Sales trend"
    df = read_optional(con, "sales_trends")
    if df is None:
        return missing_section("sales_trend", title, "sales_trends", "")
    date_col = next((c for c in df.columns if pd.api.types.is_datetime64_any_dtype(df[c])), None)
    if date_col is None:
        date_col = pick(df.columns, "period_start", "period", "month", "week", "date")
    rev = pick(df.columns, "revenue", "sales")
    grain = pick(df.columns, "grain", "granularity", "period_type")
    if date_col is None or rev is None:
        return missing_section("sales_trend", title, None, f"sales_trends has no date/revenue column ({list(df.columns)})")
    if grain is not None and df[grain].astype(str).str.lower().str.startswith("month").any():
        df = df[df[grain].astype(str).str.lower().str.startswith("month")]
    df = df.sort_values(date_col)
    facts = {}
    md = []
    if len(df) >= 2:
        best = df.loc[df[rev].idxmax()]
        facts = {"best_period": str(pd.Timestamp(best[date_col]).date()), "best_revenue": float(best[rev])}
        md.append(f"- Best period {facts['best_period']}: £{facts['best_revenue']:,.0f}")
    cols = [c for c in [date_col, rev, pick(df.columns, "orders"), pick(df.columns, "active_customers", "customers"),
                        pick(df.columns, "avg_order_value", "aov")] if c]
    body = img_png(table_figure_png(con, ("sales_trends",), trend_figure), "sales trend") + \
        html_table(df[list(dict.fromkeys(cols))].tail(13), 13)
    last_date = _last_order_date(con)
    if last_date is not None and len(df):
        last_start = pd.Timestamp(df[date_col].iloc[-1])
        if (last_start + pd.offsets.MonthEnd(0)).date() > last_date:
            body += note(f"The last period ({last_start.date()}) is partial: data ends {last_date}.")
            facts["last_period_partial"] = True
    return Section("sales_trend", title, body, md, facts)


def _last_order_date(con):
    if not table_exists(con, "cleaned_transactions"):
        return None
    return con.execute("SELECT max(order_date) FROM cleaned_transactions").fetchone()[0]


def _barh(labels, values, title: str, log: bool = False) -> str:
    """A horizontal bar chart, largest on top, as an inline image."""
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.barh(list(labels)[::-1], list(values)[::-1], color=BLUE)
    ax.set_title(title)
    if log:
        ax.set_xscale("log")
    return img(fig, title)


def cancellations(con, key: str, ids: list, measure: str) -> Optional[pd.Series]:
    """Cancelled amount (positive) per product_id / customer_id for `ids`, from quarantined
    cancellation lines (`measure`: quantity or line_total); None without a quarantine table."""
    if "reason" not in table_columns(con, "quarantined_transactions") or not ids:
        return None
    df = con.execute(
        f"""SELECT CAST({key} AS VARCHAR) AS k, -sum({measure}) AS cancelled
            FROM quarantined_transactions
            WHERE reason = 'cancellation' AND CAST({key} AS VARCHAR) IN (SELECT unnest(?))
            GROUP BY 1""",
        [ids],
    ).df()
    return df.set_index("k")["cancelled"].astype(float)


def top_products(con) -> Section:
    title = "Top products"
    df = read_optional(con, "top_products")
    if df is None:
        return missing_section("top_products", title, "top_products", "")
    rev = pick(df.columns, "revenue")
    name = pick(df.columns, "product_name", "description", "product_id")
    if rev is None or name is None:
        return missing_section("top_products", title, None, f"top_products has no revenue/name column ({list(df.columns)})")
    units = pick(df.columns, "units", "quantity")
    keep = [c for c in [pick(df.columns, "product_id"), name, units, rev] if c]
    top = df.sort_values(rev, ascending=False).drop_duplicates(subset=[name])[list(dict.fromkeys(keep))].head(10)
    flagged = []
    pid = pick(top.columns, "product_id")
    if pid and units and len(top):
        cancelled = cancellations(con, "product_id", top[pid].astype(str).tolist(), "quantity")
        if cancelled is not None:
            top["cancelled_units"] = top[pid].astype(str).map(cancelled).fillna(0.0)
            flagged = top.loc[top["cancelled_units"] > 0.5 * top[units], name].astype(str).tolist()
    if {"product_id", "product_name", "revenue"} <= set(df.columns):  # the star's table: the asset's figure
        chart = img_png(table_figure_png(con, ("top_products",), top_products_figure), "Top 10 products by revenue")
    else:
        chart = _barh(top[name].astype(str).str[:40], top[rev], "Top 10 products by revenue")
    body = chart + html_table(top, 10)
    if flagged:
        body += note("Gross of cancellations (cancelled lines are quarantined, not netted): most units of "
                     + ", ".join(flagged) + " were cancelled, so their rank overstates real sales.")
    md = [f"- Top product by revenue: {top.iloc[0][name]} (£{top.iloc[0][rev]:,.0f}"
          + (", but most of its units were cancelled)" if str(top.iloc[0][name]) in flagged else ")")] if len(top) else []
    return Section("top_products", title, body, md, {"top_product": str(top.iloc[0][name]) if len(top) else None})


def revenue_by_region(con) -> Section:
    title = "Revenue by region"
    df = read_optional(con, "revenue_by_region")
    if df is None:
        return missing_section("revenue_by_region", title, "revenue_by_region", "")
    region = pick(df.columns, "country", "region")
    rev = pick(df.columns, "revenue")
    if region is None or rev is None:
        return missing_section("revenue_by_region", title, None, f"revenue_by_region has no region/revenue column")
    df = df.sort_values(rev, ascending=False)
    total = df[rev].sum()
    top = df.head(10)
    lead_share = float(df.iloc[0][rev] / total) if total else 0.0
    facts = {"top_region": str(df.iloc[0][region]), "top_region_share": lead_share, "regions": len(df)}
    md = [f"- {facts['top_region']} brings {lead_share:.0%} of revenue ({len(df)} countries)"]
    chart = img_png(table_figure_png(con, ("revenue_by_region",), region_figure), "revenue by region")
    return Section("revenue_by_region", title, chart + html_table(top, 10), md, facts)


def segments(con) -> Section:
    title = "Customer segments (RFM)"
    cols = table_columns(con, "rfm_segments")
    if "segment" not in cols:
        return missing_section("segments", title, "rfm_segments" if not cols else None, "rfm_segments has no segment column")
    money = "monetary" if "monetary" in cols else "NULL"
    recency = "recency_days" if "recency_days" in cols else "NULL"
    df = con.execute(
        f"""SELECT segment, count(*) AS customers, sum({money}) AS revenue,
                   avg({money}) AS avg_revenue, median({recency}) AS median_recency_days
            FROM rfm_segments GROUP BY segment ORDER BY revenue DESC NULLS LAST, customers DESC"""
    ).df()
    df["customer_share"] = df["customers"] / df["customers"].sum()
    if df["revenue"].notna().any():
        df["revenue_share"] = df["revenue"] / df["revenue"].sum()
    facts = {"segments": df.to_dict("records")}
    md = [f"- {r.segment}: {r.customers:,} customers" + (f", {r.revenue_share:.0%} of revenue" if "revenue_share" in df else "")
          for r in df.head(5).itertuples()]
    chart = img_png(table_figure_png(con, ("rfm_segments",), segments_figure), "segments")
    return Section("segments", title, chart + html_table(df, 15), md, facts)


def cohorts(con) -> Section:
    title = "Cohort retention"
    df = read_optional(con, "cohort_retention")
    if df is None:
        return missing_section("cohorts", title, "cohort_retention", "")
    need = {"cohort_month", "months_since_acquisition", "retention_pct"}
    if not need <= set(df.columns):
        return missing_section("cohorts", title, None, f"cohort_retention lacks {sorted(need - set(df.columns))}")
    curve, excluded = retention_curve(df, _last_order_date(con))
    facts = {f"m{m}": float(curve[m]) for m in (1, 3, 6, 12) if m in curve.index}
    scale = 100.0 if df["retention_pct"].max() > 1.5 else 1.0  # percent or fraction
    facts["scale"] = scale
    md = [f"- Average retention month {m[1:]}: {v / scale:.0%}" for m, v in facts.items() if m.startswith("m")]
    body = img_png(table_figure_png(con, ("cohort_retention",), cohort_heatmap_figure), "cohort heatmap")
    if excluded:
        body += note("Averages (recommendations) leave out " + "; ".join(excluded) + ".")
    curve_df = curve.rename("avg_retention_pct").reset_index().head(13).T
    curve_df.columns = [str(int(c)) for c in curve_df.iloc[0]]
    body += "<h3>Average retention by months since acquisition</h3>" + html_table(curve_df.iloc[1:], 1, 1)
    return Section("cohorts", title, body, md, facts)


def retention_curve(df: pd.DataFrame, last_date) -> tuple[pd.Series, list]:
    """Mean retention by months since acquisition (month 0 excluded), over the cohorts that
    observed that month. Left out: the first cohort when there are 4 or more (the data's first
    month holds every customer acquired before the data starts, not one acquisition month) and
    cells of a calendar month the data covers only partly."""
    excluded = []
    cohorts = sorted(df["cohort_month"].unique())
    use = df[df["months_since_acquisition"] > 0]
    if len(cohorts) >= 4:
        use = use[use["cohort_month"] != cohorts[0]]
        excluded.append(f"the first cohort ({str(pd.Timestamp(cohorts[0]).date())[:7]}: customers acquired "
                        "before the data starts)")
    if last_date is not None:
        month_start = pd.Timestamp(last_date).replace(day=1)
        if (month_start + pd.offsets.MonthEnd(0)).date() > last_date:
            start = pd.to_datetime(use["cohort_month"])
            cal = start.dt.year * 12 + start.dt.month - 1 + use["months_since_acquisition"]
            use = use[cal != month_start.year * 12 + month_start.month - 1]
            excluded.append(f"the partial month {str(month_start.date())[:7]}")
    return use.groupby("months_since_acquisition")["retention_pct"].mean(), excluded


def reliability_on_matured_window(con, horizon_days: int) -> tuple[Optional[pd.DataFrame], str]:
    """Recompute the churn champion's calibration from the data: its scores at as_of - horizon
    (the latest snapshot whose outcome window has fully passed) against what customers then did.

    Uses the churn stage's own feature, label and metric functions and loads the model only
    through the registry (hash verified). Returns (bins, description) or (None, why not)."""
    from customer_assets.churn.metrics import expected_calibration_error, reliability_table
    from customer_assets.monitoring.drift import matured_window_scores
    from customer_assets.registry import ArtifactError, load_model

    if not table_exists(con, "model_registry") or not table_exists(con, "cleaned_transactions"):
        return None, "no model_registry / cleaned_transactions"
    try:
        loaded = load_model(con, "churn_model")
    except ArtifactError as e:
        return None, str(e)
    first, last = con.execute("SELECT min(order_date), max(order_date) FROM cleaned_transactions").fetchone()
    snapshot = last - pd.Timedelta(days=horizon_days).to_pytimedelta()
    if snapshot <= first:
        return None, f"no matured window: {last} - {horizon_days} days is not after the first order {first}"
    # the same window and champion as drift_report's AUC: scored once per run (cached in-process)
    df, p = matured_window_scores(con, loaded, snapshot, horizon_days)
    if p is None:
        missing = [f for f in loaded.obj["features"] if f not in df.columns]
        raise KeyError(f"{missing} not in the features at {snapshot}" if missing else f"no customers at {snapshot}")
    bins = reliability_table(df["churned"].to_numpy(), p).rename(
        columns={"mean_predicted": "predicted", "observed_rate": "observed"})
    ece = expected_calibration_error(df["churned"].to_numpy(), p)
    return bins, (f"champion v{loaded.version} scored at {snapshot}, outcomes to {last} "
                  f"({len(df):,} customers, observed churn rate {df['churned'].mean():.2f}, ECE {ece:.3f})")


def churn(con, horizon_days: int = 90) -> Section:
    title = "Churn risk"
    cols = table_columns(con, "churn_scores")
    if "churn_probability" not in cols:
        return missing_section("churn", title, "churn_scores" if not cols else None, "churn_scores has no churn_probability")
    df = con.execute("SELECT churn_probability, risk_band FROM churn_scores").df()
    bands = df["risk_band"].value_counts().reindex(["High", "Medium", "Low"]).fillna(0).astype(int)
    try:
        rel, rel_text = reliability_on_matured_window(con, horizon_days)
    except Exception as e:  # the churn stage's functions changed or failed: say so, keep the section
        rel, rel_text = None, f"{type(e).__name__}: {e}"
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    axes[0].hist(df["churn_probability"].dropna(), bins=20, range=(0, 1), color=BLUE)
    axes[0].set_title("Churn probability of current customers")
    axes[0].set_xlabel("churn probability")
    if rel is not None:
        axes[1].plot([0, 1], [0, 1], "--", color=GREY, label="perfect calibration")
        axes[1].plot(rel["predicted"], rel["observed"], marker="o", color=RED, label="champion model")
        axes[1].set_xlabel("predicted probability")
        axes[1].set_ylabel("observed churn rate")
        axes[1].set_title("Reliability on the latest matured window")
        axes[1].legend(fontsize=8)
    else:
        axes[1].axis("off")
        axes[1].text(0.5, 0.5, "reliability diagram not available\n(see the note below)", ha="center", va="center")
    fig.tight_layout()
    metrics_html = ""
    facts = {"bands": bands.to_dict(), "mean_probability": float(df["churn_probability"].mean())}
    if table_exists(con, "model_registry"):
        row = con.execute(
            "SELECT version, metrics, eval_window_start, eval_window_end FROM model_registry "
            "WHERE name = 'churn_model' AND status = 'champion' ORDER BY version DESC LIMIT 1"
        ).fetchone()
        if row and row[1]:
            m = json.loads(row[1])
            shown = {k: v for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            facts.update({k: shown[k] for k in ("roc_auc", "ece", "brier", "pr_auc") if k in shown})
            metrics_html = (f"<p>Champion churn model v{row[0]}, evaluated out-of-time on "
                            f"{esc(row[2])} to {esc(row[3])}:</p>"
                            + html_table(pd.DataFrame([{k: v for k, v in list(shown.items())[:12]}]), 1, 3))
    body = img(fig, "churn risk") + html_table(bands.rename("customers").reset_index().rename(
        columns={"index": "risk_band"}), 3) + metrics_html
    if rel is None:
        body += note(f"Reliability diagram not drawn: {rel_text}.")
    else:
        body += f"<p>Reliability: {esc(rel_text)}. Points on the diagonal mean a predicted 60% churns 60% of the time.</p>"
        facts["reliability"] = rel_text
    md = [f"- Risk bands: High {bands['High']:,}, Medium {bands['Medium']:,}, Low {bands['Low']:,}"]
    if "roc_auc" in facts:
        md.append(f"- Churn model out-of-time ROC AUC {facts['roc_auc']:.3f}"
                  + (f", ECE {facts['ece']:.3f}" if "ece" in facts else ""))
    return Section("churn", title, body, md, facts)


def clv_deciles(con) -> Section:
    title = "Customer lifetime value by decile"
    cols = table_columns(con, "customer_ltv")
    if "clv_12m" not in cols or "value_decile" not in cols:
        return missing_section("clv", title, "customer_ltv" if not cols else None, "customer_ltv lacks clv_12m/value_decile")
    hist = "sum(historical_spend)" if "historical_spend" in cols else "NULL"
    df = con.execute(
        f"""SELECT value_decile, count(*) AS customers, avg(clv_12m) AS avg_clv_12m,
                   sum(clv_12m) AS clv_12m, {hist} AS historical_spend
            FROM customer_ltv GROUP BY value_decile ORDER BY value_decile"""
    ).df()
    df["clv_share"] = df["clv_12m"] / df["clv_12m"].sum()
    chart = img_png(table_figure_png(con, ("customer_ltv",), clv_decile_figure), "clv deciles")
    top = df.loc[df["value_decile"].idxmax()]
    facts = {"top_decile_share": float(top["clv_share"]), "top_decile": int(top["value_decile"])}
    md = [f"- Value decile {facts['top_decile']} holds {facts['top_decile_share']:.0%} of predicted 12-month CLV"]
    return Section("clv", title, chart + html_table(df, 10), md, facts)


def bundles(con) -> Section:
    title = "Top bundles"
    recs = read_optional(con, "bundle_recommendations")
    rules = read_optional(con, "association_rules")
    if recs is None and rules is None:
        return missing_section("bundles", title, "bundle_recommendations / association_rules", "")
    parts, md, facts = [], [], {}
    if recs is not None and "recommendation_type" in recs.columns and len(recs):
        dead = recs[(recs["recommendation_type"] == "dead_stock_bundle") & (recs["rank"] == 1)]
        dead = dead.sort_values(["lift", "both_orders"], ascending=False)
        cols = [c for c in ("product_name", "partner_names", "sold_ratio", "lift", "confidence_product_to_partner",
                            "both_orders", "suggested_discount_pct") if c in dead.columns]
        facts["dead_stock_products_with_bundle"] = int(dead["product_id"].nunique())
        parts.append(f"<h3>Bundles that move dead stock ({facts['dead_stock_products_with_bundle']:,} "
                     f"dead-stock products have a partner; best partner each, by lift)</h3>" + html_table(dead[cols], 10, 2))
        if len(dead):
            top = dead.iloc[0]
            facts["top_bundle"] = f"{top['product_name']} + {top['partner_names']}"
            facts["top_bundle_moves_dead_stock"] = True
            md.append(f"- Best dead-stock bundle: {facts['top_bundle']} (lift {top['lift']:.1f}, "
                      f"{top.get('suggested_discount_pct', 0):.0f}% off)")
        also = recs[recs["recommendation_type"] == "also_bought"]
        if len(also):
            also = also[also["rank"] == 1] if "rank" in also.columns else also
            cols = [c for c in ("product_name", "partner_names", "confidence_product_to_partner", "lift", "both_orders")
                    if c in also.columns]
            parts.append("<h3>Customers who bought X often bought Y (top products)</h3>" + html_table(also[cols], 10, 2))
    if rules is not None:
        if rules.empty:
            parts.append(note("No association rule passed the thresholds."))
        else:
            lift = pick(rules.columns, "lift")
            top = rules.sort_values(lift, ascending=False) if lift else rules
            cols = [c for c in ("antecedent_names", "consequent_names", "support", "confidence", "lift", "both_orders")
                    if c in top.columns]
            facts["rules"] = len(rules)
            parts.append(f"<h3>Strongest association rules ({len(rules):,} rules)</h3>" + html_table(top[cols], 10, 3))
            if "top_bundle" not in facts and cols:
                r = top.iloc[0]
                facts["top_bundle"] = f"{r.get('antecedent_names')} -> {r.get('consequent_names')}"
                md.append(f"- Strongest rule: {facts['top_bundle']} (lift {r[lift]:.1f})")
    if not parts:
        return missing_section("bundles", title, None, "bundle tables hold no rows")
    return Section("bundles", title, "".join(parts), md, facts)


def drift(con) -> Section:
    title = "Drift status"
    df = read_optional(con, "drift_report")
    if df is None:
        return missing_section("drift", title, "drift_report", "")
    breach = pick(df.columns, "breached", "breach")
    value = pick(df.columns, "value", "psi")
    check = pick(df.columns, "check_name", "check")
    facts = {"rows": len(df)}
    if breach is not None:
        facts["breaches"] = int(df[breach].fillna(False).astype(bool).sum())
    status = ("no drift alarm" if facts.get("breaches", 0) == 0
              else f"{facts['breaches']} drift alarm(s): retraining is due")
    facts["status"] = status
    if value is not None:
        psi_rows = df[df[check] == "psi"] if check is not None else df
        if len(psi_rows):
            facts["max_psi"] = float(psi_rows[value].max())
        sort = [c for c in (breach, value) if c]
        df = df.sort_values(sort, ascending=False)
    if check is not None and value is not None and (df[check] == "auc_drop").any():
        auc = df[df[check] == "auc_drop"].iloc[0]
        facts["auc_detail"] = str(auc.get("detail", ""))
    keep = [c for c in df.columns if c not in ("as_of", "baseline")]
    chart = ""
    if check is not None and value is not None and "feature" in df.columns:
        psi_rows = df[(df[check] == "psi") & df["feature"].notna()].head(20)
        if len(psi_rows) and not (psi_rows[value].fillna(0) > 0).any():
            chart = note("PSI is 0 for every feature: the champions' reference is this very population "
                         "(models trained on the current data). Drift shows after new data arrives.")
        elif len(psi_rows) and {"model", "value", "threshold", "breached", "exempt"} <= set(df.columns):
            # the drift_report asset's own chart (monitoring/figures), rendered once per run
            chart = img_png(table_figure_png(con, ("drift_report",), psi_figure), "psi per feature")
        elif len(psi_rows):
            threshold = float(psi_rows["threshold"].iloc[0]) if "threshold" in psi_rows else 0.2
            colors = [RED if b else BLUE for b in (psi_rows[breach] if breach else [False] * len(psi_rows))]
            fig, ax = plt.subplots(figsize=(8, 0.25 * len(psi_rows) + 1.2))
            labels = (psi_rows["model"].astype(str) + ": " + psi_rows["feature"].astype(str)).tolist()
            ax.barh(labels[::-1], psi_rows[value].tolist()[::-1], color=colors[::-1])
            ax.axvline(threshold, color=GREY, linestyle="--", label=f"threshold {threshold}")
            ax.set_title("PSI per feature (red: alarm)")
            ax.legend(fontsize=8)
            chart = img(fig, "psi per feature")
    body = f"<p><b>{esc(status)}</b>" + (f"; largest PSI {facts['max_psi']:.3f}" if "max_psi" in facts else "") + \
        "</p>" + chart + html_table(df[keep], 20, 3)
    md = [f"- Drift: {status}" + (f" (largest PSI {facts['max_psi']:.3f})" if "max_psi" in facts else "")]
    return Section("drift", title, body, md, facts)


def actions(con) -> Section:
    title = "Retention actions"
    cols = table_columns(con, "retention_actions")
    if not cols:
        return missing_section("actions", title, "retention_actions", "")
    by_band = con.execute(
        """SELECT coalesce(risk_band, '(no score)') AS risk_band, count(*) AS customers,
                  count(*) FILTER (contact) AS contacted, count(*) FILTER (control_group) AS control,
                  sum(value_at_risk) AS value_at_risk, any_value(action) FILTER (contact) AS action
           FROM retention_actions GROUP BY 1
           ORDER BY CASE any_value(risk_band) WHEN 'High' THEN 0 WHEN 'Medium' THEN 1 ELSE 2 END"""
    ).df()
    top = con.execute(
        """SELECT priority, customer_id, country, segment, tier, risk_band, churn_probability, clv_12m,
                  value_at_risk, reason_1 FROM retention_actions WHERE contact ORDER BY priority LIMIT 10"""
    ).df()
    flagged = []
    cancelled = cancellations(con, "customer_id", top["customer_id"].astype(str).tolist(), "line_total")
    if cancelled is not None and len(top) and table_exists(con, "cleaned_transactions"):
        gross = con.execute(
            "SELECT CAST(customer_id AS VARCHAR) AS k, sum(line_total) AS s FROM cleaned_transactions "
            "WHERE CAST(customer_id AS VARCHAR) IN (SELECT unnest(?)) GROUP BY 1",
            [top["customer_id"].astype(str).tolist()],
        ).df().set_index("k")["s"]
        ids = top["customer_id"].astype(str)
        top.insert(9, "cancelled_share", (ids.map(cancelled).fillna(0.0) / ids.map(gross)).round(2))
        flagged = ids[top["cancelled_share"] > 0.5].tolist()
    outbox = ""
    if table_exists(con, "notification_outbox"):
        counts = con.execute(
            "SELECT channel, delivery_status, count(*) AS messages FROM notification_outbox GROUP BY ALL ORDER BY 1, 2"
        ).df()
        outbox = "<h3>Notification outbox</h3>" + html_table(counts, 10)
    clean_top = top[~top["customer_id"].astype(str).isin(flagged)]
    facts = {"by_band": by_band.to_dict("records"), "top": clean_top.head(3).to_dict("records"),
             "cancelled_most": flagged}
    body = ""
    if by_band["value_at_risk"].notna().any():
        # the retention_actions asset's own figure (actions/figures), rendered once per run
        body = img_png(table_figure_png(con, ("retention_actions",), value_at_risk_figure), "value at risk")
    if not by_band["contacted"].any():
        body += note("Nobody is contacted: without churn scores there is no risk band to act on.")
    body += html_table(by_band, 5) + "<h3>Top 10 customers to contact (by value at risk)</h3>" + html_table(top, 10, 3)
    if flagged:
        body += note("Check before contacting: customer(s) " + ", ".join(flagged) + " cancelled more than half of "
                     "what they bought (cancelled_share), so their CLV and value at risk are overstated.")
    body += outbox
    return Section("actions", title, body, [], facts)


ALL_SECTIONS = [kpis, sales_trend, top_products, revenue_by_region, segments, cohorts, churn,
                clv_deciles, bundles, drift, actions]
