"""Customer stage assets (group "customers"): thin glue around features / rfm / personas / loyalty /
cohorts. Every customer table carries snapshot_date (= as_of) and has one row per customer with a
cleaned order on or before it (checked by the `one_row_per_customer` check_spec of each, in its own
step: customers/checks.py)."""

import datetime as dt

import dagster as dg
import numpy as np
import pandas as pd
from dagster_duckdb import DuckDBResource

from customer_assets.common.db import quote_ident, replace_table, resolve_as_of, table_exists
from customer_assets.common.figure_cache import table_figure_png
from customer_assets.common.metadata import df_to_markdown, fig_to_md, png_to_md, table_metadata
from customer_assets.common.plotting import plt
from customer_assets.common.sampling import sample_customers
from customer_assets.customers import checks, cohorts, loyalty, personas, rfm
from customer_assets.customers.figures import cohort_heatmap_figure, segments_figure
from customer_assets.customers.features import (
    FEATURE_COLUMNS,
    OPTIONAL_FEATURES,
    ensure_feature_base,
    write_customer_features,
)
from customer_assets.registry import (
    ArtifactError,
    current_champion,
    load_model,
    register_model,
    training_reason,
)
from customer_assets.resources import ModelStore
from customer_assets.settings import AnalyticsSettings

GROUP = "customers"
PERSONA_MODEL = "persona_kmeans"  # the personas' name in the model registry
PLOT_MAX_CUSTOMERS = 5000  # points in the persona scatter (display only; the table has every customer)
TIER_COLORS = {"Platinum": "#5b6f8a", "Gold": "#d4af37", "Silver": "#b0b0b0", "Bronze": "#cd7f32"}


def read_features(con, columns=None, optional=()) -> pd.DataFrame:
    """customer_features ordered by customer_id: every column, or only `columns` plus those of
    `optional` the table has (most steps need a few of its ~20 columns)."""
    if not table_exists(con, "customer_features"):
        raise ValueError("customer_features does not exist: materialize it first")
    select = "*"
    if columns is not None:
        have = [d[0] for d in con.execute("SELECT * FROM customer_features LIMIT 0").description]
        select = ", ".join(quote_ident(c) for c in [*columns, *(c for c in optional if c in have)])
    df = con.execute(f"SELECT {select} FROM customer_features ORDER BY customer_id").df()
    if df.empty:
        raise ValueError("customer_features is empty: no customer has a cleaned order up to as_of")
    return df


def _plain_log_ticks(ax) -> None:
    """Decade labels of log axes as plain numbers (1, 10, 100) instead of mathtext 10^k, whose
    parsing and layout cost more than the rest of a small figure; no minor labels."""
    from matplotlib.ticker import FuncFormatter, NullFormatter  # matplotlib loads on first use

    from customer_assets.common.plotting import plain_number

    for axis in (ax.xaxis, ax.yaxis):
        if axis.get_scale() == "log":
            # a module-level function, not a lambda: the figure pickles (rendered in a helper process)
            axis.set_major_formatter(FuncFormatter(plain_number))
            axis.set_minor_formatter(NullFormatter())


