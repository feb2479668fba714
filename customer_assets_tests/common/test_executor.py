"""The threaded in-process executor: independent steps run at the same time, failures and skips
behave as in Dagster's own executors, and the pool slot is shared by the run's steps and freed."""

import os
import signal
import threading
import time

import dagster as dg
import pytest

from customer_assets import executor
from customer_assets.executor import critical_path_first, recent_step_seconds, threaded_in_process_executor

# Two steps that can only both finish when they run at the same time: each waits for the other.
_BARRIER = threading.Barrier(2, timeout=20)
_SEEN_THREADS: set = set()


@dg.asset(pool="duckdb")
def source_table():
    return 1


@dg.asset(pool="duckdb")
def left(source_table):
    _SEEN_THREADS.add(threading.current_thread().name)
    _BARRIER.wait()
    return source_table + 1


@dg.asset(pool="duckdb")
def right(source_table):
    _SEEN_THREADS.add(threading.current_thread().name)
    _BARRIER.wait()
    return source_table + 2


@dg.asset(pool="duckdb")
def joined(left, right):
    return left + right


@dg.asset
def broken(source_table):
    raise ValueError("this step fails on purpose")


@dg.asset
def after_broken(broken):
    return broken


@dg.asset
def slow_sibling(source_table):
    time.sleep(0.2)
    return source_table


_SLEEPER_STARTED = threading.Event()


@dg.asset
def sleeper(source_table):
    _SLEEPER_STARTED.set()
    for _ in range(600):  # 30 s unless interrupted
        time.sleep(0.05)
    return source_table


@dg.asset
def after_sleeper(sleeper):
    return sleeper


def interruptible_job():
    return dg.Definitions(
        assets=[source_table, sleeper, after_sleeper], executor=threaded_in_process_executor,
        jobs=[dg.define_asset_job("interruptible", selection="*")],
    ).resolve_job_def("interruptible")


# Three steps that can only finish when all three run at once (the default on two CPUs or more).
_BARRIER3 = threading.Barrier(3, timeout=20)


def _third(name):
    @dg.asset(name=name, pool="duckdb")
    def step(source_table):
        _BARRIER3.wait()
        return source_table

    return step


def three_job():
    return dg.Definitions(
        assets=[source_table, _third("first"), _third("second"), _third("third")],
        executor=threaded_in_process_executor, jobs=[dg.define_asset_job("three", selection="*")],
    ).resolve_job_def("three")


def concurrent_job():
    return dg.Definitions(
        assets=[source_table, left, right, joined], executor=threaded_in_process_executor,
        jobs=[dg.define_asset_job("concurrent", selection="*")],
    ).resolve_job_def("concurrent")


def failing_job():
    return dg.Definitions(
        assets=[source_table, broken, after_broken, slow_sibling], executor=threaded_in_process_executor,
        jobs=[dg.define_asset_job("failing", selection="*")],
    ).resolve_job_def("failing")


def source_only_job():
    return dg.Definitions(
        assets=[source_table], executor=threaded_in_process_executor,
        jobs=[dg.define_asset_job("source_only", selection="source_table")],
    ).resolve_job_def("source_only")


def serial_job():
    return dg.Definitions(
        assets=[source_table, broken, after_broken, slow_sibling], executor=threaded_in_process_executor,
        jobs=[dg.define_asset_job("serial", selection="*",
                                  config={"execution": {"config": {"max_concurrent": 1}}})],
    ).resolve_job_def("serial")


@dg.asset
def orm_probe():
    """Writes whether SQLAlchemy's ORM was imported when a step's own code began."""
    import sys

    with open(os.environ["ORM_PROBE_FILE"], "w") as f:
        f.write(str("sqlalchemy.orm" in sys.modules))


def orm_probe_job():
    return dg.Definitions(
        assets=[orm_probe], executor=threaded_in_process_executor,
        jobs=[dg.define_asset_job("orm_probe", selection="orm_probe")],
    ).resolve_job_def("orm_probe")


@pytest.fixture
def instance(tmp_path):
    with dg.instance_for_test(
        temp_dir=str(tmp_path), overrides={"concurrency": {"pools": {"default_limit": 1}}}
    ) as inst:
        yield inst


