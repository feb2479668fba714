"""The threaded in-process executor: independent steps run at the same time, failures and skips
behave as in Dagster's own executors, and the pool slot is shared by the run's steps and freed."""

import os
import signal
import threading
import time

import dagster as dg
import pytest

from customer_assets.executor import critical_path_first, threaded_in_process_executor

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


def serial_job():
    return dg.Definitions(
        assets=[source_table, broken, after_broken, slow_sibling], executor=threaded_in_process_executor,
        jobs=[dg.define_asset_job("serial", selection="*",
                                  config={"execution": {"config": {"max_concurrent": 1}}})],
    ).resolve_job_def("serial")


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
