"""`scanflow run --backend docker` on the real engine: same events, run store and MLflow shape as local."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from test_docker_support import *  # noqa: F403 - the Docker fixtures
from test_docker_support import restart_dockerd, step_containers

pytestmark = pytest.mark.timeout(1200)


def _mlflow_shape(client: Any, run_id: str) -> dict[str, Any]:
    """Runs of one pipeline run: name -> status, tag keys, param/metric keys, artifacts, parent."""
    runs = client.search_runs(experiment_ids=[e.experiment_id for e in client.search_experiments()],
                              filter_string=f"tags.`scanflow.run_id` = '{run_id}'")
    shape = {}
    names = {r.info.run_id: r.info.run_name for r in runs}
    for r in runs:
        kind = r.data.tags.get("scanflow.kind")
        shape["<pipeline>" if kind == "pipeline" else r.info.run_name] = {
            "status": r.info.status,
            "tags": sorted(k for k in r.data.tags if k.startswith("scanflow.") or k == "mlflow.parentRunId"),
            "params": sorted(r.data.params),
            "metrics": sorted(r.data.metrics),
            "artifacts": sorted(a.path for a in client.list_artifacts(r.info.run_id)),
            "parent": "<pipeline>" if r.data.tags.get("mlflow.parentRunId") in names else None,
        }
    return shape


def test_diamond_runs_in_containers_like_it_runs_locally(docker_project: Any, runner: Any, docker_client: Any) -> None:
    local = runner.run("diamond", backend="local")
    assert local.result.status == "succeeded", local.statuses()
    docker = runner.run("diamond", backend="docker", no_cache=True)
    assert docker.result.status == "succeeded", {n: s.error for n, s in docker.state.steps.items()}
    assert docker.state.backend == "docker"

    # the same events per step: started, one step_cell per cell, logs, succeeded
    for step in ("load", "features", "stats", "train"):
        assert docker.types(step)[0] == "step_queued" and docker.types(step)[-1] == "step_succeeded"
        assert len(docker.of(step, "step_cell")) == len(local.of(step, "step_cell"))
        started = docker.of(step, "step_started")[0]
        assert started.data["image"].startswith(f"scanflow/diamond-{step}:")
    assert any("accuracy" in e.data["text"] for e in docker.of("train", "step_log"))

    # outputs in the run store, readable like local ones
    import numpy as np

    np.testing.assert_allclose(docker.output("features", "features"), local.output("features", "features"))
    assert docker.output("stats", "stats") == local.output("stats", "stats")
    assert float(docker.output("train", "model").score(docker.output("features", "features"),
                                                        docker.output("features", "labels"))) > 0.5
    out = json.loads((docker.step_dir("train") / "output.ipynb").read_text())
    assert any("accuracy" in "".join(o.get("text", "")) for c in out["cells"] for o in c.get("outputs", []))

    # MLflow: the same runs, tags, params, metrics and artifacts (through the tracker for the step)
    client = docker_project.mlflow_client()
    shape_local = _mlflow_shape(client, local.result.run_id)
    shape_docker = _mlflow_shape(client, docker.result.run_id)
    assert shape_docker == shape_local
    assert "accuracy" in shape_docker["train"]["metrics"]
    parent = client.get_run(docker.result.mlflow_run_id)
    assert parent.data.tags["scanflow.backend"] == "docker"

    # the tracker serves this project's store; no step container is left behind
    from scanflow_jupyter import mlflow_server as tracker

    info = tracker.status(docker_project.home)
    assert info is not None and info.backend_store_uri == docker_project.tracking_uri()
    assert step_containers(docker_client, run=docker.result.run_id) == []


def test_a_failing_step_is_mapped_to_its_cell_with_the_papermill_banner(docker_project: Any, runner: Any) -> None:
    outcome = runner.run("failing_step", backend="docker")
    assert outcome.statuses() == {"prepare": "succeeded", "explode": "failed", "after_explode": "skipped",
                                  "independent": "succeeded"}
    error = outcome.state.steps["explode"].error
    assert error.ename == "ValueError" and "fails on purpose" in error.evalue
    assert error.cell == docker_project.cell_index("failing_step", "%%executor explode")
    failed = outcome.of("explode", "step_failed")[0]
    assert failed.data["cell"] == error.cell
    out = json.loads((outcome.step_dir("explode") / "output.ipynb").read_text())
    banner = [c for c in out["cells"] if "papermill-error-cell-tag" in c["metadata"].get("tags", [])]
    assert banner, "the output notebook has no papermill error banner"


SLOW_CELLS = [
    "%load_ext scanflow_jupyter\n%scanflow_app slow",
    "%%executor sleeper --outputs x\nimport time\nprint('sleeping', flush=True)\ntime.sleep(300)\nx = 1",
]


def _wait_for_container(client: Any, timeout: float = 300, **labels: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = [c for c in step_containers(client, **labels)
                   if c.status == "running" and "scanflow.io/run" in c.labels]  # not a build-time check
        if running:
            return running[0]
        time.sleep(0.3)
    pytest.fail(f"no running container with labels {labels} within {timeout}s")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_cancellation_stops_and_removes_the_step_container(docker_project: Any, docker_client: Any, sig: int) -> None:
    docker_project.write_notebook("slow", SLOW_CELLS)
    proc = subprocess.Popen([*_scanflow(), "run", "slow.ipynb", "--backend", "docker", "--json"],
                            cwd=docker_project.root, env=docker_project.env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        container = _wait_for_container(docker_client, app="slow", step="sleeper")
        run_id = container.labels["scanflow.io/run"]
        time.sleep(1.0)  # the kernel is running the sleep
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, f"stdout:\n{stdout}\nstderr:\n{stderr}"
    assert json.loads(stdout)["status"] == "killed", stdout
    left = [(c.name, c.status) for c in step_containers(docker_client, run=run_id)]
    assert left == [], f"containers left behind: {left}\nstderr:\n{stderr}"
    state = docker_project.store.read_state(run_id)
    assert (state.status, state.steps["sleeper"].status) == ("killed", "killed"), state.to_dict()


def test_a_step_timeout_kills_its_container(docker_project: Any, runner: Any, docker_client: Any) -> None:
    cells = list(SLOW_CELLS)
    cells[1] = cells[1].replace("--outputs x", "--outputs x --timeout 5")
    docker_project.write_notebook("slow", cells)
    outcome = runner.run("slow", backend="docker")
    error = outcome.state.steps["sleeper"].error
    assert outcome.statuses() == {"sleeper": "failed"} and error.ename == "TimeoutError"
    assert step_containers(docker_client, run=outcome.result.run_id) == []


def test_dockerd_restart_between_two_runs_keeps_the_run_store_intact(docker_project: Any, runner: Any) -> None:
    first = runner.run("tiny", backend="docker")
    assert first.result.status == "succeeded", {n: s.error for n, s in first.state.steps.items()}
    run_json = (docker_project.runs_dir / first.result.run_id / "run.json").read_text()

    restart_dockerd()

    second = runner.run("tiny", backend="docker", no_cache=True)
    assert second.result.status == "succeeded", {n: s.error for n, s in second.state.steps.items()}
    assert (docker_project.runs_dir / first.result.run_id / "run.json").read_text() == run_json
    states = {s.run_id: s for s in docker_project.store.list_runs()}
    assert {states[first.result.run_id].status, states[second.result.run_id].status} == {"succeeded"}
    assert second.output("third", "report") == first.output("third", "report") == json.dumps({"total": 3})
    code, listed = docker_project.cli_json("runs", "--json")
    assert code == 0 and {r["run_id"] for r in listed} >= {first.result.run_id, second.result.run_id}


def test_no_engine_fails_every_step_with_the_fix(docker_project: Any, runner: Any, monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    outcome = runner.run("tiny", backend="docker")
    assert outcome.result.status == "failed"
    error = outcome.state.steps["first"].error
    assert error.ename == "DockerEngineUnavailable" and "make docker" in error.evalue
    assert os.environ["DOCKER_HOST"].endswith("no-engine.sock")


def _scanflow() -> list[str]:
    from tests.conftest import scanflow_command

    return scanflow_command()


def test_tracker_up_status_down(project: Any) -> None:
    code, up = project.cli_json("tracker", "up", "--json", timeout=180)
    try:
        assert code == 0, up
        assert up["backend_store_uri"] == project.tracking_uri()
        assert up["artifacts_destination"] == str(project.home / "mlartifacts")
        import urllib.request

        with urllib.request.urlopen(f"{up['url']}/health", timeout=5) as resp:
            assert resp.status == 200
        code, again = project.cli_json("tracker", "up", "--json", timeout=180)
        assert code == 0 and again["pid"] == up["pid"]  # idempotent
        code, status = project.cli_json("tracker", "status", "--json")
        assert code == 0 and status["running"] and status["healthy"]
    finally:
        code, down = project.cli_json("tracker", "down", "--json")
    assert code == 0 and down["stopped"]["pid"] == up["pid"]
    assert not Path(f"/proc/{up['pid']}").exists() or "mlflow" not in Path(f"/proc/{up['pid']}/cmdline").read_text()
    code, status = project.cli_json("tracker", "status", "--json")
    assert code == 1 and status["running"] is False


LIMIT_FILES = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes",  # cgroup v2, v1
               "/sys/fs/cgroup/cpu.max", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us")


def test_kubernetes_quantities_become_container_limits(docker_project: Any, runner: Any) -> None:
    """`--memory 1Pi` passes validation, so the docker backend must run it (its own parser used to raise)."""
    docker_project.write_notebook("limits", [
        "%load_ext scanflow_jupyter\n%scanflow_app limits",
        "%%executor big --memory 1Pi --cpu 500m --outputs limits\nfrom pathlib import Path\n"
        f"limits = {{p: Path(p).read_text().split()[0] for p in {LIMIT_FILES!r} if Path(p).exists()}}",
    ])
    outcome = runner.run("limits", backend="docker")
    assert outcome.statuses() == {"big": "succeeded"}, {n: s.error for n, s in outcome.state.steps.items()}
    limits = outcome.output("big", "limits")
    memory = limits.get(LIMIT_FILES[0]) or limits.get(LIMIT_FILES[1])
    cpu = limits.get(LIMIT_FILES[2]) or limits.get(LIMIT_FILES[3])
    assert (memory, cpu) == (str(2**50), "50000"), limits  # 1Pi bytes; 500m = 50 ms per 100 ms period
