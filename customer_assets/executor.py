"""An in-process executor that runs up to N independent steps at once, in threads.

Why: every step works on the one DuckDB file, and DuckDB admits one writing *process*: separate step
processes (the multiprocess executor) would queue on the file lock and pay a Python start-up each.
Within one process, though, any number of connections share the database, and most of a step's time
is spent where Python's GIL is released (DuckDB queries, numpy, xgboost). The plain in-process
executor runs the steps one after the other and leaves the second core idle while, say, the churn
model trains and the star schema is rebuilt. This one runs `max_concurrent` ready steps at a time
(default: 3, or 1 on one CPU; see `default_max_concurrent`), each in its own thread, with Dagster's
own step machinery (events, retries, asset checks, hooks) unchanged; the main thread hands out steps
in the plan's order and forwards their events.

The `duckdb` pool (one slot) still keeps *other* runs, i.e. other processes, off the file: the first
step of this run that needs the pool claims the slot and the run keeps it until it ends; its steps
share the claim (in one process they are one writer to DuckDB).

A terminated run (Ctrl+C, "Terminate" in the UI) stops handing out steps and interrupts the
running ones where their Python code next runs (a DuckDB query in progress finishes first).
"""

import ctypes
import importlib
import os
import queue
import threading
from collections.abc import Iterator
from contextlib import ExitStack

import dagster as dg
from dagster._core.errors import DagsterExecutionInterruptedError
from dagster._core.events import DagsterEvent, EngineEventData
from dagster._core.execution.api import ExecuteRunWithPlanIterable
from dagster._core.execution.compute_logs import create_compute_log_file_key
from dagster._core.execution.context.system import PlanExecutionContext, PlanOrchestrationContext
from dagster._core.execution.context_creation_job import PlanExecutionContextManager
from dagster._core.execution.plan.execute_plan import _trigger_hook, dagster_event_sequence_for_step
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.execution.retries import RetryMode, get_retries_config
from dagster._core.executor.base import Executor
from dagster._utils.error import serializable_error_info_from_exc_info

from customer_assets.common.plotting import release_held
from customer_assets.common.threads import available_cores

_DONE = object()  # a step thread's last message


class RunPoolClaims(InstanceConcurrencyContext):
    """Pool claims made once per run: the first step that needs a pool claims its slot in the
    instance, and the run keeps it until it ends; its other steps (running beside it or after it)
    use that claim. Other runs' steps wait for the slot as before: one run writes the warehouse at a
    time, and a run pays one claim instead of a claim and a release per step."""

    def __init__(self, instance, dagster_run):
        super().__init__(instance, dagster_run)
        self._lock = threading.Lock()
        self._owner: dict = {}        # pool -> the step key the run's slot was claimed under

    def claim(self, concurrency_key: str, step_key: str, step_priority: int = 0) -> bool:
        with self._lock:
            if concurrency_key in self._owner:
                return True
            if not super().claim(concurrency_key, step_key, step_priority):
                return False
            self._owner[concurrency_key] = step_key
            return True

    def free_step(self, step_key) -> None:
        """A step ended: the run's slots stay claimed until the run ends (`__exit__`)."""

    def __exit__(self, exc_type, exc_value, traceback) -> None:
        with self._lock:
            owners, self._owner = list(self._owner.values()), {}
        for step_key in owners:
            super().free_step(step_key)
        super().__exit__(exc_type, exc_value, traceback)


