"""Ingestion assets: thin Dagster glue over pipeline.py, quality.py and cleaning.py."""


import json

import dagster as dg
from dagster_duckdb import DuckDBResource

from customer_assets.common import side_process, warm_imports
from customer_assets.common.metadata import df_to_markdown, table_metadata
from customer_assets.ingestion.mapping import MappingError
from customer_assets.ingestion.pipeline import IngestError, ingest, reconciliation
from customer_assets.ingestion.quality import run_quality
from customer_assets.resources import SourceConfig

GROUP = "ingestion"
RECONCILIATION_CHECK = "raw_equals_cleaned_plus_quarantined"


@dg.multi_asset(
    specs=[
        dg.AssetSpec("ingested_files", group_name=GROUP, kinds={"duckdb"},
                     description="One row per source file loaded: path, sha256, rows, exact money total, "
                                 "loaded_at. A file with a known sha256 is never loaded twice. The files "
                                 "themselves are the raw record: a mapping change reads them again."),
        dg.AssetSpec("cleaned_transactions", group_name=GROUP, kinds={"duckdb"},
                     description="Valid sale lines in the canonical schema, with line_total."),
        dg.AssetSpec("quarantined_transactions", group_name=GROUP, kinds={"duckdb"},
                     description="Every raw row not in cleaned_transactions, with a reason code, a detail "
                                 "naming the column and value, and the original row as JSON."),
    ],
    check_specs=[
        dg.AssetCheckSpec(RECONCILIATION_CHECK, asset="cleaned_transactions", blocking=True,
                          description="rows read = cleaned + quarantined, exactly: every source row number "
                                      "once, and the money."),
    ],
    pool="duckdb",
    can_subset=False,
)
def ingest_transactions(context: dg.AssetExecutionContext, duckdb: DuckDBResource, source: SourceConfig):
    """Load new source files and classify their rows into cleaned and quarantined transactions."""
    # the next steps' libraries load while this one waits on DuckDB (see common/warm_imports)
    warm_imports.warm()
    with duckdb.get_connection() as con:
        try:
            summary = ingest(con, source.source, source.mapping, source.landing_dir, log=context.log.info)
        except (IngestError, MappingError) as e:
            raise dg.Failure(description=str(e)) from None
        # the figure helper (common/side_process) imports matplotlib while the next steps start:
        # not earlier, where it would take a core from DuckDB's work above (measured 0.3 s slower)
        side_process.start_pipeline_helpers()
        recon = reconciliation(con)
        files = con.execute("SELECT * FROM ingested_files ORDER BY loaded_at, path").df()
        shas = sorted(files["sha256"].tolist())
        reasons = con.execute(
            "SELECT reason, count(*) AS rows, round(sum(line_total), 2) AS amount FROM quarantined_transactions "
            "GROUP BY reason ORDER BY rows DESC"
        ).df()
        loaded_md = df_to_markdown(
            files.assign(loaded_at=files["loaded_at"].astype(str)), max_rows=50
        )
        yield dg.MaterializeResult(
            asset_key="ingested_files",
            metadata={
                **table_metadata(con, "ingested_files"),
                "files": dg.MetadataValue.md(loaded_md),
                "new_files_this_run": len(summary.loaded),
                "skipped_already_loaded": dg.MetadataValue.json(summary.skipped_known),
                # The new_data_sensor compares landing files against this list, so it never has to
                # open the DuckDB file (which a running job may hold).
                "sha256s": dg.MetadataValue.json(shas),
            },
        )
        yield dg.MaterializeResult(
            asset_key="cleaned_transactions",
            metadata={
                **table_metadata(con, "cleaned_transactions"),
                "customers": int(con.execute("SELECT count(DISTINCT customer_id) FROM cleaned_transactions").fetchone()[0]),
                "rebuilt": summary.rebuilt,
                "notes": dg.MetadataValue.json(summary.notes),
            },
        )
        yield dg.MaterializeResult(
            asset_key="quarantined_transactions",
            metadata={
                **table_metadata(con, "quarantined_transactions"),
                "rows_by_reason": dg.MetadataValue.md(df_to_markdown(reasons, max_rows=20)),
                "reasons": dg.MetadataValue.json({r: int(n) for r, n in zip(reasons["reason"], reasons["rows"])}),
            },
        )
        yield dg.AssetCheckResult(
            asset_key="cleaned_transactions",
            check_name=RECONCILIATION_CHECK,
            passed=bool(recon["passed"]),
            metadata={k: v for k, v in recon.items() if k != "passed" and not k.startswith("_")},
            description=None if recon["passed"] else "rows or money were lost or double counted in cleaning",
        )


@dg.asset_check(
    asset="cleaned_transactions",
    name="great_expectations_suite",
    description="Great Expectations suite on a 20k-row sample plus the same expectations on the whole table in SQL "
    "(after a weekly append to a table that passed: on the appended rows, the only ones not checked yet).",
    pool="duckdb",
)
def great_expectations_suite(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    with duckdb.get_connection() as con:
        result = run_quality(con)
    table = result["table"]
    return dg.AssetCheckResult(
        passed=result["passed"],
        metadata={
            "expectations": dg.MetadataValue.md(df_to_markdown(table, max_rows=50)),
            "rows": result["rows"],
            "rows_checked_in_sql": result["rows_checked"],
            "checked": result["scope"],
            "ge_sample_rows": result["sample_rows"],
            "results": dg.MetadataValue.json(json.loads(table.to_json(orient="records"))),
        },
    )
