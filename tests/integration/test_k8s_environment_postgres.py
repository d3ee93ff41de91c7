"""The team environment's data plane on the real test node (issue #10): `scanflow deploy --storage
postgres` of notebooks/agents_loop.ipynb runs the S3 server, PostgreSQL, the MLflow tracker and both
agents as real pods (images from the cluster's local registry). Through a port-forward, a run's
metric lands in PostgreSQL and its artifact in the S3 bucket (served by the tracker); both survive
the tracker pod's deletion; agents reach the tracker and each other by Service name; undeploy
removes the namespace and frees the volumes.
"""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scanflow_jupyter.kubernetes import environment as env
from scanflow_jupyter.kubernetes import manifests as mf
from scanflow_jupyter.kubernetes.client import Cluster
from scanflow_jupyter.kubernetes.config import DeployConfig
from scanflow_jupyter.notebook.parser import parse_notebook
from tests.integration.k8s_environment import (
    AGENTS_LOOP,
    HostPathVolumes,
    agent_images,
    cli,
    cluster_images,
    port_forward,
    s3_list,
    wait_for,
)
from tests.k8s.fixture import k8s_cluster  # noqa: F401

pytestmark = pytest.mark.integration

DEPLOYMENTS = {mf.TRACKER, mf.S3, mf.POSTGRES, "monitor", "planner"}


@pytest.fixture
def outside_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """An MLflow client outside the cluster: artifacts through the tracker only. With S3 artifacts
    MLflow 3 otherwise hands out presigned URLs of the in-cluster S3 Service name (unresolvable here)."""
    monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD", "false")
    monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "false")


