"""common/side_process: a helper process answers calls; whatever goes wrong with the helper itself
makes the call Unavailable (the caller then works in-process), never a wrong or lost result."""

import io
import logging
import pickle
import sys

import numpy as np
import pytest
from PIL import Image

from customer_assets.common import metadata, plotting, side_process
from customer_assets.common.side_process import Helper, Unavailable


@pytest.fixture
def helper():
    h = Helper("test")
    yield h
    h.stop()


def test_a_call_returns_the_functions_result_computed_in_another_process(helper):
    import os

    assert helper.call("math:hypot", 3.0, 4.0) == 5.0
    assert helper.call("os:getpid") != os.getpid()
    assert helper.running()


def test_an_exception_of_the_function_is_raised_to_the_caller_with_the_helpers_traceback(helper):
    with pytest.raises(ValueError, match="math domain error") as info:
        helper.call("math:sqrt", -1.0)
    if sys.version_info >= (3, 11):
        assert "raised in a helper process" in "".join(info.value.__notes__)
    assert helper.call("math:sqrt", 4.0) == 2.0  # the helper goes on


def test_printing_in_the_helper_does_not_corrupt_the_answers(helper):
    assert helper.call("builtins:print", "a library that prints to stdout") is None
    assert helper.call("math:hypot", 6.0, 8.0) == 10.0


def test_arguments_that_do_not_pickle_are_unavailable_and_the_helper_stays(helper):
    with pytest.raises(Unavailable, match="do not pickle"):
        helper.call("builtins:len", lambda: None)
    assert helper.call("builtins:len", [1, 2]) == 2


def test_a_helper_that_dies_makes_calls_unavailable_with_a_warning(helper, caplog):
    with caplog.at_level(logging.WARNING, logger="customer_assets.common.side_process"):
        with pytest.raises(Unavailable, match="stopped answering"):
            helper.call("os:_exit", 3)
        assert "in the run's own process from now on" in caplog.text
    with pytest.raises(Unavailable):  # not started again: its work stays in-process
        helper.call("math:hypot", 3.0, 4.0)
    assert not helper.running()


def test_a_helper_that_cannot_start_is_unavailable(monkeypatch):
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    h = Helper("test")
    assert h.start() is False
    with pytest.raises(Unavailable, match="cannot start"):
        h.call("math:hypot", 3.0, 4.0)


def test_the_helper_exits_when_its_stdin_closes(helper):
    helper.start()
    proc = helper._proc
    helper.stop()
    assert proc.poll() is not None


def test_helpers_can_be_switched_off(monkeypatch):
    monkeypatch.setenv(side_process.ENV_SWITCH, "0")
    assert not side_process.enabled()
    monkeypatch.setenv(side_process.ENV_SWITCH, "1")
    monkeypatch.setattr("customer_assets.common.threads.available_cores", lambda: 1)
    assert not side_process.enabled()  # one core: nothing to gain


# --- figures: rendered in the helper, the same PNG as in-process ----------------------------------

def _log_axes_figure():
    from matplotlib.ticker import FuncFormatter

    fig, axs = plotting.subplots(1, 2, figsize=(8, 3))
    rng = np.random.default_rng(0)
    axs[0].scatter(rng.lognormal(3, 1, 500), rng.lognormal(5, 1, 500), s=3)
    axs[0].set_xscale("log")
    axs[0].set_yscale("log")
    axs[0].xaxis.set_major_formatter(FuncFormatter(plotting.plain_number))
    axs[1].barh([f"product {i}" for i in range(12)], rng.random(12))
    axs[1].set_title("bars")
    fig.tight_layout()
    return fig


def _pyplot_figure():
    fig, ax = plotting.plt.subplots(figsize=(4, 3))  # pyplot's own (registered) figure
    ax.plot([1, 3, 2], label="line")
    ax.legend()
    plotting.release_held()
    return fig