class ThreadedInProcessExecutor(Executor):
    def __init__(self, retries: RetryMode, max_concurrent: int):
        self._retries = retries
        self.max_concurrent = max(1, int(max_concurrent))

    @property
    def retries(self) -> RetryMode:
        return self._retries

    def execute(self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan) -> Iterator[DagsterEvent]:
        collect_garbage_less()
        import_lazy_modules()
        yield DagsterEvent.engine_event(
            plan_context,
            f"Executing steps in process (pid: {os.getpid()}), up to {self.max_concurrent} at a time in threads",
            event_specific_data=EngineEventData.in_process(os.getpid(), execution_plan.step_keys_to_execute),
        )
        yield from iter(
            ExecuteRunWithPlanIterable(
                execution_plan=plan_context.execution_plan,
                iterator=self._iterator,
                execution_context_manager=PlanExecutionContextManager(
                    job=plan_context.job,
                    retry_mode=plan_context.retry_mode,
                    execution_plan=plan_context.execution_plan,
                    run_config=plan_context.run_config,
                    dagster_run=plan_context.dagster_run,
                    instance=plan_context.instance,
                    raise_on_error=plan_context.raise_on_error,
                    output_capture=plan_context.output_capture,
                ),
            )
        )

    def _iterator(self, job_context: PlanExecutionContext, execution_plan: ExecutionPlan) -> Iterator[DagsterEvent]:
        with ExitStack() as stack:
            claims = stack.enter_context(RunPoolClaims(job_context.instance, job_context.dagster_run))
            active = stack.enter_context(execution_plan.start(
                retry_mode=job_context.retry_mode,
                sort_key_fn=critical_path_first(execution_plan, _recent_seconds(job_context, execution_plan)),
                max_concurrent=self.max_concurrent,
                instance_concurrency_context=claims,
                step_dependency_config=job_context.step_dependency_config,
            ))
            compute_logs = job_context.instance.compute_log_manager
            step_keys = [step.key for step in execution_plan.get_steps_to_execute_in_topo_order()]
            log_key = compute_logs.build_log_key_for_run(job_context.run_id, create_compute_log_file_key())
            log_context = stack.enter_context(compute_logs.capture_logs(log_key))
            yield DagsterEvent.capture_logs(job_context, step_keys, log_key, log_context)
            yield from self._run_steps(job_context, active)

    def _run_steps(self, job_context: PlanExecutionContext, active) -> Iterator[DagsterEvent]:
        release_held()  # if this thread drew before the run (a test, a notebook), the steps may draw now
        events: queue.Queue = queue.Queue()
        running: dict = {}   # step key -> (thread, step context, events of the step so far)
        stopping = False
        while (not stopping and not active.is_complete) or running:
            if active.check_for_interrupts() and not stopping:
                stopping = True
                active.mark_interrupted()
                yield DagsterEvent.engine_event(
                    job_context, "Run terminated: no new step starts; interrupting the running ones",
                    EngineEventData.interrupted(list(running)),
                )
                for thread, _, _ in running.values():
                    _interrupt(thread)
            if not stopping:
                for step in active.get_steps_to_execute(limit=self.max_concurrent - len(running)):
                    step_context = job_context.for_step(step, active.get_known_state())
                    thread = threading.Thread(
                        target=_run_step, args=(step.key, step_context, events),
                        name=f"step:{step.key}", daemon=True,
                    )
                    running[step.key] = (thread, step_context, [])
                    thread.start()
                yield from active.concurrency_event_iterator(job_context)
            if not running:
                if not active.is_complete and not stopping:
                    active.sleep_til_ready()  # waiting for a pool slot held by another run
                continue
            try:
                key, event = events.get(timeout=0.5)
            except queue.Empty:
                continue  # look for interrupts again
            if event is _DONE:
                thread, step_context, step_events = running.pop(key)
                thread.join()
                active.verify_complete(job_context, key)
                for plan_event in active.plan_events_iterator(job_context):
                    step_events.append(plan_event)
                    yield plan_event
                yield from _trigger_hook(step_context, step_events)
            elif isinstance(event, BaseException):
                _, step_context, step_events = running[key]
                if any(e.is_step_failure or e.is_step_success or e.is_step_up_for_retry for e in step_events):
                    continue  # the step's outcome is known (an interrupted step re-raises after its failure)
                # a failure outside Dagster's own step error handling: fail the step, keep the run going
                error = serializable_error_info_from_exc_info((type(event), event, event.__traceback__))
                failure = self.log_failure_or_retry_event_after_error(step_context, error, active.get_known_state())
                step_events.append(failure)
                yield failure
                active.handle_event(failure)
            else:
                running[key][2].append(event)
                yield event
                active.handle_event(event)


