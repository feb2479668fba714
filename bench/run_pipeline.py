"""Run the whole pipeline through the Dagster CLI on Online Retail x N and time it per asset.

For each N: the replicated source (bench.generate, cached per N), a fresh warehouse, DAGSTER_HOME,
landing, models and reports folder in a temporary directory; then, as a user would,

    dagster asset materialize -m customer_assets --select '*'

as a subprocess, sampling the resident memory of its whole process tree every 0.2 s. Per-step wall
times come from that DAGSTER_HOME's event log (STEP_START -> STEP_SUCCESS/FAILURE). With
--refresh, one later week of data is dropped into the landing folder and the weekly refresh
(`dagster job execute -j weekly_refresh`, or everything again when that job does not exist) is
timed against the built warehouse.

    python -m bench.run_pipeline --n 1 --n 20 [--refresh] [--repeat K] [--keep]

Prints a table per run and writes everything to bench/results/<UTC timestamp>.json. With --repeat K,
each N is built K times (a fresh warehouse each time, each followed by its refresh) and a summary
(bench/summary.py) gives every measure's median, range and values, and how many runs met each target.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import generate, summary

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RESULTS_DIR = REPO / "bench" / "results"
DEFAULT_DATA_DIR = Path(tempfile.gettempdir()) / "customer_assets_bench" / "data"
PAGE = os.sysconf("SC_PAGE_SIZE")
CLK_TCK = os.sysconf("SC_CLK_TCK")
REFRESH_JOB = "weekly_refresh"


# --- process-tree sampling ---------------------------------------------------------------------

# A child younger than this that still runs its parent's program (same command line) has not
# exec'd yet: a fork or vfork on its way to another program. Its pages are its parent's (vfork: the
# same address space; fork: copy-on-write), so its RSS is not counted again. Seen in the N=20 build:
# scikit-learn's KMeans asks joblib for the physical core count, which runs `lscpu` once per
# process; one sample caught the child before its exec and read a 3.31 GB tree for a 1.94 GB
# process. A fork that keeps running the same program longer (a worker) is counted in full.
UNEXECED_CHILD_MAX_AGE_S = 1.0


def _proc_table() -> dict[int, tuple[int, int, float, bytes, float]]:
    """pid -> (ppid, rss bytes, cpu seconds, command line, age in seconds) for every live process."""
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/statm") as f:
                rss_pages = int(f.read().split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        # utime, stime, and cutime, cstime (CPU of its children that have exited and been reaped)
        ppid, cpu_ticks = int(fields[1]), sum(int(x) for x in fields[11:15])
        age = uptime - int(fields[19]) / CLK_TCK  # starttime, ticks after boot
        out[int(entry)] = (ppid, rss_pages * PAGE, cpu_ticks / CLK_TCK, cmdline, age)
    return out


def tree_usage(root: int) -> tuple[int, int, float]:
    """(summed RSS bytes, process count, CPU seconds so far) of `root` and all its descendants; a
    young child that has not exec'd yet adds no RSS (UNEXECED_CHILD_MAX_AGE_S)."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, *_) in table.items():
        children.setdefault(ppid, []).append(pid)
    total, count, cpu, stack = 0, 0, 0.0, [root]
    while stack:
        pid = stack.pop()
        if pid in table:
            ppid, rss, used, cmdline, age = table[pid]
            parent = table.get(ppid)
            unexeced = pid != root and parent is not None and cmdline == parent[3] and age < UNEXECED_CHILD_MAX_AGE_S
            total += 0 if unexeced else rss
            cpu += used
            count += 1
        stack.extend(children.get(pid, []))
    return total, count, cpu


