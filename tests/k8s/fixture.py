"""pytest plugin: a real local Kubernetes control plane for a test session (tests/k8s/cluster.sh).

Import the fixture into a test module (`from tests.k8s.fixture import k8s_cluster  # noqa: F401`).
`k8s_cluster` starts the cluster with `cluster.sh up` (or reuses one that is already running) and
yields a `K8sCluster`; it changes no global state (no KUBECONFIG export, no kube config load).
A cluster this session started is stopped at the end unless SCANFLOW_K8S_KEEP=1; one that was
already running is left alone. If the cluster cannot come up the fixture fails in CI (CI=true)
and skips elsewhere, with the failing component's log tail as the reason.

No test builds the cluster: the binaries come from `make setup-test` (`tests/k8s/cluster.sh
build`, tens of minutes the first time). When they are missing the fixture fails (CI) / skips at
once, naming that fix; and `up` runs with a `go` that refuses to build, so a part the stamp check
does not know about cannot start a build inside a test either.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

CLUSTER_SH = Path(__file__).resolve().with_name("cluster.sh")
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
UP_TIMEOUT = float(os.environ.get("SCANFLOW_K8S_UP_TIMEOUT", "900"))
BUILD_FIX = "run `make setup-test` (or `tests/k8s/cluster.sh build`) before the tests"


@dataclass(frozen=True)
class K8sCluster:
    """A running cluster: its admin kubeconfig (user in system:masters) and its binaries.

    `node` is the real node's name, `registry` the local registry it pulls from (host:port on
    127.0.0.1), `busybox` a small image in that registry (sh, sleep, wget, nslookup, httpd).
    `s3_image`, `tracker_image`, `postgres_image`: the team environment's images in that registry
    (SCANFLOW_K8S_*_IMAGE; "" when `cluster.sh build` ran without a Docker Engine).
    """

    kubeconfig: Path
    bin_dir: Path
    started_here: bool
    node: str = ""
    registry: str = ""
    busybox: str = ""
    s3_image: str = ""
    tracker_image: str = ""
    postgres_image: str = ""

    def api_client(self) -> Any:
        """A fresh `kubernetes.client.ApiClient` for this cluster (no global configuration)."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def kubectl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run the cluster's own kubectl against it; never raises on a non-zero exit."""
        return subprocess.run([str(self.bin_dir / "kubectl"), "--kubeconfig", str(self.kubeconfig),
                               *args], capture_output=True, text=True, timeout=timeout, check=False)


def cluster_sh(command: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `cluster.sh COMMAND` with this process's environment (SCANFLOW_K8S_DIR etc.)."""
    return subprocess.run(["bash", str(CLUSTER_SH), command], capture_output=True, text=True,
                          timeout=timeout, check=False, env=env)


def unbuilt_parts(script: Path = CLUSTER_SH) -> list[str]:
    """Parts of the cluster (`stamp_ok PART "$VERSION" BINARY...` in cluster.sh) not built yet."""
    text = script.read_text(encoding="utf-8")
    versions = dict(re.findall(r"^([A-Z0-9_]+_VERSION)=(\S+)", text, re.M))
    cache = Path(os.environ.get("SCANFLOW_K8S_CACHE") or Path.home() / ".cache" / "scanflow" / "k8s")
    bin_dir = cache / versions.get("K8S_VERSION", "?") / "bin"
    missing = []
    for part, var, binaries in re.findall(r'stamp_ok (\S+) "\$(\w+)"((?: [\w.-]+)*)', text):
        stamp = bin_dir / f".{part}.version"
        built = (stamp.is_file() and stamp.read_text(encoding="utf-8").strip() == versions.get(var)
                 and all(os.access(bin_dir / b, os.X_OK) for b in binaries.split()))
        if not built:
            missing.append(f"{part} {versions.get(var, '?')} (in {bin_dir})")
    return missing


def _no_build_env(tmp: Path) -> dict[str, str]:
    """This environment with a `go` first on PATH that refuses: `up` must never build."""
    shim = tmp / "go"
    shim.write_text(f"#!/bin/sh\necho 'a test must not build the test cluster: {BUILD_FIX}' >&2\nexit 1\n",
                    encoding="utf-8")
    shim.chmod(0o755)
    return {**os.environ, "PATH": f"{tmp}{os.pathsep}{os.environ.get('PATH', '')}"}


_STARTED_BY_THIS_PROCESS: set[str] = set()


def _run_dir() -> str:
    """The run dir cluster.sh uses with this environment (SCANFLOW_K8S_DIR or its default)."""
    default = Path(os.environ.get("SCANFLOW_K8S_CACHE") or Path.home() / ".cache" / "scanflow" / "k8s") / "run"
    return os.path.realpath(os.environ.get("SCANFLOW_K8S_DIR") or default)


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
    """The local cluster (etcd, kube-*, the real node, kwok, Argo workflow-controller) for this session."""
    missing = unbuilt_parts()
    if missing:
        _unavailable(f"the test cluster is not built ({'; '.join(missing)}): {BUILD_FIX}")
    # Each test module that imports this fixture gets its own (session-scoped) instance: the run
    # dirs started by an earlier instance of this process count as started here too.
    was_running = cluster_sh("status").returncode == 0 and _run_dir() not in _STARTED_BY_THIS_PROCESS
    with tempfile.TemporaryDirectory(prefix="scanflow-no-go-") as tmp:
        try:
            up = cluster_sh("up", timeout=UP_TIMEOUT, env=_no_build_env(Path(tmp)))
        except (OSError, subprocess.TimeoutExpired) as exc:
            _unavailable(f"`{CLUSTER_SH} up` did not finish: {exc}")
    if up.returncode != 0:
        _unavailable(f"`{CLUSTER_SH} up` exited {up.returncode}:\n{_tail(up.stderr)}")
    env = _exports(up.stdout)
    kubeconfig = Path(env.get("KUBECONFIG", ""))
    if not kubeconfig.is_file():
        _unavailable(f"`cluster.sh up` printed no usable KUBECONFIG line:\n{up.stdout}")
    bin_dir = Path(env.get("PATH", "").split(":", 1)[0])
    if not was_running:
        _STARTED_BY_THIS_PROCESS.add(_run_dir())
    cluster = K8sCluster(kubeconfig=kubeconfig, bin_dir=bin_dir, started_here=not was_running,
                         node=env.get("SCANFLOW_K8S_NODE", ""), registry=env.get("SCANFLOW_K8S_REGISTRY", ""),
                         busybox=env.get("SCANFLOW_K8S_BUSYBOX", ""),
                         s3_image=env.get("SCANFLOW_K8S_S3_IMAGE", ""),
                         tracker_image=env.get("SCANFLOW_K8S_TRACKER_IMAGE", ""),
                         postgres_image=env.get("SCANFLOW_K8S_POSTGRES_IMAGE", ""))
    yield cluster
    if cluster.started_here and os.environ.get("SCANFLOW_K8S_KEEP") != "1":
        down = cluster_sh("down")
        if down.returncode != 0:
            print(f"`cluster.sh down` exited {down.returncode}:\n{_tail(down.stderr)}")


T = TypeVar("T")


def wait_until(probe: Callable[[], T], done: Callable[[T], bool], what: str,
               timeout: float = 120, interval: float = 0.5) -> T:
    """Poll `probe()` until `done(value)`; fail with the last value seen after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not reached after {timeout}s; last value: {value!r}")
        time.sleep(interval)