# Modules that libraries import lazily, from inside calls, and that more than one thread may then
# import at once. SQLAlchemy imports sqlalchemy.orm from inside some statements: a run's threads store
# events and read asset records (Dagster's SQLite storage) while a step, or common/warm_imports through
# Great Expectations, imports the ORM; a thread then met the half-imported module and its step failed
# ("partially initialized module 'sqlalchemy.orm.exc' has no attribute 'UnmappedClassError'", seen in
# customer_report's data-version lookup while the GE step imported GE beside it). Imported once, in
# the run's main thread, before any step thread starts (53 ms).
LAZY_MODULES = ("sqlalchemy.orm",)


def import_lazy_modules() -> None:
    for name in LAZY_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:  # an instance without SQLAlchemy: nothing imports it lazily either
            pass


_FREEZE_AT_EXIT = threading.Lock()
_freeze_registered: list = []
GC_THRESHOLDS = (50_000, 20, 100)  # Python's defaults: (700, 10, 10)


def collect_garbage_less() -> None:
    """Keep Python's cyclic garbage collector off the run's long-lived objects.

    A process that runs the pipeline holds millions of objects that live as long as it does: the
    modules of Dagster, Great Expectations, pydantic, scikit-learn, xgboost and matplotlib. Every
    full collection walked all of them: 10 in the N=20 full run and 9 in the weekly refresh, 1.6 and
    1.2 s; with the smaller collections, 2.2 and 1.6 s of GC. So, for a process running the pipeline:
    - the objects alive when a run starts are frozen after one last full collection (`gc.freeze`:
      no collection looks at them again), as are those of the libraries the warm-up thread
      imports (common/warm_imports);
    - collections start after 50,000 new container objects instead of 700 (a step makes tens of
      thousands of short-lived ones; refcounting frees them, not the collector);
    - every object is frozen at exit, so that the interpreter's last collection skips them (it
      walked them all, 1.0-1.5 s after the run had ended, in every `dagster asset materialize` /
      `job execute`). The memory goes back to the OS with the process; exit handlers and
      `weakref.finalize` callbacks still run.
    Measured with gc.callbacks: 2.22 -> 0.81 s of GC in the N=20 full run, 1.57 -> 0.9 s in the
    weekly refresh. Objects frozen here are freed by refcounting as before; only one in a reference
    cycle would stay until the process ends."""
    import atexit
    import gc

    gc.collect()  # garbage left from before the run (a test session, a notebook) is not frozen with it
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    with _FREEZE_AT_EXIT:
        if not _freeze_registered:
            atexit.register(gc.freeze)
            _freeze_registered.append(True)


