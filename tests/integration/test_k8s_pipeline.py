"""`scanflow run --backend kubernetes` end to end on the test cluster's REAL node (issue #10).

A team environment is deployed for real (`ephemeral` storage: the S3 server and the sqlite tracker
on emptyDir volumes; images built locally and pulled by the node from the local registry). Then
the CLI runs the diamond example as a user would: step images are built here and pushed, Argo
runs every step notebook in its pod, the pods read their inputs from and write their folders to
the environment's object store, the runner creates the MLflow runs in the environment's tracker
(reached through a port-forward) and passes each step its run id, and every finished step's folder
is fetched into `.scanflow/runs/`. Nothing here is faked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI, scanflow_command
from tests.integration.test_docker_support import docker_client, offline_base  # noqa: F401
from tests.k8s.fixture import K8sCluster, k8s_cluster  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
ARGO = ("argoproj.io", "v1alpha1", "workflows")


def _cluster_images(cluster: K8sCluster) -> dict[str, str]:
    """SCANFLOW_K8S_*_IMAGE exported by `cluster.sh env` (the environment's locally built images)."""
    out = subprocess.run([str(ROOT / "tests/k8s/cluster.sh"), "env"], capture_output=True, text=True, timeout=60)
    images = {}
    for line in out.stdout.splitlines():
        if line.startswith("export SCANFLOW_K8S_") and "_IMAGE=" in line:
            key, _, value = line[len("export "):].partition("=")
            images[key] = value.strip().strip("'\"")
    needed = ["SCANFLOW_K8S_TRACKER_IMAGE", "SCANFLOW_K8S_S3_IMAGE"]
    missing = [k for k in needed if k not in images]
    if missing:
        message = f"cluster.sh env printed no {', '.join(missing)} (tests/k8s/cluster.sh build builds them)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return images


@pytest.fixture(scope="module")
def team_env(k8s_cluster: K8sCluster, offline_base: str,  # noqa: F811
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The diamond app's team environment, deployed on the real node; undeployed after (and checked)."""
    from kubernetes import client

    from scanflow_jupyter.kubernetes import environment as env
    from scanflow_jupyter.kubernetes.config import DeployConfig
    from scanflow_jupyter.kubernetes.manifests import namespace_name
    from scanflow_jupyter.notebook.parser import parse_notebook

    images = _cluster_images(k8s_cluster)
    project = tmp_path_factory.mktemp("k8s-project")
    for name in ("diamond", "failing_step"):
        shutil.copy(ROOT / "notebooks" / f"{name}.ipynb", project / f"{name}.ipynb")
    app = parse_notebook(project / "diamond.ipynb")
    team = f"e2e-{uuid.uuid4().hex[:6]}"
    config = DeployConfig(kubeconfig=str(k8s_cluster.kubeconfig), team=team, storage_mode="ephemeral",
                          tracker_image=images["SCANFLOW_K8S_TRACKER_IMAGE"], s3_image=images["SCANFLOW_K8S_S3_IMAGE"])
    ns = namespace_name(app, config)
    cluster = env.connect(config)
    api = k8s_cluster.api_client()
    try:
        env.deploy(app, config, cluster=cluster)
        ready = env.wait_ready(app, config, cluster, timeout=300)
        assert ready.ready, f"the environment did not become ready: {ready}"
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("SCANFLOW_", "MLFLOW_", "AWS_"))}
        environ.update({"KUBECONFIG": str(k8s_cluster.kubeconfig), "SCANFLOW_K8S_NAMESPACE": ns,
                        "SCANFLOW_REGISTRY": k8s_cluster.registry, "SCANFLOW_BASE_IMAGE": offline_base,
                        "SCANFLOW_HOME": str(project / ".scanflow")})
        state = {"ns": ns, "api": api, "project": project, "environ": environ, "app": app, "config": config,
                 "cluster": cluster}
        yield state
    finally:
        for tunnel in locals().get("state", {}).get("tunnels", []):
            tunnel.close()
        env.undeploy(app, config, cluster=cluster, wait=180)
        gone = False
        try:
            client.CoreV1Api(api).read_namespace(ns)
        except client.exceptions.ApiException as exc:
            gone = exc.status == 404
        assert gone, f"namespace {ns} is still there after undeploy"


