"""Faults: a step's kernel is SIGKILLed mid-run; the runner gets SIGTERM or Ctrl-C mid-run.

A run must end with a readable state, leave no kernel process behind, and `--resume` must
complete it. The long step waits on a "hold" file instead of sleeping a fixed time, so the
test decides when it is mid-run (marker file written by the step) and when it may finish.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

WAIT_S = 90  # upper bound for conditions we poll for (never reached when things work)


def faults_notebook(project: Any, started: Path, hold: Path) -> Path:
    """prepare -> slow (waits while `hold` exists) -> finish, plus an independent `side`."""
    return project.write_notebook("faults", [
        "%load_ext scanflow_jupyter\n%scanflow_app faults",
        "%%executor prepare --outputs a\na = 1",
        "%%executor slow --inputs a --outputs b\n"
        "import os, pathlib, time\n"
        f"pathlib.Path({str(started)!r}).write_text(str(os.getpid()))\n"
        "deadline = time.time() + 150\n"
        f"while pathlib.Path({str(hold)!r}).exists() and time.time() < deadline:\n"
        "    time.sleep(0.05)\n"
        "b = a + 1",
        "%%executor finish --inputs b --outputs c\nc = b * 10",
        "%%executor side --outputs s\ns = 'side'",
    ])


# ---------------------------------------------------------------------------- /proc helpers


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process, or None if it does not exist."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    """Exists and is not a zombie (a zombie has exited; only its exit status is left)."""
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X", "x")


def descendants(root: int) -> set[int]:
    """Every process below `root` (children, their children, ...), from /proc ppid links."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None:
                children.setdefault(st[1], []).append(int(entry.name))
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def wait_until(condition: Any, what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for: {what}")
        time.sleep(0.05)


def still_alive(pids: set[int]) -> dict[int, str]:
    """The pids of `pids` still alive after a grace period for the kernel's exit to be reaped."""
    deadline = time.monotonic() + 15
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return {p: cmdline(p) for p in pids if alive(p)}


# ---------------------------------------------------------------------------- (a) SIGKILL a kernel


def test_sigkill_of_a_step_kernel_fails_the_step_and_leaves_no_orphans(runner, project):
    started, hold = project.root / "slow.started", project.root / "slow.hold"
    hold.write_text("hold")
    nb = faults_notebook(project, started, hold)
    kernel_pids: dict[str, int] = {}
    killed: list[int] = []
    problems: list[str] = []

    def kill_when_mid_run(pid: int) -> None:
        deadline = time.monotonic() + WAIT_S
        while not started.exists():
            if time.monotonic() > deadline:
                problems.append("the slow step never started its cell")
                return
            time.sleep(0.02)
        if started.read_text() != str(pid):
            problems.append(f"kernel_pid {pid} of step_started is not the kernel ({started.read_text()})")
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    def on_event(event: Any) -> None:
        if event.type == "step_started":
            kernel_pids[event.step] = event.data["kernel_pid"]
            if event.step == "slow":
                threading.Thread(target=kill_when_mid_run, args=(event.data["kernel_pid"],),
                                 daemon=True).start()

    try:
        out = runner.run(nb, on_event=on_event, max_parallel=2)
    finally:
        hold.unlink(missing_ok=True)

    assert problems == []
    assert killed == [kernel_pids["slow"]]
    assert out.result.status == "failed"
    assert out.statuses() == {"prepare": "succeeded", "slow": "failed", "finish": "skipped",
                              "side": "succeeded"}
    error = out.state.steps["slow"].error
    assert error is not None and error.ename == "DeadKernelError", error
    assert out.of("slow", "step_failed")[0].data["ename"] == "DeadKernelError"
    assert out.state.status == "failed"
    # no orphans: every kernel of the run is gone, and so is every other child of the zygote
    assert set(kernel_pids) == {"prepare", "slow", "side"}
    assert still_alive(set(kernel_pids.values())) == {}
    zygotes = {p for p in descendants(os.getpid()) if "scanflow_jupyter.runtime.zygote" in cmdline(p)}
    leftovers = set().union(*(descendants(z) for z in zygotes)) if zygotes else set()
    assert still_alive(leftovers) == {}


# ---------------------------------------------------------------------------- (b)/(c) stop the runner


def _running_state(project: Any) -> dict[str, Any] | None:
    """run.json of the (only) run once its `slow` step is running, else None."""
    folders = project.run_folders()
    if len(folders) != 1 or not (folders[0] / "run.json").exists():
        return None
    try:
        state = json.loads((folders[0] / "run.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, OSError):
        return None
    return state if state["steps"].get("slow", {}).get("status") == "running" else None


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
def test_stopping_the_runner_kills_every_kernel_and_resume_completes(cli_project, scanflow_cmd, how):
    project = cli_project
    started, hold = project.root / "slow.started", project.root / "slow.hold"
    hold.write_text("hold")
    nb = faults_notebook(project, started, hold)
    proc = subprocess.Popen([*scanflow_cmd, "run", str(nb), "--json"], cwd=project.root,
                            env=project.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        def mid_run() -> bool:
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"the runner exited early ({proc.returncode}):\n{out}\n{err}")
            return _running_state(project) is not None and started.exists()

        wait_until(mid_run, "run.json shows `slow` running and its cell has started")
        kernel_pid = int(started.read_text())
        tree = descendants(proc.pid)
        assert kernel_pid in tree, "the step's kernel descends from the runner (via the zygote)"
        zygote = [p for p in tree if "scanflow_jupyter.runtime.zygote" in cmdline(p)]
        assert zygote, f"no zygote below the runner: {[cmdline(p) for p in tree]}"

        if how == "SIGTERM":
            os.kill(proc.pid, signal.SIGTERM)
        else:  # a terminal's Ctrl-C: SIGINT to the foreground process group
            os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    # first the guarantees that hold whatever else goes wrong: no process of the run is left
    # (kernels in their own process groups, zygote, recorder), and run.json is readable
    assert still_alive(tree) == {}
    (folder,) = project.run_folders()
    state = project.store.read_state(folder.name)

    detail = f"exit {proc.returncode}, run.json status {state.status!r}, steps " \
        f"{ {n: s.status for n, s in state.steps.items()} }\nstdout:\n{stdout}\nstderr:\n{stderr}"
    assert proc.returncode == 130, detail
    doc = json.loads(stdout)
    assert doc["run_id"] == folder.name
    assert doc["status"] == "killed", detail
    assert doc["steps"]["slow"]["status"] == "killed", detail

    # the state on disk says what happened
    assert state.status == "killed"
    assert state.steps["prepare"].status == "succeeded"
    assert state.steps["slow"].status == "killed"
    assert state.steps["finish"].status in ("killed", "skipped")
    assert state.mlflow_run_id == doc["mlflow_run_id"]
    assert project.mlflow_client().get_run(state.mlflow_run_id).info.status == "KILLED"

    # resume completes the run
    hold.unlink()
    code, resumed = project.cli_json("run", str(nb), "--resume", doc["run_id"], "--json")
    assert code == 0, resumed
    assert resumed["status"] == "succeeded"
    statuses = {n: s["status"] for n, s in resumed["steps"].items()}
    assert statuses["prepare"] == "cached"
    assert statuses["slow"] == "succeeded" and statuses["finish"] == "succeeded"
    assert statuses["side"] == ("cached" if state.steps["side"].status == "succeeded" else "succeeded")
    final = project.store.read_state(resumed["run_id"])
    assert final.resumed_from == doc["run_id"]
    from scanflow_jupyter.data.records import OutputRecord
    from scanflow_jupyter.data.serializers import load_value

    record = dict(final.steps["finish"].outputs["c"])
    assert load_value(Path(record.pop("folder")), OutputRecord.from_dict(record)) == 20