def snapshot_of(features: pd.DataFrame):
    return pd.Timestamp(features["snapshot_date"].iloc[0]).date()


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb"},
    pool="duckdb",
    deps=["cleaned_transactions", "quarantined_transactions"],
    description="One row per customer as of as_of: RFM, engagement, windowed spend, spend trend, return "
    "rate and (when mapped) price / discount / store features, from the shared snapshot feature "
    "function customer_assets.customers.features.compute_customer_features (also used by churn and LTV).",
    check_specs=[checks.coverage_spec("customer_features")],
)
def customer_features(duckdb: DuckDBResource, settings: AnalyticsSettings) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        as_of = resolve_as_of(con, settings.as_of_date())
        # the frame the table is written from: computed once per run for this table and for the steps
        # that read the features at as_of (churn_scores, customer_ltv, drift_report), in either order
        frame, base = write_customer_features(con, "customer_features", as_of)
        optional = list(base.optional)
        cols = FEATURE_COLUMNS + optional
        # the numeric features only (the summary and plots need nothing else), in table order
        df = frame[cols]
        skipped = {
            name: f"needs {', '.join(fields)} (not mapped / all empty)"
            for name, fields in OPTIONAL_FEATURES.items() if name not in optional
        }
        returns_note = (
            "from quarantined_transactions (reason = 'cancellation')"
            if table_exists(con, "quarantined_transactions")
            else "0: quarantined_transactions does not exist"
        )
        summary = df[cols].describe(percentiles=[0.25, 0.5, 0.75]).T.reset_index(names="feature")
        # fixed margins (no layout engine pass) and one filled step artist per histogram, not a
        # patch per bin: the same counts and bins as ax.hist
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
        fig.subplots_adjust(left=0.06, right=0.99, bottom=0.2, top=0.86, wspace=0.28)
        for ax, col in zip(axes, ["recency_days", "frequency", "monetary"]):
            x = df[col].clip(lower=0).to_numpy(dtype=float) + 1
            bins = np.geomspace(x.min(), max(x.max(), x.min() * 1.01), 40) if len(x) else 10
            counts, edges = np.histogram(x, bins=bins)
            ax.stairs(counts, edges, fill=True, color="#3b75af")
            ax.set_xscale("log")
            _plain_log_ticks(ax)
            ax.set_xlabel(f"1 + {col} (log scale)")
            ax.set_ylabel("customers")
        fig.suptitle(f"Customer features as of {as_of}")
        return dg.MaterializeResult(
            metadata={
                **table_metadata(con, "customer_features", order_by="monetary DESC"),
                "as_of": dg.MetadataValue.text(str(as_of)),
                "features": dg.MetadataValue.json(cols),
                "optional_features_skipped": dg.MetadataValue.json(skipped),
                "return_rate_source": dg.MetadataValue.text(returns_note),
                "summary": dg.MetadataValue.md(df_to_markdown(summary, max_rows=len(summary))),
                "distributions": dg.MetadataValue.md(fig_to_md(fig, "feature distributions")),
            },
            check_results=[checks.coverage_result(con, "customer_features", f"{base.prefix}order_days")],
        )


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb", "pandas"},
    pool="duckdb",
    deps=["customer_features"],
    description="RFM quintile scores (1-5, R reversed, tie-aware ranks) and exactly one segment per customer "
    "from the rule table customer_assets.customers.rfm.SEGMENT_RULES (first match wins). Price Sensitive "
    "uses price_index (paid vs each product's median price) when the source has prices.",
    check_specs=[checks.coverage_spec("rfm_segments"), checks.CHAMPIONS_SPEC],
)
def rfm_segments(duckdb: DuckDBResource, settings: AnalyticsSettings) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        features = read_features(con, ["customer_id", "snapshot_date", "recency_days", "frequency", "monetary"],
                                 optional=["price_index"])
        has_price = "price_index" in features.columns
        out = rfm.compute_rfm(features, settings.price_sensitive_index if has_price else None)
        out.insert(1, "snapshot_date", snapshot_of(features))
        replace_table(con, "rfm_segments", out)
        summary = rfm.segment_summary(out)
        validation = rfm.champions_validation(out)
        price_note = (
            f"used: price_index <= {settings.price_sensitive_index} (paid on average at least "
            f"{100 * (1 - settings.price_sensitive_index):.0f}% below each product's median unit price); "
            f"{int((out['segment'] == 'Price Sensitive').sum())} customers"
            if has_price
            else "not used: the source has no product_id / quantity / unit_price, so there is no price signal"
        )
        # drawn from the table (customers/figures.py): the report shows the same PNG, rendered once
        chart = png_to_md(table_figure_png(con, ("rfm_segments",), segments_figure), "segments")
        rules = rfm.SEGMENT_RULES.assign(
            price_sensitive=rfm.SEGMENT_RULES["price_sensitive"].map({True: "yes", None: "any"}).fillna("any")
        )
        return dg.MaterializeResult(
            metadata={
                **table_metadata(con, "rfm_segments", order_by="monetary DESC"),
                "segments": dg.MetadataValue.md(df_to_markdown(summary, max_rows=20)),
                "segment_sizes": dg.MetadataValue.json(dict(zip(summary["segment"], map(int, summary["customers"])))),
                "segment_chart": dg.MetadataValue.md(chart),
                "rule_table": dg.MetadataValue.md(df_to_markdown(rules, max_rows=20)),
                "price_sensitive": dg.MetadataValue.text(price_note),
                "champions_validation": dg.MetadataValue.json(validation),
            },
            check_results=[
                checks.coverage_result(con, "rfm_segments", f"{ensure_feature_base(con).prefix}order_days"),
                checks.champions_result(validation),
            ],
        )