def run_sampled(cmd: list[str], env: dict, log_path: Path, timeout: float,
                max_rss_gb: float = float("inf")) -> dict:
    """Run `cmd`, sampling the tree's RSS every 0.2 s; kill the process group after `timeout` s
    or when the tree's RSS exceeds `max_rss_gb` (so a runaway run cannot exhaust a shared machine)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    peak, peak_procs, timed_out, killed_rss = 0, 0, False, False
    samples: list[tuple[float, float, int]] = []  # (unix time, tree CPU seconds, tree RSS bytes)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        while proc.poll() is None:
            rss, procs, cpu = tree_usage(proc.pid)
            samples.append((time.time(), cpu, rss))
            if rss > peak:
                peak = rss
            peak_procs = max(peak_procs, procs)
            killed_rss = rss > max_rss_gb * 1e9
            if time.perf_counter() - t0 > timeout or killed_rss:
                timed_out = not killed_rss
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                break
            time.sleep(0.2)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "returncode": proc.returncode,
        "timed_out": timed_out,
        "killed_over_max_rss": killed_rss,
        "wall_s": wall,
        "peak_rss_gb": peak / 1e9,
        "peak_processes": peak_procs,
        "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "max_single_process_rss_gb": after.ru_maxrss * 1024 / 1e9,  # largest reaped process so far
        "samples": samples,
    }


def attribute_samples(steps: list[dict], samples: list[tuple[float, float, int]]) -> None:
    """Per step: CPU seconds of the process tree and its peak RSS while the step ran (sampled)."""
    import bisect

    times = [t for t, _, _ in samples]

    def cpu_at(t: float) -> float:
        i = bisect.bisect_right(times, t)
        if i == 0:
            return samples[0][1] if samples else 0.0
        return samples[i - 1][1]

    for s in steps:
        end = s["end"] or s["start"]
        s["cpu_s"] = max(0.0, cpu_at(end) - cpu_at(s["start"])) if samples else None
        lo, hi = bisect.bisect_left(times, s["start"]), bisect.bisect_right(times, end)
        window = [rss for _, _, rss in samples[max(lo - 1, 0):hi + 1]]
        s["peak_rss_gb"] = max(window) / 1e9 if window else None


# --- the event log -----------------------------------------------------------------------------

def step_times(dagster_home: Path) -> dict:
    """Per-step wall times of the latest run in `dagster_home`, from its event log."""
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    import dagster as dg

    E = dg.DagsterEventType
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs(limit=1)
        if not runs:
            return {"run_id": None, "status": "NO_RUN", "steps": []}
        run = runs[0]
        steps: dict[str, dict] = {}
        run_start = run_end = None
        for ev in instance.all_logs(run.run_id):
            de = ev.dagster_event
            if de is None:
                continue
            kind = de.event_type
            if kind == E.RUN_START:
                run_start = ev.timestamp
            elif kind in (E.RUN_SUCCESS, E.RUN_FAILURE, E.RUN_CANCELED):
                run_end = ev.timestamp
            key = ev.step_key
            if not key:
                continue
            s = steps.setdefault(key, {"step": key, "start": None, "end": None, "status": None,
                                       "assets": [], "checks": []})
            if kind == E.STEP_START:
                s["start"] = ev.timestamp
            elif kind in (E.STEP_SUCCESS, E.STEP_FAILURE, E.STEP_SKIPPED):
                s["end"] = ev.timestamp
                s["status"] = kind.name.removeprefix("STEP_")
            elif kind == E.ASSET_MATERIALIZATION:
                s["assets"].append(de.asset_key.to_user_string())
            elif kind == E.ASSET_CHECK_EVALUATION:
                s["checks"].append(de.event_specific_data.check_name)
        rows = []
        for s in steps.values():
            if s["start"] is None:
                continue
            if s["end"] is None:  # still running when the run ended or was killed
                s["end"], s["status"] = run_end or time.time(), "UNFINISHED"
            s["seconds"] = s["end"] - s["start"]
            rows.append(s)
        rows.sort(key=lambda r: r["start"])
        return {
            "run_id": run.run_id,
            "status": run.status.value,
            "run_wall_s": (run_end - run_start) if run_start and run_end else None,
            "first_step_after_run_start_s": (rows[0]["start"] - run_start) if rows and run_start else None,
            "steps": rows,
        }


# --- one benchmark -----------------------------------------------------------------------------

def _env(work: Path, source: str, dagster_home: Path) -> dict:
    env = dict(os.environ)
    env.update({
        "DAGSTER_HOME": str(dagster_home),
        "DAGSTER_DISABLE_TELEMETRY": "1",
        "CUSTOMER_ASSETS_SOURCE": source,
        "CUSTOMER_ASSETS_MAPPING": str(REPO / "data" / "online_retail_mapping.json"),
        "CUSTOMER_ASSETS_WAREHOUSE": str(work / "warehouse" / "customer_analytics.duckdb"),
        "CUSTOMER_ASSETS_LANDING": str(work / "landing"),
        "CUSTOMER_ASSETS_MODELS": str(work / "warehouse" / "models"),
        "CUSTOMER_ASSETS_REPORTS": str(work / "warehouse" / "reports"),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    })
    return env


def prepare_data(n: int, data_dir: Path) -> tuple[dict, float]:
    """The replicated file for N, generated once and cached in `data_dir/x<N>`."""
    folder = data_dir / f"x{n}"
    marker = folder / "done.json"
    if marker.exists():
        info = json.loads(marker.read_text())
        if Path(info["path"]).exists():
            return info, 0.0
    shutil.rmtree(folder, ignore_errors=True)
    info = generate.replicate(n, folder)
    marker.write_text(json.dumps(info))
    return info, info["seconds"]


def prepare_week(n: int, data_dir: Path) -> dict:
    folder = data_dir / f"x{n}_week"
    marker = folder / "done.json"
    if marker.exists():
        return json.loads(marker.read_text())
    shutil.rmtree(folder, ignore_errors=True)
    info = generate.refresh_week(n, folder)
    marker.write_text(json.dumps(info))
    return info


def refresh_job_exists(env: dict) -> bool:
    code = (
        "import sys\nfrom customer_assets.definitions import defs\n"
        f"try:\n    defs.resolve_job_def({REFRESH_JOB!r})\nexcept Exception:\n    sys.exit(3)\n"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                          capture_output=True).returncode == 0


def timed_run(label: str, cmd: list[str], env: dict, work: Path, dagster_home: Path,
              input_rows: int, timeout: float, max_rss_gb: float = float("inf")) -> dict:
    print(f"\n[{label}] {' '.join(cmd)}", flush=True)
    load_before = os.getloadavg()
    commit, started = _git_commit(), time.time()  # the code the run loads (plus any uncommitted edits)
    usage = run_sampled(cmd, env, work / f"{label}.log", timeout, max_rss_gb)
    events = step_times(dagster_home)
    attribute_samples(events["steps"], usage.pop("samples"))
    result = {
        "label": label,
        "command": cmd,
        "git_commit": commit,
        "started_unix": started,
        "input_rows": input_rows,
        **usage,
        **events,
        "rows_per_s": input_rows / usage["wall_s"] if usage["wall_s"] else None,
        "steps_sum_s": sum(s["seconds"] for s in events["steps"]),
        # steps run two at a time (customer_assets/executor.py): the run's span, not the sum of steps
        "steps_span_s": (max(s["end"] or s["start"] for s in events["steps"]) - min(s["start"] for s in events["steps"])
                         if events["steps"] else 0.0),
        "loadavg_1m_before": load_before[0],
        "loadavg_1m_after": os.getloadavg()[0],
        "log": str(work / f"{label}.log"),
    }
    result["outside_steps_s"] = result["wall_s"] - result["steps_span_s"]
    print_table(result)
    if usage["returncode"] != 0:
        tail = (work / f"{label}.log").read_text(errors="replace").splitlines()[-25:]
        print("  --- last log lines ---\n  " + "\n  ".join(tail))
    return result


def bench_n(n: int, args) -> list[dict]:
    data, gen_s = prepare_data(n, args.data_dir)
    if gen_s:
        print(f"generated {data['rows']:,} rows for N={n} in {gen_s:.1f} s -> {data['path']}")
    work = Path(tempfile.mkdtemp(prefix=f"bench_x{n}_"))
    dagster_home = work / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(REPO / ".dagster_home" / "dagster.yaml", dagster_home / "dagster.yaml")
    for d in ("landing", "warehouse"):
        (work / d).mkdir()
    env = _env(work, data["path"], dagster_home)
    cmd = [str(BIN / "dagster"), "asset", "materialize", "-m", "customer_assets", "--select", "*"]
    results = [timed_run(f"full_x{n}", cmd, env, work, dagster_home, data["rows"], args.timeout,
                         args.max_rss_gb)]
    results[0].update({"n": n, "generate_s": gen_s, "work_dir": str(work)})
    if args.refresh and results[0]["returncode"] == 0:
        week = prepare_week(n, args.data_dir)
        shutil.copy(week["path"], work / "landing" / Path(week["path"]).name)
        if refresh_job_exists(env):
            rcmd = [str(BIN / "dagster"), "job", "execute", "-m", "customer_assets", "-j", REFRESH_JOB]
        else:
            print(f"(no job named {REFRESH_JOB}: timing a full materialization with the new week)")
            rcmd = cmd
        r = timed_run(f"refresh_x{n}", rcmd, env, work, dagster_home, week["rows"], args.timeout, args.max_rss_gb)
        r.update({"n": n, "week": week, "work_dir": str(work),
                  "ratio_to_full": r["wall_s"] / results[0]["wall_s"]})
        target = summary.REFRESH_RATIO_TARGETS.get(n)
        print(f"  refresh / full wall: {r['ratio_to_full']:.3f}"
              + (f" (target < {target:.3f})" if target else f" (no target at N={n})"))
        results.append(r)
    if any(r["returncode"] != 0 for r in results):
        print(f"  a run failed: its warehouse, DAGSTER_HOME and logs are kept in {work}")
    elif not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return results


# --- output ------------------------------------------------------------------------------------

def _step_label(s: dict) -> str:
    assets = s["assets"]
    if not assets or assets == [s["step"]]:
        label = s["step"]
    else:
        label = f"{s['step']} ({', '.join(assets)})"
    return label + ("" if s["status"] in (None, "SUCCESS") else f" [{s['status']}]")


def print_table(r: dict) -> None:
    steps = sorted(r["steps"], key=lambda s: -s["seconds"])
    width = max([len(_step_label(s)) for s in steps] + [28])
    # CPU s: the whole process tree's CPU while the step ran (a step running beside it counts too)
    print(f"  {'asset / step':<{width}} {'seconds':>8} {'share':>6} {'CPU s':>7} {'peak GB':>8}")
    for s in steps:
        share = s["seconds"] / r["wall_s"] * 100 if r["wall_s"] else 0
        cpu = f"{s['cpu_s']:7.2f}" if s.get("cpu_s") is not None else f"{'':7}"
        rss = f"{s['peak_rss_gb']:8.2f}" if s.get("peak_rss_gb") is not None else f"{'':8}"
        print(f"  {_step_label(s):<{width}} {s['seconds']:8.2f} {share:5.1f}% {cpu} {rss}")
    print(f"  {'sum of step times (steps overlap)':<{width}} {r['steps_sum_s']:8.2f}")
    print(f"  {'steps: first start to last end':<{width}} {r['steps_span_s']:8.2f}")
    print(f"  {'outside steps (CLI start, load, run setup)':<{width}} {r['outside_steps_s']:8.2f}")
    print(f"  {'TOTAL wall (CLI process)':<{width}} {r['wall_s']:8.2f} {'':6} {r['cpu_s']:7.2f}")
    status = ("TIMED OUT" if r["timed_out"] else "KILLED: over --max-rss-gb" if r.get("killed_over_max_rss")
              else f"{r['status']} (exit {r['returncode']})")
    print(f"  status {status}; peak RSS (process tree) {r['peak_rss_gb']:.2f} GB; "
          f"CPU {r['cpu_s']:.1f} s; input rows {r['input_rows']:,}; "
          f"{r['rows_per_s']:,.0f} rows/s; load avg {r['loadavg_1m_before']:.1f}->{r['loadavg_1m_after']:.1f}")


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True).stdout.strip() or None
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Time the whole pipeline on Online Retail x N.")
    ap.add_argument("--n", type=int, action="append", help="replicas (repeatable); default 1")
    ap.add_argument("--refresh", action="store_true", help="also time the weekly refresh")
    ap.add_argument("--repeat", type=int, default=1,
                    help="build (and refresh) each N this many times; a summary gives medians and ranges")
    ap.add_argument("--keep", action="store_true", help="keep the temporary warehouse and logs")
    ap.add_argument("--timeout", type=float, default=900, help="seconds before a run is killed")
    ap.add_argument("--max-rss-gb", type=float, default=14,
                    help="kill a run whose process tree exceeds this resident memory (GB)")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                    help="cache of generated sources")
    args = ap.parse_args(argv)
    ns = args.n or [1]
    started = dt.datetime.now(dt.timezone.utc)
    commit_at_start = _git_commit()
    all_results = []
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    for n in ns:
        for i in range(max(1, args.repeat)):
            if args.repeat > 1:
                print(f"\n=== N={n}, round {i + 1} of {args.repeat}")
            all_results.extend(bench_n(n, args))
            out.write_text(json.dumps({
                "started": started.isoformat(), "git_commit": commit_at_start, "cpus": os.cpu_count(),
                "runs": all_results, "summary": summary.summarize(all_results)}, indent=2, default=str))
    if args.repeat > 1:
        summary.print_summary(summary.summarize(all_results))
    print(f"\nresults -> {out}")
    return 0 if all(r["returncode"] == 0 for r in all_results) else 1


if __name__ == "__main__":
    sys.exit(main())
