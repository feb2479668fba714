"""Helper processes for library work that holds the GIL: rendering figures.

Why: a run executes its steps several at a time in threads of one process (executor.py). DuckDB releases
the GIL while it works; matplotlib's drawing does not. py-spy at N=20 (2 cores): the weekly refresh
held the GIL for 13 of its 17.5 s, 2.0 s of it rendering its 18 figures, while the other core was
often idle. In a helper process the rendering runs on the other core, beside the steps' Python.

A helper is `python -m customer_assets.common.side_process MODULE...`: it imports the MODULEs (its
warm-up, done while the run does other work), then answers calls read from its stdin, one at a time:
("package.module:function", args) -> (True, result) or (False, exception). Arguments and results
travel pickled, so a helper is for calls with small, picklable inputs and outputs (a figure and its
PNG), not for warehouse data. The helper imports only what its calls need (no Dagster, no pandas).

`Helper.call` raises `Unavailable` when the call could not be delivered or answered (the helper could
not start, its pipe broke, the arguments do not pickle): the caller then does the work in its own
process, with the same result. An exception raised by the function itself is raised to the caller,
with the helper's traceback as a note. A helper ends when its stdin closes: at the run process' exit,
or when that process dies.

Helpers are used when the process may use two cores or more; CUSTOMER_ASSETS_SIDE_PROCESSES=0 turns
them off (every call then runs in-process, as before).
"""

from __future__ import annotations

import atexit
import importlib
import logging
import os
import pickle
import struct
import subprocess
import sys
import threading
import traceback

ENV_SWITCH = "CUSTOMER_ASSETS_SIDE_PROCESSES"
_HEADER = struct.Struct("<Q")  # the byte length of the pickle that follows
_log = logging.getLogger(__name__)


class Unavailable(Exception):
    """The call did not reach the helper or its answer did not come back: do the work in-process."""


def enabled() -> bool:
    """Helpers are used unless CUSTOMER_ASSETS_SIDE_PROCESSES says no or the process has one core."""
    if os.environ.get(ENV_SWITCH, "").strip().lower() in ("0", "false", "no", "off"):
        return False
    from customer_assets.common.threads import available_cores

    return available_cores() >= 2


def resolve(path: str):
    """"package.module:function" -> the function."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _write(stream, blob: bytes) -> None:
    stream.write(_HEADER.pack(len(blob)))
    stream.write(blob)
    stream.flush()


def _read(stream):
    """The next pickled message, or None at the end of the stream."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    blob = stream.read(size)
    if len(blob) < size:
        return None
    return pickle.loads(blob)


