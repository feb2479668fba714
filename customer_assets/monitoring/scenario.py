"""A drift scenario on real Online Retail data, used by the end-to-end tests and to measure.

`write_slices(folder, keep_every)` writes three parquet files in the Online Retail layout:
- sample: Dec 2010 - Aug 2011 (every `keep_every`-th customer by a stable hash; 1 = all);
- later_same: the same customers' real orders of 2011-09-01 .. 2011-09-28;
- later_shifted: those orders with prices tripled, plus a flood of new customers (the same
  baskets again under new customer ids).

    python -m customer_assets.monitoring.scenario [--keep-every 1] [--out DIR]

builds a warehouse on the sample with the all_assets job, drops each later file into the landing
folder, runs weekly_refresh, and prints the drift report, the drift sensor's decision and (for the
shifted file) the retrain's registry rows. Everything happens in DIR (default: a temp folder).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import dagster as dg
import duckdb

from customer_assets import paths

SAMPLE_END = "2011-09-01"
LATER_END = "2011-09-29"


def write_slices(folder: Path, keep_every: int = 1, source: str = paths.DEFAULT_SOURCE) -> dict:
    keep = (
        "true" if keep_every <= 1 else
        f"((CustomerID IS NULL AND hash(InvoiceNo) % {keep_every} = 0) "
        f"OR hash(CAST(CustomerID AS BIGINT)) % {keep_every} = 0)"
    )
    c = duckdb.connect()
    out = {k: Path(folder) / f"{k}.parquet" for k in ("sample", "later_same", "later_shifted")}
    later = f"FROM '{source}' WHERE InvoiceDate >= '{SAMPLE_END}' AND InvoiceDate < '{LATER_END}' AND {keep}"
    c.execute(f"COPY (SELECT * FROM '{source}' WHERE InvoiceDate < '{SAMPLE_END}' AND {keep}) "
              f"TO '{out['sample']}' (FORMAT parquet)")
    c.execute(f"COPY (SELECT * {later}) TO '{out['later_same']}' (FORMAT parquet)")
    c.execute(
        f"""COPY (
            SELECT InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice * 3 AS UnitPrice,
                   CustomerID, Country {later}
            UNION ALL
            SELECT 'N' || InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice * 3,
                   CustomerID + 100000, Country {later} AND CustomerID IS NOT NULL AND InvoiceNo NOT LIKE 'C%'
        ) TO '{out['later_shifted']}' (FORMAT parquet)"""
    )
    c.close()
    return out


def make_defs(root: Path, sample: Path, models_dir: Path | None = None) -> dg.Definitions:
    """The code location's assets, checks, jobs and sensors with resources pointed at `root`."""
    from dagster_duckdb import DuckDBResource

    from customer_assets import definitions as code_location
    from customer_assets.automation import JOBS, SCHEDULES, SENSORS
    from customer_assets.resources import ModelStore, SourceConfig, build_resources
    from customer_assets.settings import AnalyticsSettings

    root = Path(root)
    (root / "incoming").mkdir(parents=True, exist_ok=True)
    resources = build_resources(  # notifier: dry run unless Twilio variables are set
        duckdb=DuckDBResource(database=str(root / "warehouse.duckdb")),
        source=SourceConfig(source=str(sample), mapping=paths.DEFAULT_MAPPING,
                            landing_dir=str(root / "incoming"), inventory=None),
        model_store=ModelStore(models_dir=str(models_dir or root / "models"), reports_dir=str(root / "reports")),
        settings=AnalyticsSettings(),
    )
    return dg.Definitions(
        assets=[a for s in code_location.STAGES for a in s.ASSETS],
        asset_checks=[c for s in code_location.STAGES for c in s.CHECKS],
        jobs=JOBS, schedules=SCHEDULES, sensors=SENSORS, resources=resources,
        executor=dg.in_process_executor,
    )


def tick(sensor, instance, defs: dg.Definitions, cursor):
    """One real evaluation of `sensor` against `instance`."""
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs,
                                  resources={"source": defs.resources["source"]})
    return sensor.evaluate_tick(ctx)


def registry_rows(root: Path):
    with duckdb.connect(str(Path(root) / "warehouse.duckdb"), read_only=True) as c:
        return c.execute(
            "SELECT name, version, status, reason, selection_metric, round(selection_value, 4) AS value, "
            "gate_message FROM model_registry ORDER BY name, version"
        ).df()


def _drift_table(root: Path):
    with duckdb.connect(str(Path(root) / "warehouse.duckdb"), read_only=True) as c:
        return c.execute(
            "SELECT model, check_name, feature, round(value, 3) AS value, breached, exempt, "
            "round(psi_vs_training, 3) AS psi_vs_training, detail FROM drift_report "
            "ORDER BY check_name DESC, value DESC NULLS LAST"
        ).df()


def main(argv=None) -> None:
    import os
    import time

    import pandas as pd

    from customer_assets.automation import drift_retrain_sensor, new_data_sensor

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep-every", type=int, default=1, help="keep every n-th customer (1 = all)")
    ap.add_argument("--out", default=None, help="working folder (default: a new temp folder)")
    args = ap.parse_args(argv)
    pd.set_option("display.width", 250)
    pd.set_option("display.max_colwidth", 120)
    base = Path(args.out or tempfile.mkdtemp(prefix="drift_scenario_"))
    base.mkdir(parents=True, exist_ok=True)
    slices = write_slices(base, args.keep_every)
    for name in ("later_same", "later_shifted"):
        root = base / name
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir()
        (root / "home").mkdir()
        defs = make_defs(root, slices["sample"])
        with dg.instance_for_test(temp_dir=str(root / "home")) as instance:
            t = time.time()
            defs.resolve_job_def("all_assets").execute_in_process(instance=instance)
            print(f"\n=== {name}: all_assets on the sample in {time.time() - t:.0f}s")
            d0 = tick(drift_retrain_sensor, instance, defs, None)
            print("drift sensor after the first build:", d0.skip_message or d0.run_requests)
            dropped = root / "incoming" / f"{name}.parquet"
            shutil.copy(slices[name], dropped)
            os.utime(dropped, (time.time() - 3600,) * 2)
            n1 = tick(new_data_sensor, instance, defs, None)
            req = n1.run_requests[0]
            print("new_data_sensor:", req.run_key, req.tags)
            defs.resolve_job_def("weekly_refresh").execute_in_process(instance=instance, tags=req.tags)
            print(_drift_table(root).to_string())
            d1 = tick(drift_retrain_sensor, instance, defs, d0.cursor)
            print("drift sensor:", d1.skip_message or [r.tags for r in d1.run_requests])
            if d1.run_requests:
                defs.resolve_job_def("retrain_models").execute_in_process(instance=instance,
                                                                          tags=d1.run_requests[0].tags)
                d2 = tick(drift_retrain_sensor, instance, defs, d1.cursor)
                print("drift sensor after the retrain:", d2.skip_message or d2.run_requests)
                print(registry_rows(root).to_string())
    print(f"\nworking folder: {base}")


if __name__ == "__main__":
    main()
