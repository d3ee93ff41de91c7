"""A docker-backend run's tracker goes away with its folder: no tracker process, no container left.

The real Docker Engine and offline base image (see test_docker_support), the real `scanflow run
--backend docker` CLI, a per-test tracker registry and a short watchdog interval.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from test_docker_support import *  # noqa: F403 - the Docker fixtures
from test_docker_support import step_containers

from tests.conftest import NOTEBOOKS, scanflow_command

pytestmark = pytest.mark.timeout(1500)


def test_deleting_the_folder_of_a_docker_run_leaves_nothing_behind(tmp_path: Path, offline_base: str, docker_client: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from scanflow_jupyter.mlflow_server.registry import entries, is_tracker_process

    monkeypatch.setenv("SCANFLOW_TRACKER_REGISTRY", str(tmp_path / "registry"))  # this test's trackers only

    folder = tmp_path / "project"
    folder.mkdir()
    shutil.copy(NOTEBOOKS / "diamond.ipynb", folder / "diamond.ipynb")  # its steps log to MLflow
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(SCANFLOW_HOME=str(folder / ".scanflow"), SCANFLOW_BASE_IMAGE=offline_base, SCANFLOW_TRACKER_POLL="0.5")
    proc = subprocess.run([*scanflow_command(), "run", "diamond.ipynb", "--backend", "docker", "--json"], cwd=folder,
                          env=env, capture_output=True, text=True, timeout=1200, check=False)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    run_id = json.loads(proc.stdout)["run_id"]

    trackers = [e for e in entries() if e.home == str(folder / ".scanflow")]
    assert len(trackers) == 1, "the docker run should have started one tracker for its folder"
    pid = trackers[0].pid
    assert trackers[0].idle_timeout > 0  # started by a run: it also stops when idle
    assert list((folder / ".scanflow").glob("tracker-lease.*")) == []  # the run released its lease

    shutil.rmtree(folder)
    deadline = time.monotonic() + 120
    while is_tracker_process(pid):
        assert time.monotonic() < deadline, f"tracker pid {pid} still runs 120s after its folder was removed"
        time.sleep(0.2)
    assert step_containers(docker_client, run=run_id) == []
    assert list((tmp_path / "registry").glob("*.json")) == []
