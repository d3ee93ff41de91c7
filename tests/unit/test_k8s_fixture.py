"""The k8s fixture never builds the cluster: unbuilt binaries fail (CI) / skip at once, naming the fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.k8s.fixture import BUILD_FIX, CLUSTER_SH, unbuilt_parts

REPO = Path(__file__).resolve().parents[2]


def test_stamps_of_cluster_sh_decide_what_is_built(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SCANFLOW_K8S_CACHE", str(tmp_path))
    script = tmp_path / "cluster.sh"
    script.write_text('K8S_VERSION=v1.2.3\nETCD_VERSION=v3.4.5\n'
                      'a() { stamp_ok kubernetes "$K8S_VERSION" kube-apiserver kubectl \\\n && return 0; }\n'
                      'b() { stamp_ok etcd "$ETCD_VERSION" etcd && return 0; }\n', encoding="utf-8")
    assert [p.split()[0] for p in unbuilt_parts(script)] == ["kubernetes", "etcd"]
    bin_dir = tmp_path / "v1.2.3" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("kube-apiserver", "kubectl", "etcd"):
        (bin_dir / name).write_text("#!/bin/sh\n")
        (bin_dir / name).chmod(0o755)
    (bin_dir / ".kubernetes.version").write_text("v1.2.3\n")
    (bin_dir / ".etcd.version").write_text("v3.4.4\n")  # built from another version: not built
    assert [p.split()[0] for p in unbuilt_parts(script)] == ["etcd"]
    (bin_dir / ".etcd.version").write_text("v3.4.5\n")
    (bin_dir / "kubectl").unlink()
    assert [p.split()[0] for p in unbuilt_parts(script)] == ["kubernetes"]


def test_every_part_of_the_real_cluster_sh_is_checked(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SCANFLOW_K8S_CACHE", str(tmp_path))
    parts = [p.split()[0] for p in unbuilt_parts(CLUSTER_SH)]
    assert {"kubernetes", "etcd", "argo"} <= set(parts), parts


def test_unbuilt_cluster_fails_the_k8s_tests_at_once_in_ci(tmp_path: Path) -> None:
    env = {**os.environ, "CI": "true", "SCANFLOW_K8S_CACHE": str(tmp_path / "empty-cache"),
           "SCANFLOW_K8S_DIR": str(tmp_path / "run")}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
                           "tests/integration/test_k8s_cluster.py"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "the test cluster is not built" in out and BUILD_FIX in out, out
    assert not (tmp_path / "empty-cache").exists()  # nothing was built, not even a folder made
    assert not (tmp_path / "run").exists()
