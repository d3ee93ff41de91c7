"""Orphaned step containers: those whose runner process on this host is gone are removed, others kept.

Real containers on the real engine, labelled as a runner labels its step containers; the owner
pids are a process that ran and was reaped (gone) and this test process (alive).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from typing import Any

import pytest
from test_docker_support import *  # noqa: F403 - the Docker fixtures

from scanflow_jupyter.build.context import LABEL_RUNNER
from scanflow_jupyter.runtime.docker_backend import DockerBackend

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

LABEL_TEST = "scanflow.test/orphans"


def test_containers_of_a_gone_runner_are_reaped_live_ones_kept(docker_client: Any, offline_base: str) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # reaped: its pid names no process now
    host = socket.gethostname()
    token = os.urandom(4).hex()
    made = {}
    try:
        for who, pid in (("gone", gone.pid), ("alive", os.getpid())):
            made[who] = docker_client.containers.create(
                offline_base, ["true"], labels={LABEL_RUNNER: f"{host}:{pid}", LABEL_TEST: token})
        backend = DockerBackend(None)  # type: ignore[arg-type] - only the engine client is used
        backend.client = docker_client
        backend._reap_orphans()
        left = {c.id for c in docker_client.containers.list(all=True, filters={"label": f"{LABEL_TEST}={token}"})}
        assert made["alive"].id in left, "the container of a live runner was removed"
        assert made["gone"].id not in left, "the container of a runner that is gone was kept"
    finally:
        for container in docker_client.containers.list(all=True, filters={"label": f"{LABEL_TEST}={token}"}):
            container.remove(force=True)
