"""Helpers for the team-environment tests on the real test node (tests/k8s, issue #10).

* `agent_images`: notebooks/agents_loop.ipynb's agent images, built from the offline Debian base
  and pushed to the cluster's local registry (`scanflow build` reuses unchanged images, so only
  the first session pays the build).
* `HostPathVolumes`: static PersistentVolumes for one test (the test cluster has no dynamic
  provisioner): a StorageClass name of their own, world-writable directories on the node (this
  machine), removed with the volumes at the end.
* `port_forward`: `kubectl port-forward` to a Service, as a user reaches a ClusterIP Service.
* `s3_list`: a SigV4-signed ListObjectsV2 request (no boto3 in the test venv).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
AGENTS_LOOP = ROOT / "notebooks" / "agents_loop.ipynb"
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def cluster_images(k8s: Any) -> dict[str, str]:
    """The environment's images that `cluster.sh build` made (fails/skips when one is missing)."""
    images = {"tracker_image": k8s.tracker_image, "s3_image": k8s.s3_image, "postgres_image": k8s.postgres_image}
    missing = [k for k, v in images.items() if not v]
    if missing:
        unavailable(f"cluster.sh env printed no image for {', '.join(missing)}: run tests/k8s/cluster.sh build "
                    "with the Docker Engine running")
    return images


