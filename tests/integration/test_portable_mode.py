"""Portable mode on Linux, forced with SCANFLOW_PORTABLE=1: `scanflow run` starts kernels the classic way.

Each step's kernel records its parent process; the last step also records every process below
that parent. Classic start: the kernels are children of the runner itself and no zygote runs
below it. The same pipeline without the switch shows the zygote as the kernels' parent, so the
observation can tell the two apart.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from scanflow_jupyter import process_liveness
from scanflow_jupyter.data.serializers import load_value, read_record

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ZYGOTE = "scanflow_jupyter.runtime.zygote"


def _notebook(project: Any) -> Path:
    return project.write_notebook("portable", [
        "%load_ext scanflow_jupyter\n%scanflow_app portable",
        "%%executor first --outputs a first_parent\nimport os\na = 2\nfirst_parent = os.getppid()",
        "%%executor second --inputs a --outputs b second_parent\nimport os\nb = a * 3\nsecond_parent = os.getppid()",
        "%%executor third --inputs b --outputs c below_parent\nimport os, psutil\nc = b + 1\n"
        "parent = psutil.Process(os.getppid())\n"
        "below_parent = {'pid': parent.pid, 'cmdline': ' '.join(parent.cmdline()),\n"
        "                'below': [' '.join(p.cmdline()) for p in parent.children(recursive=True)]}",
    ])


def _portable_env(project: Any) -> dict[str, str]:
    env = project.env()
    env.pop("SCANFLOW_NO_ZYGOTE", None)
    env["SCANFLOW_PORTABLE"] = "1"
    return env


def _wait_until(condition: Any, what: str, timeout: float = 90) -> None:
    """Poll for a condition (the bound is never reached when things work)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for: {what}")
        time.sleep(0.05)


def _run(project: Any, scanflow_cmd: list[str], portable: bool) -> tuple[int, dict[str, Any]]:
    """`scanflow run --json` as a real subprocess; (runner pid, its JSON document)."""
    env = project.env()
    env.pop("SCANFLOW_NO_ZYGOTE", None)
    env.pop("SCANFLOW_PORTABLE", None)
    if portable:
        env["SCANFLOW_PORTABLE"] = "1"
    proc = subprocess.Popen([*scanflow_cmd, "run", str(_notebook(project)), "--json"], cwd=project.root,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, f"scanflow run exited {proc.returncode}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    return proc.pid, json.loads(stdout)


def _output(project: Any, run_id: str, step: str, name: str) -> Any:
    folder = project.store.outputs_dir(run_id, step)
    return load_value(folder, read_record(folder, name), verify=True)


@pytest.mark.parametrize("portable", [True, False], ids=["SCANFLOW_PORTABLE=1", "default-zygote"])
def test_a_pipeline_runs_with_classic_kernels_in_portable_mode(cli_project, scanflow_cmd, portable: bool) -> None:
    runner_pid, doc = _run(cli_project, scanflow_cmd, portable)

    assert doc["status"] == "succeeded", doc
    assert {n: s["status"] for n, s in doc["steps"].items()} == dict.fromkeys(("first", "second", "third"), "succeeded")
    run_id = doc["run_id"]
    assert (_output(cli_project, run_id, "first", "a"), _output(cli_project, run_id, "second", "b"),
            _output(cli_project, run_id, "third", "c")) == (2, 6, 7)
    parents = [_output(cli_project, run_id, "first", "first_parent"),
               _output(cli_project, run_id, "second", "second_parent")]
    seen = _output(cli_project, run_id, "third", "below_parent")
    parents.append(seen["pid"])
    if portable:
        assert parents == [runner_pid] * 3, "in portable mode each kernel is a child of the runner itself"
        assert ZYGOTE not in seen["cmdline"]
        assert not [c for c in seen["below"] if ZYGOTE in c], f"a zygote ran below the runner: {seen['below']}"
    else:  # the observation tells the modes apart: by default the zygote forks the kernels
        assert runner_pid not in parents, parents
        assert ZYGOTE in seen["cmdline"], seen


def test_a_killed_runner_leaves_no_kernel_in_portable_mode(cli_project, scanflow_cmd) -> None:
    """No prctl death signal here: the classic kernel notices its parent is gone and exits by itself."""
    started, hold = cli_project.root / "step.started", cli_project.root / "step.hold"
    hold.write_text("hold")
    nb = cli_project.write_notebook("orphan", [
        "%load_ext scanflow_jupyter\n%scanflow_app orphan",
        "%%executor slow --outputs x\nimport os, pathlib, time\n"
        f"pathlib.Path({str(started)!r}).write_text(str(os.getpid()))\n"
        "deadline = time.time() + 200\n"
        f"while pathlib.Path({str(hold)!r}).exists() and time.time() < deadline:\n"
        "    time.sleep(0.05)\n"
        "x = 1",
    ])
    proc = subprocess.Popen([*scanflow_cmd, "run", str(nb), "--json"], cwd=cli_project.root,
                            env=_portable_env(cli_project), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    kernel = 0
    try:
        _wait_until(lambda: started.exists() and started.read_text().strip() != "" or proc.poll() is not None,
                    "the step's cell started")
        assert proc.poll() is None, f"the runner exited early ({proc.returncode})"
        kernel = int(started.read_text())
        import psutil

        assert psutil.Process(kernel).ppid() == proc.pid, "a classic kernel is the runner's child"
        os.kill(proc.pid, signal.SIGKILL)  # the runner only: its kernel is in another session
        proc.wait()
        _wait_until(lambda: not process_liveness.alive(kernel), f"kernel {kernel} exits after its runner was killed")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if kernel and process_liveness.alive(kernel):
            os.kill(kernel, signal.SIGKILL)
