"""Process liveness on real processes: alive, dead, zombie (exited, not reaped), reused pid."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scanflow_jupyter import process_liveness as pl
from scanflow_jupyter.process_liveness import ProcessIdentity
from scanflow_jupyter.runtime.fork_provisioner import ForkedProcess

MARKER = "scanflow-liveness-test-marker"


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import sys, time; time.sleep(600)", MARKER])


def _zombie() -> subprocess.Popen[bytes]:
    """A child that has exited and is not reaped: waitid(WNOWAIT) returns once it exited, leaving it a zombie."""
    proc = subprocess.Popen([sys.executable, "-c", "pass", MARKER])
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    return proc


def test_a_running_child_is_alive_and_dead_once_killed() -> None:
    proc = _sleeper()
    try:
        assert pl.alive(proc.pid)
        assert MARKER in pl.command_line(proc.pid) and MARKER in pl.command_text(proc.pid)
        started = pl.create_time(proc.pid)
        assert started is not None and pl.alive(proc.pid, started)
    finally:
        proc.kill()
        proc.wait()
    assert not pl.alive(proc.pid)
    assert not pl.alive(proc.pid, started)
    assert pl.command_line(proc.pid) == [] and pl.command_text(proc.pid) == ""
    assert pl.create_time(proc.pid) is None


def test_a_zombie_is_not_alive() -> None:
    proc = _zombie()
    try:
        import psutil

        assert psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE  # the case under test is real
        assert not pl.alive(proc.pid)
        assert not ProcessIdentity.of(proc.pid).alive()
        assert pl.command_line(proc.pid) == []
    finally:
        proc.wait()
    assert not pl.alive(proc.pid)


def test_a_wrong_create_time_means_a_reused_pid() -> None:
    proc = _sleeper()
    try:
        started = pl.create_time(proc.pid)
        assert started is not None
        assert pl.alive(proc.pid, started + pl.CREATE_TIME_TOLERANCE / 2)
        assert not pl.alive(proc.pid, started - 60)  # the recorded process was created earlier
        assert not pl.alive(proc.pid, started + 60)
        assert not ProcessIdentity(proc.pid, started - 60).alive()
        assert ProcessIdentity(proc.pid).alive()  # no create time recorded: the pid alone decides
    finally:
        proc.kill()
        proc.wait()


def test_identity_is_json_and_old_records_without_create_time_read() -> None:
    me = ProcessIdentity.of()
    assert me.pid == os.getpid() and me.create_time is not None and me.alive()
    doc = json.loads(json.dumps(me.to_dict()))
    assert doc == {"pid": me.pid, "create_time": me.create_time}
    assert ProcessIdentity.from_dict(doc) == me
    assert ProcessIdentity.from_dict({"pid": str(me.pid)}) == ProcessIdentity(me.pid, None)


@pytest.mark.parametrize("pid", [None, 0, -1, 2**40])
def test_no_process_for_impossible_pids(pid: int | None) -> None:
    assert not pl.alive(pid)
    assert pl.command_line(pid) == [] and pl.create_time(pid) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="clock ticks since boot are a Linux /proc record")
def test_start_ticks_of_older_records_convert_to_the_create_time() -> None:
    ticks = Path(f"/proc/{os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()[19]
    converted = pl.ticks_to_create_time(ticks)
    assert converted is not None
    assert abs(converted - pl.create_time(os.getpid())) <= pl.CREATE_TIME_TOLERANCE
    assert pl.ticks_to_create_time("") is None and pl.ticks_to_create_time("x") is None


def test_forked_process_handle_sees_a_zombie_kernel_as_exited() -> None:
    """The fork provisioner's handle for a kernel that is not our child: a zombie has exited."""
    proc = _sleeper()
    try:
        handle = ForkedProcess(proc.pid)
        assert handle.poll() is None
        proc.kill()
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        assert handle.poll() == 0 and handle.returncode == 0
    finally:
        proc.kill()
        proc.wait()
