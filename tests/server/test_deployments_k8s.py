"""Deployments through the server extension on the real test control plane (tests/k8s).

The jupyter server's environment points KUBECONFIG at the cluster; the server starts
`scanflow deploy/undeploy/status NB --json` subprocesses and the API shows their jobs and the
objects' readiness. Everything runs on the test cluster's real node: the tracker and S3 server
from the images `cluster.sh build` pushed to the local registry, the agents from images built
here and pushed there as `:latest` (what deploy picks with SCANFLOW_REGISTRY and no --images).
Each test deploys under its own team (and namespace).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from scanflow_jupyter.kubernetes.client import Cluster
from tests.integration.k8s_environment import agent_images, push_as_latest
from tests.integration.test_k8s_deploy import image_env, leftovers, scanflow, storage_for
from tests.k8s.fixture import k8s_cluster  # noqa: F401
from tests.server.conftest import api

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
APP = "agents-loop"
JOB_TIMEOUT = 300.0
READY_TIMEOUT = 240.0
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


@pytest.fixture(scope="module")
def latest_agent_images(k8s_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:  # noqa: F811
    return push_as_latest(agent_images(k8s_cluster, tmp_path_factory.mktemp("agents-build")))


@pytest.fixture
def on_cluster(k8s_cluster: Any, monkeypatch: pytest.MonkeyPatch, no_scanflow_env: None,  # noqa: F811
               latest_agent_images: dict[str, str]) -> Any:
    """The server (started after this fixture) sees the test cluster through KUBECONFIG, its
    environment images and its registry (the agents' `:latest` images)."""
    monkeypatch.setenv("KUBECONFIG", str(k8s_cluster.kubeconfig))
    for name, value in image_env(k8s_cluster).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SCANFLOW_REGISTRY", k8s_cluster.registry)
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
    volumes = storage_for(cluster, team)
    path = team_notebook(jp_root_dir, team)
    settings = {"namespace": namespace} if user_namespace else {}
    # the tracker's and the S3 server's claims bind to this test's static volumes (no provisioner)
    monkeypatch.setenv("SCANFLOW_K8S_STORAGE_CLASS", volumes.storage_class)
    try:
        _, config = await api(jp_fetch, "config", expect=200)
        kube = next(b for b in config["backends"] if b["name"] == "kubernetes")
        assert {k: kube.get(k) for k in ("name", "available", "reason")} == {
            "name": "kubernetes", "available": True, "reason": None}, kube

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
        assert deployments == {"scanflow-tracker", "scanflow-s3", "monitor", "planner"}, objects
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
            args = ["undeploy", str(jp_root_dir / path), "--json", "--wait", "120"]
            scanflow(*args, *(["--namespace", namespace] if user_namespace else []),
                     kubeconfig=on_cluster.kubeconfig)
        volumes.close()
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
