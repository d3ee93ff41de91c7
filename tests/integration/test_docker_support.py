"""Fixtures shared by the Docker tests (`test_build*.py`, `test_docker*.py`); holds no test itself.

They use the real Docker Engine that `scripts/docker-up.sh` starts (`.ci/run`, `make docker`),
the offline base image of `scanflow build-base` (no registry is reachable on these machines) and,
for push tests, Debian's `docker-registry` on 127.0.0.1. In CI (`CI=true`) a missing engine or
tool FAILS the test; elsewhere it skips. Images are cached by content hash on the engine, so only
the first run on a machine pays the builds.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["docker_client", "docker_project", "offline_base", "registry"]  # the fixtures

IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")

#: A 3-step notebook with one small requirement (threadpoolctl), no MLflow: cheap images.
TINY_CELLS: list[Any] = [
    "%load_ext scanflow_jupyter\n%scanflow_app tiny",
    {"source": "n = 3", "tags": ["parameters"]},
    "%%setup\nimport json",
    "%%executor first --outputs numbers\nimport threadpoolctl\nnumbers = list(range(n))\nprint('first', threadpoolctl.__name__)",
    "%%executor second --inputs numbers --outputs total\ntotal = sum(numbers)\nprint('second', total)",
    "%%executor third --inputs total --outputs report\nreport = json.dumps({'total': total})\nprint('third', report)",
]


def unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: Docker tests must run; `.ci/run` starts the engine with scripts/docker-up.sh)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_client() -> Any:
    """A Docker SDK client of a running engine."""
    from scanflow_jupyter.build.builder import EngineUnavailable, docker_client

    try:
        client = docker_client()
    except EngineUnavailable as exc:
        unavailable(str(exc))
    return client


@pytest.fixture(scope="session")
def offline_base(docker_client: Any) -> str:
    """The tag of the offline base image (built once per machine with mmdebstrap)."""
    from scanflow_jupyter.build.base import ensure_base_image

    if shutil.which("mmdebstrap") is None:
        unavailable("mmdebstrap is not installed (scripts/docker-up.sh installs it)")
    tag, _built, _seconds = ensure_base_image(docker_client)
    return tag


@pytest.fixture
def docker_project(project: Any, offline_base: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An isolated project whose images build FROM the offline base; its tracker is stopped after."""
    monkeypatch.setenv("SCANFLOW_BASE_IMAGE", offline_base)
    project.write_notebook("tiny", TINY_CELLS)
    yield project
    from scanflow_jupyter import mlflow_server as tracker

    tracker.down(project.home)


def step_containers(client: Any, **labels: str) -> list[Any]:
    """Containers (running or not) carrying all `labels` (scanflow.io/<key>=value)."""
    filters = {"label": [f"scanflow.io/{k}={v}" for k, v in labels.items()]}
    return client.containers.list(all=True, filters=filters, ignore_removed=True)  # one may go mid-listing


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's docker-registry serving on 127.0.0.1 (5000 when free); yields "127.0.0.1:PORT"."""
    binary = shutil.which("docker-registry") or ("/usr/bin/docker-registry" if Path("/usr/bin/docker-registry").exists() else None)
    if binary is None:
        unavailable("docker-registry is not installed (scripts/docker-up.sh installs it)")
    with socket.socket() as sock:
        port = 5000 if sock.connect_ex(("127.0.0.1", 5000)) != 0 else _free_port()
    root = tmp_path_factory.mktemp("registry")
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
        encoding="utf-8")
    log = (root / "registry.log").open("wb")
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://{address}/v2/", timeout=1):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"docker-registry did not start: {(root / 'registry.log').read_text(errors='replace')}")
            time.sleep(0.2)
    yield address
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def restart_dockerd(timeout: float = 60) -> None:
    """Stop the local dockerd (the one in /var/run/docker.pid) and start it with scripts/docker-up.sh."""
    from scanflow_jupyter.build.builder import EngineUnavailable, docker_client

    pid_file = Path("/var/run/docker.pid")
    if os.environ.get("DOCKER_HOST") or not pid_file.exists():
        unavailable("the engine is not a local dockerd started from /var/run/docker.pid: cannot restart it")
    pid = int(pid_file.read_text().strip())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not Path(f"/proc/{pid}").exists(), f"dockerd (pid {pid}) did not stop within {timeout}s"
    script = Path(__file__).resolve().parents[2] / "scripts" / "docker-up.sh"
    subprocess.run([str(script)], check=True, timeout=timeout + 60, capture_output=True)
    try:
        docker_client()
    except EngineUnavailable as exc:
        pytest.fail(f"dockerd did not come back: {exc}")
