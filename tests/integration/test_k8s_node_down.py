"""`tests/k8s/cluster.sh down` on the real node leaves nothing behind (then `up` again).

Its own module, so that no module-scoped API client of another test outlives the restart.
Runs only on a cluster this pytest session started itself (as in CI): a cluster that was already
running may be in use by someone else and is left alone.
"""

from __future__ import annotations

import pathlib
import subprocess
import tempfile
from typing import Any

import pytest

from tests.k8s.fixture import UP_TIMEOUT, K8sCluster, _no_build_env, cluster_sh, k8s_cluster  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def _our_processes(run_dir: str) -> list[str]:
    """Processes started by cluster.sh for this run dir (it marks them SCANFLOW_K8S_RUN=<run dir>)."""
    found = []
    for proc in pathlib.Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if f"SCANFLOW_K8S_RUN={run_dir}".encode() in environ or (cmdline and run_dir + "/" in cmdline):
            found.append(f"{proc.name}: {cmdline[:120]}")
    return found


def _leftovers(run_dir: str) -> dict[str, Any]:
    def lines(*cmd: str) -> list[str]:
        out = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
        return [line for line in out.splitlines() if "KUBE-" in line or "CNI-" in line]

    mounts = [line.split()[1] for line in pathlib.Path("/proc/mounts").read_text().splitlines()
              if line.split()[1].startswith(run_dir + "/")]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=False).stdout
    return {"processes": _our_processes(run_dir), "mounts": mounts,
            "iptables": lines("iptables-save"), "ip6tables": lines("ip6tables-save"),
            "bridge": [line for line in links.splitlines() if "scanflow0" in line],
            "cgroups": [str(p) for p in pathlib.Path("/sys/fs/cgroup").glob("*/kubepods")]}


def test_down_leaves_nothing_behind_and_up_restores(k8s_cluster: K8sCluster) -> None:  # noqa: F811
    """`cluster.sh down`, then nothing of the node is left; `up` again for the tests that follow."""
    cluster = k8s_cluster
    if not cluster.started_here:
        pytest.skip("the cluster was already running before this session (someone may be using it): "
                    "down is checked on a cluster the session starts itself, as in CI")
    run_dir = str(cluster.kubeconfig.parent)
    saved = pathlib.Path(run_dir, "node", "sysctls.saved").read_text().split()
    assert _leftovers(run_dir)["processes"], "positive control: the running cluster's processes are seen"
    down = cluster_sh("down", timeout=180)
    assert down.returncode == 0, down.stderr
    try:
        assert _leftovers(run_dir) == {"processes": [], "mounts": [], "iptables": [], "ip6tables": [],
                                       "bridge": [], "cgroups": []}
        for item in saved:  # the sysctls the kubelet changed are back
            key, value = item.split("=", 1)
            assert subprocess.run(["sysctl", "-n", key], capture_output=True, text=True).stdout.strip() == value
        assert not pathlib.Path(run_dir, "node").exists()
    finally:
        with tempfile.TemporaryDirectory(prefix="scanflow-no-go-") as tmp:
            up = cluster_sh("up", timeout=UP_TIMEOUT, env=_no_build_env(pathlib.Path(tmp)))
        assert up.returncode == 0, up.stderr