def scanflow(team_env: dict[str, Any], *args: str, timeout: float = 1200) -> tuple[int, dict[str, Any], str]:
    proc = subprocess.run([*scanflow_command(), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=team_env["project"], env=team_env["environ"])
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        doc = {}
    return proc.returncode, doc, proc.stderr


def workflows(team_env: dict[str, Any]) -> list[dict[str, Any]]:
    from kubernetes import client

    return client.CustomObjectsApi(team_env["api"]).list_namespaced_custom_object(*ARGO[:2], team_env["ns"],
                                                                                    ARGO[2])["items"]


def tracker(team_env: dict[str, Any]) -> Any:
    """An MlflowClient of the environment's tracker, through a port-forward (as the runner reaches it)."""
    from kubernetes import client
    from mlflow.tracking import MlflowClient

    from scanflow_jupyter.kubernetes.tunnel import ServiceTunnel
    from scanflow_jupyter.runtime.kubernetes_backend import ENV_CONFIGMAP, _service_of

    data = client.CoreV1Api(team_env["api"]).read_namespaced_config_map(ENV_CONFIGMAP, team_env["ns"]).data
    service, port = _service_of(data["MLFLOW_TRACKING_URI"], 5000)  # the Service the pods use
    tunnel = ServiceTunnel(team_env["api"], team_env["ns"], service, port).open()
    team_env.setdefault("tunnels", []).append(tunnel)
    return MlflowClient(tracking_uri=tunnel.url)


def test_diamond_runs_on_the_node_with_one_mlflow_and_the_object_store(team_env: dict[str, Any]) -> None:
    from scanflow_jupyter.data.serializers import load_value, read_record

    code, doc, err = scanflow(team_env, "run", "diamond.ipynb", "--backend", "kubernetes", "--json")
    assert code == 0 and doc.get("status") == "succeeded", (code, doc, err[-3000:])
    assert {n: s["status"] for n, s in doc["steps"].items()} == dict.fromkeys(
        ["load", "features", "stats", "train"], "succeeded")
    run_dir = Path(doc["run_dir"])
    # every step's folder was fetched: the same files as after a local run
    for step in ("load", "features", "stats", "train"):
        for name in ("input.ipynb", "output.ipynb", "log.txt"):
            assert (run_dir / step / name).is_file(), f"{step}/{name} was not fetched"
    outputs = run_dir / "train" / "outputs"
    model = load_value(outputs, read_record(outputs, "model"), verify=True)
    assert hasattr(model, "predict")
    assert "accuracy:" in (run_dir / "train" / "log.txt").read_text(encoding="utf-8")
    # the pods ran on the real node, from the local registry
    from kubernetes import client

    pods = client.CoreV1Api(team_env["api"]).list_namespaced_pod(
        team_env["ns"], label_selector=f"scanflow.io/run-id={doc['run_id']}").items
    assert {p.metadata.labels["scanflow.io/step"] for p in pods} == {"load", "features", "stats", "train"}
    assert {p.spec.node_name for p in pods} == {"scanflow-node-0"}
    # one MLflow: the parent and the step runs live in the environment's tracker; the pod's
    # mlflow.log_metric landed in the train step's run, whose artifacts hold its output notebook
    state = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    mlflow = tracker(team_env)
    parent = mlflow.get_run(doc["mlflow_run_id"])
    assert parent.info.status == "FINISHED"
    train = mlflow.get_run(state["steps"]["train"]["mlflow_run_id"])
    assert train.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    assert 0.5 <= train.data.metrics["accuracy"] <= 1.0, train.data.metrics
    assert "output.ipynb" in {a.path for a in mlflow.list_artifacts(train.info.run_id)}
    children = mlflow.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(children) == 4
    assert doc["tracking"] == "synced" and not doc["warnings"], doc


def test_rerun_is_fully_cached_and_only_reexecutes_on_the_node(team_env: dict[str, Any]) -> None:
    before = len(workflows(team_env))
    code, doc, err = scanflow(team_env, "run", "diamond.ipynb", "--backend", "kubernetes", "--json")
    assert code == 0, (doc, err[-2000:])
    assert {s["status"] for s in doc["steps"].values()} == {"cached"}, doc
    assert len(workflows(team_env)) == before, "a fully cached run submitted a Workflow"
    # --only train: its upstream outputs (from the cache) are uploaded, train executes in a pod
    code, doc, err = scanflow(team_env, "run", "diamond.ipynb", "--backend", "kubernetes", "--only", "train", "--json")
    assert code == 0, (doc, err[-3000:])
    assert {n: s["status"] for n, s in doc["steps"].items()} == {
        "load": "cached", "features": "cached", "stats": "cached", "train": "succeeded"}, doc
    assert len(workflows(team_env)) == before + 1
    assert (Path(doc["run_dir"]) / "train" / "outputs").is_dir()


def test_a_failing_step_fails_with_its_cell_and_skips_its_dependents(team_env: dict[str, Any]) -> None:
    code, doc, err = scanflow(team_env, "run", "failing_step.ipynb", "--backend", "kubernetes", "--json")
    assert code == 1, (code, doc, err[-2000:])
    statuses = {n: s["status"] for n, s in doc["steps"].items()}
    assert statuses == {"prepare": "succeeded", "explode": "failed", "after_explode": "skipped",
                        "independent": "succeeded"}, doc
    error = doc["steps"]["explode"]["error"]
    assert error["type"] == "ValueError" and "on purpose" in error["message"], error
    _, local, _ = scanflow(team_env, "run", "failing_step.ipynb", "--json")  # the local backend, same notebook
    assert local["steps"]["explode"]["error"]["cell"] == error["cell"] and error["cell"], (local, error)
    assert "on purpose" in (Path(doc["run_dir"]) / "explode" / "output.ipynb").read_text(encoding="utf-8")