@pytest.mark.parametrize("make", [_log_axes_figure, _pyplot_figure])
def test_a_figure_rendered_by_the_helper_is_the_same_png_as_rendered_here(make, monkeypatch):
    monkeypatch.setenv(side_process.ENV_SWITCH, "1")
    monkeypatch.setattr("customer_assets.common.threads.available_cores", lambda: 2)
    before = dict(metadata.RENDERED)
    by_helper = metadata.fig_to_png_bytes(make())
    assert metadata.RENDERED["helper"] == before["helper"] + 1
    monkeypatch.setenv(side_process.ENV_SWITCH, "0")
    here = metadata.fig_to_png_bytes(make())
    assert metadata.RENDERED["here"] == before["here"] + 1
    assert by_helper == here
    assert Image.open(io.BytesIO(by_helper)).size[0] > 100
    import matplotlib.pyplot

    assert matplotlib.pyplot.get_fignums() == []  # pyplot's figure closed either way


def test_a_figure_that_does_not_pickle_is_rendered_here(monkeypatch):
    from matplotlib.ticker import FuncFormatter

    monkeypatch.setenv(side_process.ENV_SWITCH, "1")
    monkeypatch.setattr("customer_assets.common.threads.available_cores", lambda: 2)
    fig, ax = plotting.subplots()
    ax.plot([1, 10, 100])
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    with pytest.raises(Exception):
        pickle.dumps(fig)
    before = dict(metadata.RENDERED)
    png = metadata.fig_to_png_bytes(fig)
    assert metadata.RENDERED["here"] == before["here"] + 1
    assert Image.open(io.BytesIO(png)).size[0] > 100


def test_when_the_helper_is_unavailable_the_figure_is_rendered_here(monkeypatch):
    monkeypatch.setenv(side_process.ENV_SWITCH, "1")
    monkeypatch.setattr("customer_assets.common.threads.available_cores", lambda: 2)
    broken = Helper("figures")
    broken._broken = "figures helper: broken for this test"
    monkeypatch.setattr(side_process, "FIGURES", broken)
    expected_fig = _log_axes_figure()
    monkeypatch.setenv(side_process.ENV_SWITCH, "0")
    expected = metadata.fig_to_png_bytes(expected_fig)
    monkeypatch.setenv(side_process.ENV_SWITCH, "1")
    before = dict(metadata.RENDERED)
    assert metadata.fig_to_png_bytes(_log_axes_figure()) == expected
    assert metadata.RENDERED["here"] == before["here"] + 1
    # matplotlib was given back: another figure can be made and rendered on another thread
    import threading

    out = []
    t = threading.Thread(target=lambda: (out.append(metadata.fig_to_png_bytes(_log_axes_figure())),
                                         plotting.release_held()))
    t.start()
    t.join(30)
    assert out == [expected]


def test_a_forked_child_starts_its_own_helper_instead_of_using_its_parents_pipes(helper):
    import os

    parent_helper_pid = helper.call("os:getpid")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: answers through its own helper, never the parent's pipes
        try:
            got = helper.call("os:getpid")
            os.write(write, b"ok" if got != parent_helper_pid else b"same")
        finally:
            os._exit(0)
    import select
    import signal

    ready, _, _ = select.select([read], [], [], 30)
    if not ready:
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert ready and os.read(read, 10) == b"ok"
    assert helper.call("os:getpid") == parent_helper_pid  # the parent's helper still answers it


def test_at_exit_the_helper_ends_with_its_input():
    import subprocess
    import time

    code = ("from customer_assets.common.side_process import FIGURES\n"
            "FIGURES.call('math:hypot', 3.0, 4.0)\n"
            "print(FIGURES._proc.pid)\n")
    # stderr not captured: the helper shares it, and run() would wait for the helper's end on it
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         text=True, timeout=60)
    assert out.returncode == 0
    pid = int(out.stdout.strip())
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            with open(f"/proc/{pid}/status") as f:
                if "State:\tZ" in f.read():  # ended, waiting to be reaped by init
                    break
        except FileNotFoundError:
            break  # gone
        time.sleep(0.05)
    else:
        raise AssertionError(f"helper {pid} still running after its parent exited")