def _step_events(result, event_type):
    return {e.step_key for e in result.all_events if e.event_type_value == event_type}


def test_independent_steps_run_at_the_same_time_and_share_the_pool_slot(instance):
    _SEEN_THREADS.clear()
    with dg.execute_job(dg.reconstructable(concurrent_job), instance=instance) as result:
        assert result.success  # left and right passed the barrier: they ran at once
        assert _step_events(result, "STEP_SUCCESS") == {"source_table", "left", "right", "joined"}
    assert len(_SEEN_THREADS) == 2  # in two threads
    # the one-slot pool did not keep them apart (same run, same process) and is free again
    pool = instance.event_log_storage.get_concurrency_info("duckdb")
    assert pool.slot_count == 1
    assert pool.active_slot_count == 0 and pool.pending_step_count == 0


def test_a_failed_step_fails_the_run_skips_its_children_and_lets_the_others_finish(instance):
    with dg.execute_job(dg.reconstructable(failing_job), instance=instance, raise_on_error=False) as result:
        assert not result.success
        assert _step_events(result, "STEP_FAILURE") == {"broken"}
        assert _step_events(result, "STEP_SUCCESS") == {"source_table", "slow_sibling"}
        assert "after_broken" not in _step_events(result, "STEP_START")  # never ran: its input failed
        failure = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][0]
        assert "this step fails on purpose" in str(failure.step_failure_data.error)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one step at a time on one CPU")
def test_by_default_three_steps_run_at_once(instance):
    with dg.execute_job(dg.reconstructable(three_job), instance=instance) as result:
        assert result.success  # the three passed the barrier together
        assert _step_events(result, "STEP_SUCCESS") == {"source_table", "first", "second", "third"}


def test_default_concurrency_is_three_on_two_cpus_or_more_and_one_on_one(monkeypatch):
    from customer_assets.common import threads

    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: None)
    for cpus, expected in ((1, 1), (2, 3), (16, 3)):
        monkeypatch.setattr(threads.os, "sched_getaffinity", lambda _pid, cpus=cpus: set(range(cpus)))
        assert executor.default_max_concurrent() == expected, cpus
    # a 16-core host, but a container limited to half a CPU (docker run --cpus 0.5)
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: 0.5)
    assert executor.default_max_concurrent() == 1


def test_max_concurrent_1_runs_steps_one_after_the_other(instance):
    with dg.execute_job(dg.reconstructable(serial_job), instance=instance, raise_on_error=False) as result:
        starts = [e for e in result.all_events if e.event_type_value in ("STEP_START", "STEP_SUCCESS", "STEP_FAILURE")]
        in_flight, most = 0, 0
        for e in starts:
            in_flight += 1 if e.event_type_value == "STEP_START" else -1
            most = max(most, in_flight)
        assert most == 1


def test_the_longest_chain_starts_first():
    from dagster._core.execution.api import create_execution_plan

    plan = create_execution_plan(failing_job())
    key = critical_path_first(plan)
    order = [s.key for s in sorted(plan.get_steps_to_execute_in_topo_order(), key=key)]
    assert order[0] == "source_table"
    # broken -> after_broken is a chain of two; slow_sibling is alone
    assert order.index("broken") < order.index("slow_sibling")


def test_with_step_times_the_longest_path_in_seconds_starts_first():
    """By step count broken -> after_broken is the longer path; by the seconds the steps took last
    time slow_sibling is (5 s against 0.1 + 0.1 s), so it starts first. A step without a recorded
    time weighs the median of the recorded ones."""
    from dagster._core.execution.api import create_execution_plan

    plan = create_execution_plan(failing_job())
    ready = [s for s in plan.get_steps_to_execute_in_topo_order() if s.key != "source_table"]
    by_time = critical_path_first(plan, {"broken": 0.1, "after_broken": 0.1, "slow_sibling": 5.0})
    assert sorted(ready, key=by_time)[0].key == "slow_sibling"
    # no time for slow_sibling: it weighs the median (0.1 s), less than the chain's 0.2 s
    partial = critical_path_first(plan, {"broken": 0.1, "after_broken": 0.1})
    assert sorted(ready, key=partial)[0].key == "broken"