@pytest.fixture(scope="module")
def pg_env(k8s_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:  # noqa: F811
    images = cluster_images(k8s_cluster)
    images_file = agent_images(k8s_cluster, tmp_path_factory.mktemp("agents-build"))
    cluster = Cluster(kubeconfig=str(k8s_cluster.kubeconfig))
    volumes = HostPathVolumes(cluster, "pg", 2)  # postgres-data, s3-data
    team = f"pg-{uuid.uuid4().hex[:6]}"
    app = parse_notebook(AGENTS_LOOP)
    config = DeployConfig(kubeconfig=str(k8s_cluster.kubeconfig), team=team, storage_mode="postgres",
                          storage_class=volumes.storage_class, **images)
    ns = mf.namespace_name(app, config)
    state: dict[str, Any] = {"k8s": k8s_cluster, "cluster": cluster, "ns": ns, "team": team, "images": images,
                             "images_file": images_file, "volumes": volumes, "app": app, "config": config}
    try:
        proc = cli(k8s_cluster, "deploy", str(AGENTS_LOOP), "--team", team, "--storage", "postgres",
                   "--storage-class", volumes.storage_class, "--images", str(images_file), "--wait", "300", "--json",
                   images=images)
        state["deploy"] = proc
        yield state
    finally:
        env.undeploy(app, config, cluster=cluster, wait=180)
        volumes.close()
        cluster.close()


def pods(state: dict[str, Any]) -> list[dict[str, Any]]:
    return state["cluster"].list("Pod", "v1", state["ns"], f"{mf.LABEL_TEAM}={state['team']}")


def kubectl(state: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    return state["k8s"].kubectl("-n", state["ns"], *args)


def test_deploy_with_postgres_storage_is_ready_on_the_real_node(pg_env: dict[str, Any]) -> None:
    proc = pg_env["deploy"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["ready"] is True, doc
    objects = {(o["kind"], o["name"]) for o in doc["objects"]}
    assert {("Deployment", d) for d in DEPLOYMENTS} <= objects
    assert {("Secret", mf.POSTGRES), ("Service", mf.POSTGRES), ("PersistentVolumeClaim", mf.POSTGRES_PVC),
            ("Service", mf.S3), ("PersistentVolumeClaim", mf.S3_PVC)} <= objects
    running = pods(pg_env)
    by_deployment = {p["metadata"]["labels"]["app.kubernetes.io/name"] for p in running}
    assert by_deployment == DEPLOYMENTS
    for pod in running:
        assert pod["spec"]["nodeName"] == pg_env["k8s"].node, pod["metadata"]["name"]  # not the kwok pool
        ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}.get("Ready")
        assert ready == "True", (pod["metadata"]["name"], pod["status"])
    # generated credentials exist, and no manifest printed by the CLI carries them
    secret = pg_env["cluster"].get("Secret", "v1", mf.SECRET, pg_env["ns"])
    assert {"aws-access-key-id", "aws-secret-access-key"} <= set(secret["data"])
    password = pg_env["cluster"].get("Secret", "v1", mf.POSTGRES, pg_env["ns"])["data"]["password"]
    assert base64.b64decode(password).decode() not in proc.stdout + proc.stderr


def _s3_keys(state: dict[str, Any]) -> tuple[str, str]:
    data = state["cluster"].get("Secret", "v1", mf.SECRET, state["ns"])["data"]
    return (base64.b64decode(data["aws-access-key-id"]).decode(),
            base64.b64decode(data["aws-secret-access-key"]).decode())


def test_metric_in_postgres_and_artifact_in_the_bucket(pg_env: dict[str, Any], tmp_path: Path,
                                                       outside_client: None) -> None:
    from mlflow.tracking import MlflowClient

    with port_forward(pg_env["k8s"], pg_env["ns"], mf.TRACKER, 5000) as url:
        client = MlflowClient(tracking_uri=url)
        experiment = client.create_experiment(f"real-node-{uuid.uuid4().hex[:6]}")
        run = client.create_run(experiment)
        client.log_metric(run.info.run_id, "accuracy", 0.875)
        (tmp_path / "model.txt").write_text("a model", encoding="utf-8")
        client.log_artifact(run.info.run_id, str(tmp_path / "model.txt"))
        assert [f.path for f in client.list_artifacts(run.info.run_id)] == ["model.txt"]
    pg_env["run"] = (experiment, run.info.run_id)
    # the metric is a row of PostgreSQL's metrics table
    query = f"select value from metrics where run_uuid = '{run.info.run_id}' and key = 'accuracy'"
    psql = kubectl(pg_env, "exec", f"deploy/{mf.POSTGRES}", "--", "psql", "-h", "/tmp", "-U", mf.POSTGRES_USER,
                   "-d", mf.POSTGRES_DB, "-Atc", query)
    assert psql.returncode == 0 and psql.stdout.strip() == "0.875", psql.stdout + psql.stderr
    # the artifact is an object of the bucket, listed with a signed S3 request
    access, secret = _s3_keys(pg_env)
    with port_forward(pg_env["k8s"], pg_env["ns"], mf.S3, 9000) as s3:
        keys = s3_list(s3, "scanflow", f"mlflow/{experiment}/{run.info.run_id}/", access, secret)
    assert keys == [f"mlflow/{experiment}/{run.info.run_id}/artifacts/model.txt"], keys


def test_tracking_data_survives_the_tracker_pod(pg_env: dict[str, Any], outside_client: None) -> None:
    from mlflow.tracking import MlflowClient

    if "run" not in pg_env:
        pytest.fail("test_metric_in_postgres_and_artifact_in_the_bucket did not log its run")
    _experiment, run_id = pg_env["run"]
    old = [p["metadata"]["name"] for p in pods(pg_env) if p["metadata"]["labels"]["app.kubernetes.io/name"] == mf.TRACKER]
    deleted = kubectl(pg_env, "delete", "pod", *old, "--wait=true")
    assert deleted.returncode == 0, deleted.stderr

    def new_tracker_ready() -> bool:
        fresh = [p for p in pods(pg_env) if p["metadata"]["labels"]["app.kubernetes.io/name"] == mf.TRACKER
                 and p["metadata"]["name"] not in old and not p["metadata"].get("deletionTimestamp")]
        return any({c["type"]: c["status"] for c in (p.get("status") or {}).get("conditions") or []}.get("Ready")
                   == "True" for p in fresh)

    wait_for(new_tracker_ready, "a new tracker pod Ready", timeout=180)
    with port_forward(pg_env["k8s"], pg_env["ns"], mf.TRACKER, 5000) as url:
        client = MlflowClient(tracking_uri=url)
        assert client.get_run(run_id).data.metrics == {"accuracy": 0.875}
        assert [f.path for f in client.list_artifacts(run_id)] == ["model.txt"]
        local = client.download_artifacts(run_id, "model.txt")
        assert Path(local).read_text(encoding="utf-8") == "a model"


PROBE = """
import json, os, urllib.request
out = {}
for name, url in (("tracker", os.environ["MLFLOW_TRACKING_URI"] + "/health"),
                  ("tracker-short", "http://scanflow-tracker:5000/health"),
                  ("planner", "http://planner:8080/healthz"),
                  ("s3", os.environ["SCANFLOW_S3_ENDPOINT_URL"] + "/health")):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            out[name] = r.status
    except Exception as exc:
        out[name] = repr(exc)
print(json.dumps(out))
"""


def test_agents_reach_the_tracker_and_each_other_by_service_name(pg_env: dict[str, Any]) -> None:
    proc = kubectl(pg_env, "exec", "deploy/monitor", "--", "python", "-c", PROBE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {
        "tracker": 200, "tracker-short": 200, "planner": 200, "s3": 200}


def test_undeploy_removes_the_namespace_and_frees_the_volumes(pg_env: dict[str, Any]) -> None:
    ns = pg_env["ns"]
    assert pg_env["volumes"].bound_to(ns)  # the claims were bound
    proc = cli(pg_env["k8s"], "undeploy", str(AGENTS_LOOP), "--team", pg_env["team"], "--wait", "180", "--json",
               images=pg_env["images"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert pg_env["cluster"].get("Namespace", "v1", ns) is None, "the namespace is still there"
    assert pg_env["volumes"].bound_to(ns) == []
    claims = pg_env["cluster"].list("PersistentVolumeClaim", "v1", ns, f"{mf.LABEL_TEAM}={pg_env['team']}")
    assert claims == []
