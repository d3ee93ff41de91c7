"""pytest plugin: a real local Kubernetes control plane for a test session (tests/k8s/cluster.sh).

Import the fixture into a test module (`from tests.k8s.fixture import k8s_cluster  # noqa: F401`).
`k8s_cluster` starts the cluster with `cluster.sh up` (or reuses one that is already running) and
yields a `K8sCluster`; it changes no global state (no KUBECONFIG export, no kube config load).
A cluster this session started is stopped at the end unless SCANFLOW_K8S_KEEP=1; one that was
already running is left alone. If the cluster cannot come up the fixture fails in CI (CI=true)
and skips elsewhere, with the failing component's log tail as the reason.

`cluster.sh up` builds the binaries first when they are not cached (tens of minutes the first
time): run `tests/k8s/cluster.sh build` beforehand so the build is not charged to a test.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CLUSTER_SH = Path(__file__).resolve().with_name("cluster.sh")
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
UP_TIMEOUT = float(os.environ.get("SCANFLOW_K8S_UP_TIMEOUT", "3600"))


@dataclass(frozen=True)
class K8sCluster:
    """A running cluster: its admin kubeconfig (user in system:masters) and its binaries."""

    kubeconfig: Path
    bin_dir: Path
    started_here: bool

    def api_client(self) -> Any:
        """A fresh `kubernetes.client.ApiClient` for this cluster (no global configuration)."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def kubectl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run the cluster's own kubectl against it; never raises on a non-zero exit."""
        return subprocess.run([str(self.bin_dir / "kubectl"), "--kubeconfig", str(self.kubeconfig),
                               *args], capture_output=True, text=True, timeout=timeout, check=False)


def cluster_sh(command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `cluster.sh COMMAND` with this process's environment (SCANFLOW_K8S_DIR etc.)."""
    return subprocess.run(["bash", str(CLUSTER_SH), command], capture_output=True, text=True,
                          timeout=timeout, check=False)


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"the local Kubernetes cluster is required in CI: {reason}", pytrace=False)
    pytest.skip(f"no local Kubernetes cluster: {reason}")


def _exports(stdout: str) -> dict[str, str]:
    """The `export NAME=VALUE` lines that `cluster.sh env` / `up` print."""
    found: dict[str, str] = {}
    for line in stdout.splitlines():
        if line.startswith("export ") and "=" in line:
            name, _, value = line[len("export "):].partition("=")
            found[name] = value
    return found


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@pytest.fixture(scope="session")
def k8s_cluster() -> Iterator[K8sCluster]:
    """The local control plane (etcd, kube-*, kwok, Argo workflow-controller) for this session."""
    was_running = cluster_sh("status").returncode == 0
    try:
        up = cluster_sh("up", timeout=UP_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        _unavailable(f"`{CLUSTER_SH} up` did not finish: {exc}")
    if up.returncode != 0:
        _unavailable(f"`{CLUSTER_SH} up` exited {up.returncode}:\n{_tail(up.stderr)}")
    env = _exports(up.stdout)
    kubeconfig = Path(env.get("KUBECONFIG", ""))
    if not kubeconfig.is_file():
        _unavailable(f"`cluster.sh up` printed no usable KUBECONFIG line:\n{up.stdout}")
    bin_dir = Path(env.get("PATH", "").split(":", 1)[0])
    cluster = K8sCluster(kubeconfig=kubeconfig, bin_dir=bin_dir, started_here=not was_running)
    yield cluster
    if cluster.started_here and os.environ.get("SCANFLOW_K8S_KEEP") != "1":
        down = cluster_sh("down")
        if down.returncode != 0:
            print(f"`cluster.sh down` exited {down.returncode}:\n{_tail(down.stderr)}")