def test_recent_step_seconds_reads_the_last_successful_runs_same_job_first(instance):
    assert recent_step_seconds(instance, "concurrent", ["source_table"]) == {}  # a new instance
    _SEEN_THREADS.clear()
    with dg.execute_job(dg.reconstructable(concurrent_job), instance=instance) as result:
        assert result.success
        run_id = result.run_id
    with dg.execute_job(dg.reconstructable(source_only_job), instance=instance) as result:
        assert result.success  # newer than the concurrent run, and it ran source_table too
        other_id = result.run_id
    with dg.execute_job(dg.reconstructable(failing_job), instance=instance, raise_on_error=False) as result:
        assert not result.success
    times = recent_step_seconds(instance, "concurrent", ["source_table", "left", "right", "joined", "nope"])
    assert set(times) == {"source_table", "left", "right", "joined"}
    assert all(t > 0 for t in times.values())
    own = {s.step_key: s.end_time - s.start_time for s in instance.get_run_step_stats(run_id)}
    assert times == pytest.approx({k: own[k] for k in times})  # source_table: this job's run
    other = {s.step_key: s.end_time - s.start_time for s in instance.get_run_step_stats(other_id)}
    # another job: the newest successful run that ran the step; the failed run is never read
    # (slow_sibling ran there, in a run that failed)
    assert recent_step_seconds(instance, "failing", ["slow_sibling", "source_table"]) == pytest.approx(
        {"source_table": other["source_table"]})


def test_a_terminated_run_interrupts_its_running_step_and_starts_no_other(instance):
    _SLEEPER_STARTED.clear()

    def terminate():  # as the UI's "Terminate" or Ctrl+C: SIGINT to the run's process
        if _SLEEPER_STARTED.wait(20):
            os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=terminate, daemon=True).start()
    started = time.monotonic()
    with dg.execute_job(dg.reconstructable(interruptible_job), instance=instance, raise_on_error=False) as result:
        assert not result.success
        assert time.monotonic() - started < 15  # the 30 s step was cut short
        assert _step_events(result, "STEP_FAILURE") == {"sleeper"}
        assert "after_sleeper" not in _step_events(result, "STEP_START")


def test_after_a_run_the_garbage_collector_leaves_the_long_lived_objects_alone():
    """A process that ran a job with this executor collects less often, and freezes its objects at
    exit (the interpreter's last garbage collection then skips them): seen from an exit handler
    registered before the run, which runs after the executor's."""
    import subprocess
    import sys

    code = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: sys.stdout.write(f'{gc.get_threshold()[0]} frozen={gc.get_freeze_count()}\\n'))\n"
        "import dagster as dg\n"
        "from customer_assets_tests.common.test_executor import concurrent_job\n"
        "with dg.instance_for_test() as instance:\n"
        "    with dg.execute_job(dg.reconstructable(concurrent_job), instance=instance) as result:\n"
        "        assert result.success\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    threshold, frozen = out.stdout.strip().rsplit("\n", 1)[-1].split(" frozen=")
    assert int(threshold) == 50_000  # Python's default is 700
    assert int(frozen) > 100_000  # every object of the process, not a handful


def test_modules_libraries_import_lazily_are_imported_before_the_step_threads_start(tmp_path):
    """SQLAlchemy imports its ORM from inside statements; two threads doing that at once failed a step
    (executor.LAZY_MODULES). A fresh process that had not imported it sees it imported by the time a
    step's code runs."""
    import subprocess
    import sys

    probe = tmp_path / "orm.txt"
    code = (
        "import sys\n"
        "import dagster as dg\n"
        "from customer_assets_tests.common.test_executor import orm_probe_job\n"
        "assert 'sqlalchemy.orm' not in sys.modules, 'imported before the run: the test cannot tell'\n"
        "with dg.instance_for_test() as instance:\n"
        "    with dg.execute_job(dg.reconstructable(orm_probe_job), instance=instance) as result:\n"
        "        assert result.success\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "ORM_PROBE_FILE": str(probe)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert probe.read_text() == "True"
