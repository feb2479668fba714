"""Render bench/results/*.json (from bench.run_pipeline) as Markdown tables.

    python -m bench.report bench/results/<timestamp>.json [--top 15]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _label(s: dict) -> str:
    assets = s.get("assets") or []
    label = s["step"] if not assets or assets == [s["step"]] else f"{s['step']} ({len(assets)} assets)"
    return label + ("" if s.get("status") in (None, "SUCCESS") else f" [{s['status']}]")


def markdown(run: dict, top: int) -> str:
    steps = sorted(run["steps"], key=lambda s: -s["seconds"])
    lines = [
        f"**{run['label']}**: {run['input_rows']:,} input rows, git {run.get('git_commit', '?')}, "
        f"status {run.get('status')}"
        + (" (TIMED OUT)" if run.get("timed_out") else "")
        + (" (KILLED over --max-rss-gb)" if run.get("killed_over_max_rss") else "")
        + f", load avg {run['loadavg_1m_before']:.1f} -> {run['loadavg_1m_after']:.1f}",
        "",
        "| step | wall s | CPU s | peak RSS GB |",
        "|---|---:|---:|---:|",
    ]
    for s in steps[:top]:
        cpu = "" if s.get("cpu_s") is None else f"{s['cpu_s']:.1f}"
        rss = "" if s.get("peak_rss_gb") is None else f"{s['peak_rss_gb']:.2f}"
        lines.append(f"| {_label(s)} | {s['seconds']:.1f} | {cpu} | {rss} |")
    rest = steps[top:]
    if rest:
        lines.append(f"| {len(rest)} other steps | {sum(s['seconds'] for s in rest):.1f} | "
                     f"{sum(s.get('cpu_s') or 0 for s in rest):.1f} | |")
    span = run.get("steps_span_s")
    lines += ([f"| steps, first start to last end (two run at a time) | {span:.1f} | | |"] if span else []) + [
        f"| before/after steps (CLI start, code location import, run setup) | {run['outside_steps_s']:.1f} | | |",
        f"| **total (CLI process)** | **{run['wall_s']:.1f}** | **{run['cpu_s']:.1f}** | "
        f"**{run['peak_rss_gb']:.2f}** |",
        "",
        f"rows/s: {run['rows_per_s']:,.0f}"
        + (f"; refresh / full wall: {run['ratio_to_full']:.2f}" if "ratio_to_full" in run else ""),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path, nargs="+")
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args(argv)
    for path in args.results:
        data = json.loads(path.read_text())
        print(f"<!-- {path.name}, git {data.get('git_commit')} -->")
        for run in data["runs"]:
            print(markdown(run, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
