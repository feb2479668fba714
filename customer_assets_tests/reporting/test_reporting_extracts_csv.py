"""Regional extracts are written by DuckDB COPY: the same bytes pandas' to_csv wrote, and the
blocking check reads them back."""

import sys
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "actions"))
from handmade import write_upstream  # noqa: E402

from customer_assets.actions import retention as rt  # noqa: E402
from customer_assets.common.db import write_typed  # noqa: E402
from customer_assets.reporting import assets as ra  # noqa: E402
from customer_assets.reporting import extracts as ex  # noqa: E402


def _pandas_reference(data: pd.DataFrame, region: str) -> str:
    """What the earlier pandas implementation wrote for one region."""
    cols = [c for c in ex.EXTRACT_COLUMNS if c in data.columns]
    subset = data[data["country"] == region][cols].sort_values(["priority", "customer_id"], na_position="last")
    return subset.to_csv(index=False)


def _actions_with_odd_values(con):
    write_upstream(con)
    con.execute("UPDATE dim_customer SET country = 'Korea, \"South\"' WHERE customer_id IN ('C030', 'C031')")
    con.execute("UPDATE churn_scores SET risk_band = NULL, churn_probability = NULL WHERE customer_id = 'C032'")
    con.execute("UPDATE customer_ltv SET clv_12m = 1e-7 WHERE customer_id = 'C033'")
    con.execute("UPDATE customer_ltv SET clv_12m = 123456789.125 WHERE customer_id = 'C034'")
    write_typed(con, "retention_actions", rt.build_retention_actions(rt.gather_inputs(con).frame, 0.25, "W"),
                rt.RETENTION_TYPES)


def test_extract_files_are_the_bytes_pandas_wrote(con, tmp_path):
    _actions_with_odd_values(con)
    data = con.execute("SELECT * FROM retention_actions").df()
    assert data["priority"].isna().any() and data["control_group"].any()
    table, notes = ex.write_regional_extracts(con, tmp_path, None)
    assert len(table) == 4 and 'Korea, "South"' in set(table["region"])
    for r in table.itertuples():
        assert Path(r.path).read_text() == _pandas_reference(data, r.region), r.region
        assert r.row_count == (data["country"] == r.region).sum()


def test_only_own_region_check_reads_the_files(tmp_path, resources_for):
    resources = resources_for(tmp_path)
    c = duckdb.connect(resources["duckdb"].database)
    _actions_with_odd_values(c)
    c.close()
    # the check is a check_spec of regional_extracts: evaluated in the asset's own step
    result = dg.materialize([ra.regional_extracts], resources=resources, instance=dg.DagsterInstance.ephemeral())
    evs = result.get_asset_check_evaluations()
    assert [e.check_name for e in evs] == ["regional_extracts_only_own_region"] and evs[0].passed
    assert evs[0].metadata["files_checked"].value == 4
    c = duckdb.connect(resources["duckdb"].database)
    paths = dict(c.execute("SELECT region, path FROM regional_extracts").fetchall())
    france = Path(paths["France"])
    france.write_text(france.read_text() + Path(paths["Germany"]).read_text().splitlines()[1] + "\n")
    germany = Path(paths["Germany"])
    lines = germany.read_text().splitlines()
    germany.write_text("\n".join(lines[:-1]) + "\n")  # one row short
    ev = ra.regional_extracts_only_own_region(c)
    c.close()
    assert ev.check_name == "regional_extracts_only_own_region"
    assert not ev.passed and set(ev.metadata["bad_regions"].value.split(", ")) == {"France", "Germany"}


def test_only_own_region_check_blocks_in_the_step(tmp_path, resources_for, monkeypatch):
    """A failing check inside regional_extracts' step fails the run (blocking), as the separate
    blocking check did."""
    resources = resources_for(tmp_path)
    c = duckdb.connect(resources["duckdb"].database)
    _actions_with_odd_values(c)
    c.close()
    real = ex.write_regional_extracts

    def short_files(con, out_dir, regions):
        table, notes = real(con, out_dir, regions)
        table["row_count"] = table["row_count"] + 1  # the table claims one row more than each file holds
        return table, notes

    monkeypatch.setattr(ex, "write_regional_extracts", short_files)
    result = dg.materialize([ra.regional_extracts], resources=resources, instance=dg.DagsterInstance.ephemeral(),
                            raise_on_error=False)
    evs = result.get_asset_check_evaluations()
    assert not result.success
    assert len(evs) == 1 and not evs[0].passed and evs[0].metadata["files_checked"].value == 4
