"""Deployments through the server extension on the real test control plane (tests/k8s).

The jupyter server's environment points KUBECONFIG at the cluster; the server starts
`scanflow deploy/undeploy/status NB --json` subprocesses and the API shows their jobs and the
objects' readiness. kwok fakes the node and pods; the API server, controllers, apply and
namespace deletion are real. Each test deploys under its own team (and namespace).
kwok pool, to be moved to the real node: issue #10 (the tracker image is not in the local
registry, so tests/k8s/manifests/kwok-pool.yaml places the pods on the kwok pool).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from scanflow_jupyter.kubernetes.client import Cluster
from tests.integration.test_k8s_deploy import TRACKER_IMAGE, leftovers, scanflow, storage_for
from tests.k8s.fixture import k8s_cluster  # noqa: F401
from tests.server.conftest import api

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
APP = "agents-loop"
JOB_TIMEOUT = 300.0
READY_TIMEOUT = 180.0
LABELLED_KINDS = ("namespaces,deployments,replicasets,pods,services,configmaps,secrets,persistentvolumeclaims,"
                  "serviceaccounts,roles,rolebindings,horizontalpodautoscalers,networkpolicies,endpointslices")


def team_notebook(root: Path, team: str) -> str:
    """A copy of notebooks/agents_loop.ipynb deployed under `team`; its path relative to root."""
    text = (ROOT / "notebooks" / "agents_loop.ipynb").read_text(encoding="utf-8")
    assert text.count("%scanflow_app agents-loop") == 1
    (root / "agents_loop.ipynb").write_text(
        text.replace("%scanflow_app agents-loop", f"%scanflow_app agents-loop --team {team}"), encoding="utf-8")
    return "agents_loop.ipynb"


@pytest.fixture
def no_scanflow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing from the developer's shell decides where the server deploys."""
    for name in ("SCANFLOW_K8S_CONTEXT", "SCANFLOW_K8S_NAMESPACE", "SCANFLOW_REGISTRY", "KUBERNETES_SERVICE_HOST",
                 "SCANFLOW_K8S_STORAGE_CLASS", "SCANFLOW_K8S_IMAGES"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def on_cluster(k8s_cluster: Any, monkeypatch: pytest.MonkeyPatch, no_scanflow_env: None) -> Any:  # noqa: F811
    """The server (started after this fixture) sees the test cluster through KUBECONFIG."""
    monkeypatch.setenv("KUBECONFIG", str(k8s_cluster.kubeconfig))
    monkeypatch.setenv("SCANFLOW_K8S_TRACKER_IMAGE", TRACKER_IMAGE)
    return k8s_cluster


def labelled(k8s: Any, selector: str) -> list[str]:
    """Every object (all namespaces, cluster-scoped too) with these labels that is not being deleted."""
    proc = k8s.kubectl("get", LABELLED_KINDS, "--all-namespaces", "-l", selector, "-o", "json")
    assert proc.returncode == 0, proc.stderr
    return [f"{i['kind']}/{i['metadata'].get('namespace')}/{i['metadata']['name']}"
            for i in json.loads(proc.stdout)["items"] if not i["metadata"].get("deletionTimestamp")]


async def job_done(jp_fetch: Any, job_id: str) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + JOB_TIMEOUT
    while True:
        _, job = await api(jp_fetch, "deployments", job_id, expect=200)
        if job["status"] != "running":
            return job
        assert loop.time() < deadline, f"job {job_id} still running after {JOB_TIMEOUT} s: {job['log'][-2000:]}"
        await asyncio.sleep(1)


async def ready_objects(jp_fetch: Any, params: dict[str, str]) -> list[dict[str, Any]]:
    """GET deployments until every object exists and is ready (or the timeout: the last answer)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_TIMEOUT
    while True:
        _, doc = await api(jp_fetch, "deployments", params=params, expect=200, request_timeout=120)
        assert doc["available"] is True and doc["reason"] is None, doc
        objects = doc["objects"]
        if (objects and all(o["ready"] for o in objects)) or loop.time() > deadline:
            return objects
        await asyncio.sleep(2)


@pytest.mark.parametrize("user_namespace", [False, True], ids=["team-namespace", "settings-namespace"])
async def test_deploy_status_undeploy_through_the_server(
        on_cluster: Any, jp_fetch: Any, jp_root_dir: Path, user_namespace: bool,
        monkeypatch: pytest.MonkeyPatch) -> None:
    team = f"srv-{uuid.uuid4().hex[:6]}"
    namespace = f"sf-user-{team}" if user_namespace else f"scanflow-{APP}-{team}"
    cluster = Cluster(kubeconfig=str(on_cluster.kubeconfig))
    klass, pv = storage_for(cluster, team)
    path = team_notebook(jp_root_dir, team)
    settings = {"namespace": namespace} if user_namespace else {}
    # the tracker's PVC binds to this test's static volume (kwok has no provisioner)
    monkeypatch.setenv("SCANFLOW_K8S_STORAGE_CLASS", klass)
    try:
        _, config = await api(jp_fetch, "config", expect=200)
        kube = next(b for b in config["backends"] if b["name"] == "kubernetes")
        assert kube == {"name": "kubernetes", "available": True, "reason": None}

        _, started = await api(jp_fetch, "deployments", method="POST", expect=202,
                               body={"path": path, **({"settings": settings} if settings else {})})
        job = await job_done(jp_fetch, started["job_id"])
        assert job["status"] == "succeeded" and job["exit_code"] == 0, job["log"][-3000:]
        assert job["kind"] == "deploy" and job["result"]["namespace"] == namespace, job["result"]
        assert {o["action"] for o in job["result"]["objects"]} == {"created"}, job["result"]

        objects = await ready_objects(jp_fetch, {"path": path, **settings})
        not_ready = [o for o in objects if not o["ready"]]
        assert objects and not not_ready, f"not ready after {READY_TIMEOUT} s: {not_ready}"
        deployments = {o["name"] for o in objects if o["kind"] == "Deployment"}
        assert deployments == {"mlflow", "monitor", "planner"}, objects
        assert {o["namespace"] for o in objects if o["kind"] != "Namespace"} == {namespace}
        assert leftovers(cluster, namespace, APP, team)

        _, started = await api(jp_fetch, "deployments", method="DELETE", params={"path": path, **settings},
                               expect=202)
        job = await job_done(jp_fetch, started["job_id"])
        assert job["status"] == "succeeded" and job["kind"] == "undeploy", job["log"][-3000:]
        deleted = {(o["kind"], o["name"]) for o in job["result"]["objects"] if o["action"] == "deleted"}
        assert ("Namespace", namespace) in deleted and ("Deployment", "monitor") in deleted, job["result"]
        assert leftovers(cluster, namespace, APP, team) == []
        remaining = labelled(on_cluster, f"scanflow.io/app={APP},scanflow.io/team={team}")
        assert remaining == [], remaining
    finally:
        if leftovers(cluster, namespace, APP, team):  # a failed test: clean up with the CLI
            args = ["undeploy", str(jp_root_dir / path), "--json", "--wait", "60"]
            scanflow(*args, *(["--namespace", namespace] if user_namespace else []),
                     kubeconfig=on_cluster.kubeconfig)
        cluster.delete("PersistentVolume", "v1", pv)
        cluster.close()


async def test_without_kubeconfig_deployments_are_unavailable(
        jp_fetch: Any, jp_root_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        no_scanflow_env: None) -> None:
    missing = tmp_path / "no-such-kubeconfig"
    monkeypatch.setenv("KUBECONFIG", str(missing))
    path = team_notebook(jp_root_dir, "nobody")

    _, config = await api(jp_fetch, "config", expect=200)
    kube = next(b for b in config["backends"] if b["name"] == "kubernetes")
    assert kube["available"] is False and "no usable kubeconfig" in kube["reason"], kube

    _, doc = await api(jp_fetch, "deployments", params={"path": path}, expect=200)
    assert doc["available"] is False and doc["objects"] == []
    assert "no usable kubeconfig" in doc["reason"] and "KUBECONFIG" in doc["reason"], doc

    _, refused = await api(jp_fetch, "deployments", method="POST", body={"path": path}, expect=503)
    assert refused["message"].startswith("cannot deploy: no usable kubeconfig"), refused
    assert "kubeconfig" in refused["fix"]
    _, refused = await api(jp_fetch, "deployments", method="DELETE", params={"path": path}, expect=503)
    assert refused["message"].startswith("cannot undeploy:"), refused
