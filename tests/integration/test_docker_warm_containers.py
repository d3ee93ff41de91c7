"""Warm step containers on the real engine: started ahead, same isolation as a cold start, cleaned up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from test_docker_support import *  # noqa: F403 - the Docker fixtures
from test_docker_support import step_containers

pytestmark = pytest.mark.timeout(1200)

PROBE = ("{'count': get_ipython().execution_count, 'step': os.environ['SCANFLOW_STEP_NAME'], 'cwd': os.getcwd(),"
         " 'names': sorted(n for n in globals() if not n.startswith('_')),"
         " 'memory': open('/sys/fs/cgroup/memory.max').read().split()[0] if os.path.exists('/sys/fs/cgroup/memory.max')"
         " else open('/sys/fs/cgroup/memory/memory.limit_in_bytes').read().split()[0]}")
CHAIN_CELLS: list[Any] = [
    "%load_ext scanflow_jupyter\n%scanflow_app warmchain",
    "%%setup\nimport os",
    "%%executor first --outputs a\nleak = 'defined in step first'\na = 1",
    f"%%executor second --inputs a --outputs probe2\nprobe2 = {PROBE}",
    f"%%executor third --inputs probe2 --outputs probe3 --memory 300Mi\nprobe3 = {PROBE}",
]
SLOW_CHAIN: list[Any] = [
    "%load_ext scanflow_jupyter\n%scanflow_app slowchain",
    "%%executor sleeper --outputs x\nimport time\nprint('sleeping', flush=True)\ntime.sleep(300)\nx = 1",
    "%%executor after --inputs x --outputs y\ny = x + 1",
]


def _warm_flags(outcome: Any) -> dict[str, bool]:
    return {step: outcome.of(step, "step_started")[0].data["warm"] for step in ("first", "second", "third")}


def _pipe_folders(pid: int) -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob(f"scanflow-warm-{pid}-*"))


def test_later_steps_run_in_warm_containers_isolated_exactly_like_cold_ones(
        docker_project: Any, runner: Any, docker_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    docker_project.write_notebook("warmchain", CHAIN_CELLS)
    monkeypatch.setenv("SCANFLOW_DOCKER_WARM", "0")
    cold = runner.run("warmchain", backend="docker", no_cache=True)
    assert cold.result.status == "succeeded", {n: s.error for n, s in cold.state.steps.items()}
    assert _warm_flags(cold) == {"first": False, "second": False, "third": False}

    monkeypatch.delenv("SCANFLOW_DOCKER_WARM")  # the default: 2 ahead
    warm = runner.run("warmchain", backend="docker", no_cache=True)
    assert warm.result.status == "succeeded", {n: s.error for n, s in warm.state.steps.items()}
    assert _warm_flags(warm) == {"first": False, "second": True, "third": True}

    # a fresh kernel in the step's own container: the same names, execution count, folder,
    # environment and memory limit as a cold start; nothing of step `first` (`leak`) reaches them
    containers = {e.data["container"] for e in warm.of(type_="step_started")}
    assert len(containers) == 3
    for step, var in (("second", "probe2"), ("third", "probe3")):
        probe = warm.output(step, var)
        assert probe == cold.output(step, var), step
        assert probe["step"] == step and probe["cwd"] == str(docker_project.root) and "leak" not in probe["names"]
    assert warm.output("third", "probe3")["memory"] == str(300 * 2**20)
    for step in ("second", "third"):  # the cells and the log, as in a cold run
        assert len(warm.of(step, "step_cell")) == len(cold.of(step, "step_cell"))
        assert (warm.step_dir(step) / "log.txt").read_text().startswith("--- attempt 1 (")

    # nothing is left: no step container of either run, no pipe folder of this process
    for outcome in (cold, warm):
        assert step_containers(docker_client, run=outcome.result.run_id) == []
    assert _pipe_folders(os.getpid()) == []


def _scanflow_run(project: Any, notebook: str) -> subprocess.Popen[str]:
    from tests.conftest import scanflow_command

    return subprocess.Popen([*scanflow_command(), "run", notebook, "--backend", "docker", "--json"],
                            cwd=project.root, env=project.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _wait_for_warm(client: Any, timeout: float = 600) -> tuple[str, list[Any]]:
    """The run id once the sleeper's container and the warm one of `after` are both running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = [c for c in step_containers(client, app="slowchain")
                   if c.status == "running" and "scanflow.io/run" in c.labels]
        if {c.labels["scanflow.io/step"] for c in running} == {"sleeper", "after"}:
            return running[0].labels["scanflow.io/run"], running
        time.sleep(0.3)
    pytest.fail(f"no warm container for step 'after' within {timeout}s")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_warm_containers_go_with_their_run_even_when_the_runner_is_killed(
        docker_project: Any, runner: Any, docker_client: Any, sig: int) -> None:
    docker_project.write_notebook("slowchain", SLOW_CHAIN)
    proc = _scanflow_run(docker_project, "slowchain.ipynb")
    try:
        run_id, _running = _wait_for_warm(docker_client)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and json.loads(stdout)["status"] == "killed", f"{stdout}\n{stderr}"
    else:  # nothing ran close(): the next docker run reaps the containers and the pipe folder
        assert proc.returncode == -signal.SIGKILL
        assert step_containers(docker_client, run=run_id) != [] and _pipe_folders(proc.pid) != []
        after = runner.run("tiny", backend="docker")
        assert after.result.status == "succeeded", {n: s.error for n, s in after.state.steps.items()}
    left = [(c.name, c.status) for c in step_containers(docker_client, run=run_id)]
    assert left == [], f"containers left behind: {left}"
    assert _pipe_folders(proc.pid) == []