def critical_path_first(execution_plan: ExecutionPlan, seconds: dict | None = None):
    """Sort key for ready steps: the `dagster/priority` tag first (as Dagster's executors), then the
    step with the longest remaining path, in seconds: its own time plus the longest path after it.

    `seconds` (step key -> duration, from `recent_step_seconds`) weights the path by how long each
    step took in the last successful runs; a step without a record counts as the median of those
    with one (1 s when none has). Starting the long path early keeps the second thread busy with the
    short side branches instead of leaving the long path for the end; weighing by time also starts
    a long step without successors before a string of quick ones, instead of last, beside the
    final report (the weekly refresh's persona step, which then drew its figures while the report
    waited for matplotlib, taken a step at a time until common/plotting took it per figure, and
    ended the run on one core)."""
    steps = execution_plan.get_steps_to_execute_in_topo_order()
    seconds = dict(seconds or {})
    known = sorted(seconds.values())
    default = known[len(known) // 2] if known else 1.0
    children: dict = {step.key: [] for step in steps}
    for step in steps:
        for parent in step.get_execution_dependency_keys():
            children.setdefault(parent, []).append(step.key)
    height: dict = {}
    for step in reversed(steps):  # children before parents
        height[step.key] = seconds.get(step.key, default) + max((height.get(c, 0.0) for c in children[step.key]), default=0.0)

    def key(step) -> float:
        try:
            priority = int(step.tags.get("dagster/priority", 0))
        except ValueError:
            priority = 0
        return -priority * 1e9 - height.get(step.key, 0.0)

    return key


def recent_step_seconds(instance, job_name: str, step_keys, runs: int = 5) -> dict:
    """step key -> seconds the step took in the most recent successful run that ran it: runs of
    `job_name` first (a weekly refresh's steps take less time than a full build's), then the other
    jobs' runs; at most `runs` runs are read. Empty for a new instance: then every step weighs the
    same (see critical_path_first)."""
    from dagster import DagsterRunStatus, RunsFilter
    from dagster._core.execution.stats import StepEventStatus

    wanted = set(step_keys)
    records = instance.get_runs(filters=RunsFilter(statuses=[DagsterRunStatus.SUCCESS]), limit=runs)
    found: dict = {}
    for run in sorted(records, key=lambda r: r.job_name != job_name):  # stable: newest first in each
        missing = wanted - found.keys()
        if not missing:
            break
        for stat in instance.get_run_step_stats(run.run_id, step_keys=sorted(missing)):
            if stat.status == StepEventStatus.SUCCESS and stat.start_time and stat.end_time:
                found[stat.step_key] = stat.end_time - stat.start_time
    return found


def _recent_seconds(job_context: PlanExecutionContext, execution_plan: ExecutionPlan) -> dict:
    """recent_step_seconds for this run's steps; {} (equal weights) if the history cannot be read."""
    try:
        return recent_step_seconds(job_context.instance, job_context.dagster_run.job_name,
                                   execution_plan.step_keys_to_execute)
    except Exception as exc:  # noqa: BLE001 - an ordering hint: never fail a run over it
        job_context.log.debug(f"step durations of earlier runs not read ({exc!r}): steps weigh the same")
        return {}


def _run_step(key: str, step_context, events: queue.Queue) -> None:
    try:
        for event in dagster_event_sequence_for_step(step_context):
            events.put((key, event))
    except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which fails the step
        events.put((key, exc))
    finally:
        release_held()  # matplotlib, if the step drew (common/plotting)
        events.put((key, _DONE))


def _interrupt(thread: threading.Thread) -> None:
    """Raise DagsterExecutionInterruptedError in `thread` where it next runs Python code."""
    if thread.ident is not None and thread.is_alive():
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(thread.ident), ctypes.py_object(DagsterExecutionInterruptedError)
        )


def default_max_concurrent() -> int:
    """3 steps at a time with two CPUs or more, 1 on one CPU (as common/threads.available_cores
    counts them: the process's affinity, capped by a container's CPU quota).

    One more step than this machine's two cores: a step spends part of its time in Python, holding
    the GIL, and the other steps' Python then waits; a third step's DuckDB, numpy or xgboost work
    uses the core left idle meanwhile (common/plotting and side_process keep matplotlib from
    serializing the steps). DuckDB's worker threads are shared out among the open connections
    (resources._ThreadShares), so three steps on two cores still run two threads' worth of queries.
    Measured at N=20 on 2 cores, `make bench` with 2 and then 3 back to back: weekly refresh
    14.2-14.8 -> 13.8 s (5 and 4 runs; refresh / full 0.325-0.344 -> 0.321-0.329), full build
    43.1-43.7 -> 42.0-43.1 s; peak memory 1.85 -> 2.03-2.12 GB at N=20 and 4.72 -> 5.72 GB at
    N=100. Four steps were no faster than three (refresh A/B, 3 pairs)."""
    return 1 if available_cores() < 2 else 3


@dg.executor(
    name="in_process_threads",
    config_schema={
        "retries": get_retries_config(),
        "max_concurrent": dg.Field(
            int, is_required=False,
            description="Steps run at once, each in a thread of the run's process (default: 3, or 1 on one CPU).",
        ),
    },
)
def threaded_in_process_executor(init_context) -> ThreadedInProcessExecutor:
    """Runs every step in the run's process, up to `max_concurrent` independent steps at a time."""
    config = init_context.executor_config
    return ThreadedInProcessExecutor(
        retries=RetryMode.from_config(config["retries"]),
        max_concurrent=config.get("max_concurrent") or default_max_concurrent(),
    )