def cli(k8s: Any, *args: str, images: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The `scanflow` CLI against the test cluster with its environment images (nothing from the shell)."""
    from tests.conftest import scanflow_command

    environ = {k: v for k, v in os.environ.items() if not k.startswith(("SCANFLOW_", "KUBECONFIG", "MLFLOW_", "AWS_"))}
    environ.update(KUBECONFIG=str(k8s.kubeconfig), SCANFLOW_K8S_TRACKER_IMAGE=images["tracker_image"],
                   SCANFLOW_K8S_S3_IMAGE=images["s3_image"], SCANFLOW_K8S_POSTGRES_IMAGE=images["postgres_image"])
    return subprocess.run([*scanflow_command(), *args], capture_output=True, text=True, timeout=600, env=environ)


def agent_images(k8s: Any, work: Path) -> Path:
    """The `scanflow build --json` file of agents_loop's agents, pushed to the cluster's registry."""
    from scanflow_jupyter.build.base import ensure_base_image
    from scanflow_jupyter.build.builder import EngineUnavailable, docker_client

    try:
        base, _built, _seconds = ensure_base_image(docker_client())
    except EngineUnavailable as exc:
        unavailable(f"the agent images need the Docker Engine: {exc}")
    work.mkdir(parents=True, exist_ok=True)
    shutil.copy(AGENTS_LOOP, work / AGENTS_LOOP.name)
    out = work / "images.json"
    from tests.conftest import scanflow_command

    proc = subprocess.run([*scanflow_command(), "build", AGENTS_LOOP.name, "--step", "monitor",
                           "--step", "planner", "--base", base, "--push", k8s.registry, "--json"],
                          capture_output=True, text=True, timeout=1800, cwd=work,
                          env={**os.environ, "SCANFLOW_HOME": str(work / ".scanflow")})
    assert proc.returncode == 0, f"scanflow build failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    doc = json.loads(proc.stdout)
    assert set(doc["steps"]) == {"monitor", "planner"}, doc
    out.write_text(proc.stdout, encoding="utf-8")
    return out


class HostPathVolumes:
    """`count` static hostPath PersistentVolumes of a StorageClass named after the test."""

    def __init__(self, cluster: Any, prefix: str, count: int, size: str = "5Gi") -> None:
        self.cluster = cluster
        self.storage_class = f"scanflow-test-{prefix}-{uuid.uuid4().hex[:6]}"
        self.names = [f"{self.storage_class}-{i}" for i in range(count)]
        self.dirs = [Path("/tmp") / name for name in self.names]
        for name, folder in zip(self.names, self.dirs, strict=True):
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o777)  # hostPath volumes get no fsGroup: any pod uid must write here
            cluster.apply({"apiVersion": "v1", "kind": "PersistentVolume",
                           "metadata": {"name": name, "labels": {"scanflow.io/test": "k8s"}},
                           "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                                    "storageClassName": self.storage_class,
                                    "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": str(folder)}}})

    def bound_to(self, namespace: str) -> list[str]:
        """Volumes still bound to a claim of `namespace`."""
        out = []
        for name in self.names:
            pv = self.cluster.get("PersistentVolume", "v1", name) or {}
            ref = (pv.get("spec") or {}).get("claimRef") or {}
            if ref.get("namespace") == namespace and (pv.get("status") or {}).get("phase") == "Bound":
                out.append(name)
        return out

    def close(self) -> None:
        for name in self.names:
            self.cluster.delete("PersistentVolume", "v1", name)
        for folder in self.dirs:
            shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def port_forward(k8s: Any, namespace: str, service: str, port: int, timeout: float = 60) -> Iterator[str]:
    """`http://127.0.0.1:<local port>` forwarded to `service:port` (kubectl port-forward)."""
    proc = subprocess.Popen([str(k8s.bin_dir / "kubectl"), "--kubeconfig", str(k8s.kubeconfig), "-n", namespace,
                             "port-forward", f"svc/{service}", f":{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "Forwarding from 127.0.0.1:PORT -> port"
        match = re.search(r"127\.0\.0\.1:(\d+)", line)
        if not match:
            proc.kill()
            pytest.fail(f"kubectl port-forward to {namespace}/{service}: {line} {proc.stderr.read() if proc.stderr else ''}")
        yield f"http://127.0.0.1:{match.group(1)}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _sign(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def s3_list(endpoint: str, bucket: str, prefix: str, access_key: str, secret_key: str,
            region: str = "us-east-1") -> list[str]:
    """Keys under `prefix` in `bucket` (one ListObjectsV2 page), signed with AWS SigV4."""
    url = urllib.parse.urlsplit(endpoint)
    query = urllib.parse.urlencode(sorted({"list-type": "2", "prefix": prefix}.items()),
                                   quote_via=urllib.parse.quote)
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    payload = hashlib.sha256(b"").hexdigest()
    headers = {"host": url.netloc, "x-amz-content-sha256": payload, "x-amz-date": amz_date}
    signed = ";".join(sorted(headers))
    canonical = "\n".join(["GET", f"/{bucket}", query, *(f"{k}:{headers[k]}" for k in sorted(headers)), "",
                           signed, payload])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _sign(_sign(_sign(_sign(f"AWS4{secret_key}".encode(), day), region), "s3"), "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    request = urllib.request.Request(f"{endpoint}/{bucket}?{query}", headers={
        **{k: v for k, v in headers.items() if k != "host"},
        "Authorization": f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed}, "
                         f"Signature={signature}"})
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (a loopback port-forward)
        body = response.read().decode()
    return re.findall(r"<Key>([^<]+)</Key>", body)


def wait_for(probe: Any, what: str, timeout: float = 180, interval: float = 1.0) -> Any:
    """Poll `probe()` until it returns a truthy value (its value) or fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except Exception as exc:  # noqa: BLE001 (a pod restarting: keep polling, report the last error)
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    pytest.fail(f"{what}: not reached after {timeout}s; last: {last!r}")


def push_as_latest(images_file: Path) -> dict[str, str]:
    """Tag each image of a `scanflow build --json` file `:latest` in its registry and push it: what
    deploy picks without --images (`<registry>/scanflow/<app>-<name>:latest`)."""
    from scanflow_jupyter.build.builder import docker_client

    client = docker_client()
    out = {}
    for name, entry in json.loads(images_file.read_text(encoding="utf-8"))["steps"].items():
        repository = entry["image"].rsplit(":", 1)[0]
        client.images.get(entry["image"]).tag(repository, "latest")
        for line in client.images.push(repository, "latest", stream=True, decode=True):
            assert "error" not in line, f"pushing {repository}:latest: {line}"
        out[name] = f"{repository}:latest"
    return out