class Helper:
    """One helper process, started on first use (or by `start`), used by one call at a time."""

    def __init__(self, name: str, warm: tuple = ()):
        self.name = name
        self.warm = tuple(warm)
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._owner = os.getpid()  # the process whose helper _proc is (a forked child needs its own)
        self._broken: str | None = None  # why the helper is not used again in this process

    def start(self) -> bool:
        """Start the helper now (it imports its warm-up modules while the caller goes on)."""
        with self._lock:
            return self._ensure(raise_=False) is not None

    def running(self) -> bool:
        """The helper process is up (started and not exited)."""
        with self._lock:
            return self._proc is not None and self._proc.poll() is None

    def call(self, path: str, *args):
        """path(*args) in the helper; `Unavailable` when that cannot be done there (see module)."""
        try:
            request = pickle.dumps((path, args), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as e:  # noqa: BLE001 - e.g. a lambda among the arguments
            raise Unavailable(f"arguments do not pickle: {e}") from e
        with self._lock:
            proc = self._ensure(raise_=True)
            try:
                _write(proc.stdin, request)
                answer = _read(proc.stdout)
            except Exception as e:  # noqa: BLE001 - a broken pipe or an answer that does not unpickle
                answer, why = None, f"{type(e).__name__}: {e}"
            else:
                why = f"exited with code {proc.poll()}"
            if answer is None:
                self._give_up(f"the helper stopped answering ({why})")
                raise Unavailable(self._broken)
        ok, value = answer
        if ok:
            return value
        raise value

    def stop(self) -> None:
        """Close the helper's stdin (it exits) and wait for it briefly."""
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is not None:
            _close(proc)

    def _ensure(self, raise_: bool):
        if self._owner != os.getpid():  # forked: the pipes are the parent's, never write to them
            self._proc, self._owner = None, os.getpid()
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        if self._proc is not None:
            self._give_up(f"the helper exited with code {self._proc.returncode}")
        if self._broken is None:
            try:
                self._proc = subprocess.Popen(
                    [sys.executable, "-m", __name__, *self.warm],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True,
                )
                if self not in _started:
                    _started.append(self)
                return self._proc
            except OSError as e:
                self._give_up(f"cannot start {sys.executable}: {e}")
        if raise_:
            raise Unavailable(self._broken)
        return None

    def _give_up(self, why: str) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            _close(proc)
        self._broken = f"{self.name} helper: {why}"
        _log.warning("%s; its work runs in the run's own process from now on", self._broken)


def _close_input(proc: subprocess.Popen) -> None:
    """Close the helper's stdin: it exits at the end of its input."""
    try:
        proc.stdin.close()
    except OSError:
        pass


def _close(proc: subprocess.Popen) -> None:
    _close_input(proc)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    try:
        proc.stdout.close()
    except OSError:
        pass


_started: list = []


@atexit.register
def _stop_all() -> None:
    """At exit: close each helper's stdin, and do not wait: it exits on its own at the end of its
    input (waiting added its interpreter shutdown, ~0.1 s, to every run's end)."""
    for helper in list(_started):
        proc, helper._proc = helper._proc, None
        if proc is not None:
            _close_input(proc)


# the pipeline's helper: figures are rendered in it (common.metadata.fig_to_png_bytes). Weekly refresh
# at N=20, helper on/off: 0.7 s faster on average over 10 back-to-back pairs (from -2.0 to +0.5 s).
# Great Expectations' suite ran in a second helper too, and that was not kept: a new process pays
# ~3.3 s of CPU to import pandas, scipy and GE, against 1.6 s in the run's process, which has the
# rest imported already (both helpers on/off, 3 pairs: 17.24/17.81, 16.75/16.63, 17.91/17.01 s)
FIGURES = Helper("figures", warm=("customer_assets.common._pyplot", "customer_assets.common.figure_png"))


def start_pipeline_helpers() -> None:
    """Start the helper (if enabled), so that its imports are done before the first call."""
    if enabled():
        FIGURES.start()


# --- the helper's side ----------------------------------------------------------------------------

def _portable(exc: BaseException) -> BaseException:
    """The exception itself when it pickles, else a RuntimeError naming it; with the traceback as a note."""
    text = "".join(traceback.format_exception(exc))
    try:
        pickle.loads(pickle.dumps(exc))
        out = exc
    except Exception:  # noqa: BLE001
        out = RuntimeError(f"{type(exc).__name__}: {exc}")
    if hasattr(out, "add_note"):  # Python 3.11+
        out.add_note(f"raised in a helper process (customer_assets.common.side_process):\n{text}")
    return out


def main(modules) -> None:
    import signal

    # Ctrl-C in a terminal reaches the whole process group: the run decides, the helper ends with it
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # what a library prints goes to stderr, never into the answers
    requests = sys.stdin.buffer
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the call that needs it raises the real error
            pass
    while True:
        request = _read(requests)
        if request is None:
            return
        path, args = request
        try:
            blob = pickle.dumps((True, resolve(path)(*args)), protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException as e:  # noqa: BLE001 - every failure goes back to the caller
            blob = pickle.dumps((False, _portable(e)), protocol=pickle.HIGHEST_PROTOCOL)
        _write(answers, blob)


if __name__ == "__main__":
    main(sys.argv[1:])