def _silhouette_plot(silhouettes: dict, k: int) -> str:
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ks = sorted(silhouettes)
    ax.plot(ks, [silhouettes[i] for i in ks], marker="o")
    ax.axvline(k, color="grey", ls="--")
    ax.set_xlabel("k")
    ax.set_ylabel("mean silhouette (sample)")
    ax.set_title(f"k chosen by silhouette: {k}")
    return fig_to_md(fig, "silhouette by k")


def _persona_scatter(assignments: pd.DataFrame, features: pd.DataFrame, names: dict) -> str:
    """recency vs spend of a fixed sample of customers, coloured by persona (`assignments` and
    `features` share their index)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    # a scatter of every customer costs seconds to render at 100k customers: plot a fixed sample
    a = assignments
    shown = a[a["customer_id"].isin(sample_customers(a[["customer_id"]], PLOT_MAX_CUSTOMERS)["customer_id"])]
    for c, g in shown.groupby("cluster"):
        idx = g.index
        # markers of one Line2D per cluster: drawn faster than a scatter's path collection
        ax.plot(features.loc[idx, "recency_days"] + 1, features.loc[idx, "monetary"], ls="", marker="o",
                ms=2.5, mew=0, alpha=0.5, label=names.get(c, f"cluster {c}"))
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log_ticks(ax)
    ax.set_xlabel("1 + recency_days")
    ax.set_ylabel("monetary")
    ax.legend(fontsize=7, markerscale=3, loc="lower left")  # "best" scans every point
    ax.set_title("Personas")
    return fig_to_md(fig, "personas")


def _write_persona_model_table(con, profile: pd.DataFrame, snap, version=None, status=None) -> None:
    """The persona_model table: the fit's clusters (profile) with the snapshot and registry version;
    typed from the frame, so no fit (too few customers, empty profile) gives an empty table of the
    same columns and types."""
    t = profile.astype({"persona": "string"})
    t.insert(0, "snapshot_date", pd.Series(pd.Timestamp(snap), index=t.index, dtype="datetime64[ns]"))
    t.insert(1, "model_version", pd.Series(version, index=t.index, dtype="Int64"))
    t.insert(2, "model_status", pd.Series(status, index=t.index, dtype="string"))
    replace_table(con, "persona_model",
                  con.from_df(t).project("* REPLACE (CAST(snapshot_date AS DATE) AS snapshot_date)"))


def _persona_features(con, extra=()) -> pd.DataFrame:
    return read_features(con, ["customer_id", "snapshot_date", *dict.fromkeys([*personas.PERSONA_FEATURES, *extra])])


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb", "scikitlearn"},
    pool="duckdb",
    deps=["customer_features"],
    description="Fits the K-Means personas on scaled (log1p where skewed) RFM and engagement features, k chosen "
    "by silhouette over persona_k_min..persona_k_max, clusters named from their profile, and registers the "
    f"scaler + model + names as `{PERSONA_MODEL}` (champion/challenger gate on silhouette). Table: the fit's "
    "clusters (size, share, medians) with the registered version. A training asset: in all_assets and "
    "retrain_models, not in weekly_refresh.",
)
def persona_model(context: dg.AssetExecutionContext, duckdb: DuckDBResource, settings: AnalyticsSettings,
                  model_store: ModelStore) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        features = _persona_features(con)
        snap = snapshot_of(features)
        if len(features) <= settings.persona_k_min:
            _, empty = personas.describe_clusters(features.iloc[:0], np.array([], dtype=np.int64), {})
            _write_persona_model_table(con, empty, snap)
            return dg.MaterializeResult(metadata={
                **table_metadata(con, "persona_model"),
                "skipped": dg.MetadataValue.text(
                    f"{len(features)} customers: K-Means needs more than k_min={settings.persona_k_min}; no model "
                    f"is registered (customer_personas marks every customer 'Unclustered' while there is no "
                    f"{PERSONA_MODEL} champion)"),
            })
        result = personas.fit_personas(
            features, settings.persona_k_min, settings.persona_k_max, settings.persona_silhouette_sample,
            settings.max_fit_customers,
        )
        # rounded: refits on the same data differ in the 17th digit, which must not demote a champion
        metrics = {"silhouette": round(result.silhouettes[result.k], 6), "k": result.k,
                   "silhouette_by_k": result.silhouettes, "customers": len(features)}
        reason = training_reason(context.run.tags if context.run else None, con, PERSONA_MODEL)
        reg = register_model(
            con, model_store.models_path(), PERSONA_MODEL, result.model,
            metrics=metrics, features=result.model.features, selection_metric="silhouette",
            train_window=(snap - dt.timedelta(days=int(features["tenure_days"].max())), snap),
            eval_window=(snap, snap), tolerance=settings.promotion_tolerance, reason=reason,
        )
        _write_persona_model_table(con, result.profile, snap, reg.version, reg.status)
        sil = pd.DataFrame({"k": list(result.silhouettes), "silhouette": list(result.silhouettes.values())})
        return dg.MaterializeResult(metadata={
            **table_metadata(con, "persona_model"),
            "k": dg.MetadataValue.int(result.k),
            "silhouette": dg.MetadataValue.float(result.silhouettes[result.k]),
            "silhouette_by_k": dg.MetadataValue.md(df_to_markdown(sil)),
            "silhouette_plot": dg.MetadataValue.md(_silhouette_plot(result.silhouettes, result.k)),
            "cluster_profiles": dg.MetadataValue.md(df_to_markdown(result.profile, max_rows=20)),
            "centroids": dg.MetadataValue.md(df_to_markdown(result.model.centroids(), max_rows=20)),
            "fit_customers": dg.MetadataValue.int(
                len(features) if result.fit_customers is None else len(result.fit_customers)),
            "model_version": dg.MetadataValue.int(reg.version),
            "model_status": dg.MetadataValue.text(f"{reg.status}: {reg.message}"),
            "reason": dg.MetadataValue.text(reason),
            "artifact": dg.MetadataValue.path(reg.artifact_path),
        })


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb", "scikitlearn"},
    pool="duckdb",
    deps=["customer_features", "persona_model"],
    description=f"Every customer's K-Means cluster and persona name, by the registered `{PERSONA_MODEL}` "
    "champion (loaded only through the registry, hash verified; falls back to the last good version): "
    "scoring only, so cluster numbers and names stay those of the champion until persona_model registers "
    "a better one. Fails when there is no champion (materialize persona_model first); with too few "
    "customers to cluster and no model, every customer is 'Unclustered'.",
    check_specs=[checks.coverage_spec("customer_personas")],
)
def customer_personas(context: dg.AssetExecutionContext, duckdb: DuckDBResource,
                      settings: AnalyticsSettings) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:

        def coverage():
            return [checks.coverage_result(con, "customer_personas", f"{ensure_feature_base(con).prefix}order_days")]

        loaded = None
        if current_champion(con, PERSONA_MODEL) is not None:
            try:
                loaded = load_model(con, PERSONA_MODEL)
            except ArtifactError as e:
                raise dg.Failure(description=f"cannot score personas: {e}") from e
        features = _persona_features(con, loaded.obj.features if loaded else ())
        snap = snapshot_of(features)
        if loaded is None:
            if len(features) > settings.persona_k_min:
                raise dg.Failure(description=(
                    f"no {PERSONA_MODEL} champion in model_registry: materialize persona_model first "
                    "(jobs all_assets or retrain_models)"))
            out = pd.DataFrame({"customer_id": features["customer_id"], "snapshot_date": snap,
                                "cluster": -1, "persona": "Unclustered (too few customers)"})
            replace_table(con, "customer_personas", out)
            return dg.MaterializeResult(metadata={
                **table_metadata(con, "customer_personas"),
                "skipped": dg.MetadataValue.text(
                    f"{len(features)} customers: K-Means needs more than k_min={settings.persona_k_min} and no "
                    f"{PERSONA_MODEL} is registered; every customer is 'Unclustered'"),
            }, check_results=coverage())
        for w in loaded.warnings:
            context.log.warning(w)
        model = loaded.obj
        try:
            assignments, profile = model.assign(features)
        except ValueError as e:  # an artifact whose features this code no longer computes
            raise dg.Failure(description=f"{PERSONA_MODEL} v{loaded.version} cannot score: {e}") from e
        out = assignments.copy()
        out.insert(1, "snapshot_date", snap)
        replace_table(con, "customer_personas", out)
        return dg.MaterializeResult(
            metadata={
                **table_metadata(con, "customer_personas"),
                "k": dg.MetadataValue.int(len(model.names)),
                "cluster_profiles": dg.MetadataValue.md(df_to_markdown(profile, max_rows=20)),
                "persona_sizes": dg.MetadataValue.json({r.persona: int(r.customers) for r in profile.itertuples()}),
                "model_version": dg.MetadataValue.int(int(loaded.version)),
                "model_status": dg.MetadataValue.text(str(loaded.row.get("status"))),
                "fallback_warnings": dg.MetadataValue.json(loaded.warnings),
                "plots": dg.MetadataValue.md(_persona_scatter(assignments, features, model.names)),
            },
            check_results=coverage(),
        )


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb"},
    pool="duckdb",
    deps=["customer_features", "cleaned_transactions"],
    description="Loyalty tiers ranked by qualifying spend (last loyalty_window_days before as_of): top "
    "loyalty_platinum_share Platinum, next Gold, next Silver, rest (and anyone without qualifying spend) "
    "Bronze, with the seed's rewards (settings.LOYALTY_REWARDS).",
    check_specs=[checks.coverage_spec("loyalty_tiers"), checks.TIERS_SPEC],
)
def loyalty_tiers(duckdb: DuckDBResource, settings: AnalyticsSettings) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        features = read_features(con, ["customer_id", "snapshot_date", "monetary"])
        snap = snapshot_of(features)
        # from the feature base's order_days (built by customer_features for this data version)
        order_days = f"{ensure_feature_base(con).prefix}order_days"  # also the coverage check's customers
        spend = con.execute(loyalty.qualifying_spend_sql(snap, settings.loyalty_window_days, order_days)).df()
        tiers = loyalty.assign_tiers(
            spend, settings.loyalty_platinum_share, settings.loyalty_gold_share, settings.loyalty_silver_share
        )
        if tiers["customer_id"].equals(features["customer_id"]):  # both one row per customer, same order
            tiers["monetary"] = features["monetary"].to_numpy()
        else:
            tiers = tiers.merge(features[["customer_id", "monetary"]], on="customer_id", how="inner", validate="1:1")
        tiers.insert(1, "snapshot_date", snap)
        tiers = tiers[["customer_id", "snapshot_date", "tier", "reward", "qualifying_spend", "value_rank", "monetary"]]
        replace_table(con, "loyalty_tiers", tiers)
        summary = (
            tiers.groupby("tier")
            .agg(customers=("customer_id", "size"), median_monetary=("monetary", "median"),
                 median_qualifying_spend=("qualifying_spend", "median"), revenue=("monetary", "sum"))
            .reindex(loyalty.TIERS).dropna(how="all").reset_index()
        )
        summary["share"] = summary["customers"] / len(tiers)
        summary["reward"] = summary["tier"].map(dict(zip(tiers["tier"], tiers["reward"])))
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.bar(summary["tier"], summary["median_monetary"], color=[TIER_COLORS[t] for t in summary["tier"]])
        ax.set_yscale("log")
        ax.set_ylabel("median monetary (log)")
        for i, r in enumerate(summary.itertuples()):
            ax.text(i, r.median_monetary, f"{r.customers} ({r.share:.0%})", ha="center", va="bottom", fontsize=8)
        ax.set_title("Loyalty tiers: median spend and size")
        return dg.MaterializeResult(
            metadata={
                **table_metadata(con, "loyalty_tiers", order_by="value_rank"),
                "tiers": dg.MetadataValue.md(df_to_markdown(summary)),
                "tier_median_monetary": dg.MetadataValue.json(
                    {r.tier: float(r.median_monetary) for r in summary.itertuples()}),
                "rule": dg.MetadataValue.text(
                    f"rank by spend in the {settings.loyalty_window_days} days up to {snap}; top "
                    f"{settings.loyalty_platinum_share:.0%} Platinum, next {settings.loyalty_gold_share:.0%} Gold, "
                    f"next {settings.loyalty_silver_share:.0%} Silver, rest Bronze; no qualifying spend = Bronze"),
                "chart": dg.MetadataValue.md(fig_to_md(fig, "tiers")),
            },
            check_results=[checks.coverage_result(con, "loyalty_tiers", order_days), checks.tiers_result(tiers)],
        )


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb"},
    pool="duckdb",
    deps=["cleaned_transactions"],
    description="Monthly acquisition cohorts (first purchase month) x months since acquisition: cohort size, "
    "active customers, retention % and revenue, zero months included; heatmap in the metadata.",
    check_specs=[checks.COHORTS_SPEC],
)
def cohort_retention(duckdb: DuckDBResource, settings: AnalyticsSettings) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        as_of = resolve_as_of(con, settings.as_of_date())
        # from the feature base's order_days (built once per data version, usually already by
        # customer_features): ~20x fewer rows than cleaned_transactions, same customers and money
        base = ensure_feature_base(con)
        replace_table(con, "cohort_retention", cohorts.cohort_retention_sql(as_of, f"{base.prefix}order_days"))
        df = con.execute("SELECT * FROM cohort_retention ORDER BY cohort_month, months_since_acquisition").df()
        m1 = df[df["months_since_acquisition"] == 1]
        return dg.MaterializeResult(
            metadata={
                **table_metadata(con, "cohort_retention", order_by="cohort_month, months_since_acquisition"),
                "as_of": dg.MetadataValue.text(str(as_of)),
                "cohorts": dg.MetadataValue.int(int(df["cohort_month"].nunique())),
                "mean_month1_retention_pct": dg.MetadataValue.float(
                    float(m1["retention_pct"].mean()) if len(m1) else 0.0),
                "heatmap": dg.MetadataValue.md(png_to_md(
                    table_figure_png(con, ("cohort_retention",), cohort_heatmap_figure), "cohort retention heatmap")),
            },
            check_results=[checks.cohorts_result(con, df)],
        )


ASSETS = [customer_features, rfm_segments, persona_model, customer_personas, loyalty_tiers, cohort_retention]
