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
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import scanflow_command
from tests.integration.test_docker_support import docker_client, offline_base  # noqa: F401
from tests.k8s.fixture import K8sCluster, k8s_cluster  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
ARGO = ("argoproj.io", "v1alpha1", "workflows")


@contextmanager
def deployed(k8s: K8sCluster, base: str, work: Path, storage: str) -> Iterator[dict[str, Any]]:
    """The diamond app's team environment with `storage`, deployed on the real node; undeployed after
    (and checked gone). The notebooks of these tests are copied into `work`, the project folder."""
    from kubernetes import client

    from scanflow_jupyter.kubernetes import environment as env
    from scanflow_jupyter.kubernetes.config import DeployConfig
    from scanflow_jupyter.kubernetes.manifests import namespace_name
    from scanflow_jupyter.notebook.parser import parse_notebook
    from tests.integration.k8s_environment import HostPathVolumes, cluster_images

    images = cluster_images(k8s)
    for name in ("diamond", "failing_step"):
        shutil.copy(ROOT / "notebooks" / f"{name}.ipynb", work / f"{name}.ipynb")
    app = parse_notebook(work / "diamond.ipynb")
    team = f"e2e-{uuid.uuid4().hex[:6]}"
    cluster = env.connect(DeployConfig(kubeconfig=str(k8s.kubeconfig), team=team))
    volumes = HostPathVolumes(cluster, f"e2e-{storage}", 2) if storage != "ephemeral" else None
    config = DeployConfig(kubeconfig=str(k8s.kubeconfig), team=team, storage_mode=storage,
                          storage_class=volumes.storage_class if volumes else None, **images)
    ns = namespace_name(app, config)
    api = k8s.api_client()
    state: dict[str, Any] = {}
    try:
        env.deploy(app, config, cluster=cluster)
        ready = env.wait_ready(app, config, cluster, timeout=300)
        assert ready.ready, f"the environment did not become ready: {ready}"
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("SCANFLOW_", "MLFLOW_", "AWS_"))}
        environ.update({"KUBECONFIG": str(k8s.kubeconfig), "SCANFLOW_K8S_NAMESPACE": ns,
                        "SCANFLOW_REGISTRY": k8s.registry, "SCANFLOW_BASE_IMAGE": base,
                        "SCANFLOW_HOME": str(work / ".scanflow")})
        state.update(ns=ns, api=api, project=work, environ=environ, app=app, config=config, cluster=cluster)
        yield state
    finally:
        for tunnel in state.get("tunnels", []):
            tunnel.close()
        env.undeploy(app, config, cluster=cluster, wait=180)
        if volumes is not None:
            volumes.close()
        gone = False
        try:
            client.CoreV1Api(api).read_namespace(ns)
        except client.exceptions.ApiException as exc:
            gone = exc.status == 404
        assert gone, f"namespace {ns} is still there after undeploy"


@pytest.fixture(scope="module")
def team_env(k8s_cluster: K8sCluster, offline_base: str,  # noqa: F811
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`ephemeral` storage: the S3 server and the sqlite tracker on emptyDir volumes."""
    with deployed(k8s_cluster, offline_base, tmp_path_factory.mktemp("k8s-project"), "ephemeral") as state:
        yield state


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


FAULTS_CELLS = [
    "%load_ext scanflow_jupyter\n%scanflow_app k8s-faults",
    "%%executor slow --retries 1 --outputs done\nimport time\ntime.sleep(40)\ndone = True",
    "%%executor late --timeout 5 --outputs never\nimport time\ntime.sleep(120)\nnever = 1",
]


def _write_faults(team_env: dict[str, Any]) -> None:
    from tests.conftest import notebook_dict

    path = team_env["project"] / "faults.ipynb"
    if not path.exists():
        path.write_text(json.dumps(notebook_dict(FAULTS_CELLS), indent=1) + "\n", encoding="utf-8")


def _step_pods(team_env: dict[str, Any], step: str) -> list[Any]:
    from kubernetes import client

    return client.CoreV1Api(team_env["api"]).list_namespaced_pod(
        team_env["ns"], label_selector=f"scanflow.io/step={step}").items


def test_a_deleted_step_pod_is_retried_and_a_timeout_fails_like_locally(team_env: dict[str, Any]) -> None:
    """Delete the running pod of a step with --retries 1: Argo's second attempt succeeds. A step over
    its --timeout fails with TimeoutError, as on the local backend."""
    import threading
    import time

    from kubernetes import client

    _write_faults(team_env)
    outcome: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: outcome.update(
        zip(("code", "doc", "err"), scanflow(team_env, "run", "faults.ipynb", "--backend", "kubernetes", "--json"),
            strict=True)))
    thread.start()
    deadline = time.monotonic() + 600
    deleted = None
    while deleted is None and time.monotonic() < deadline and thread.is_alive():
        # running for a while: Argo itself re-creates a pod that vanishes right after it started
        # (its "recently started" grace), a later loss is a failed attempt that --retries covers
        running = [p for p in _step_pods(team_env, "slow") if p.status.phase == "Running"
                   and p.status.start_time and time.time() - p.status.start_time.timestamp() > 15]
        if running:
            deleted = running[0].metadata.name
            client.CoreV1Api(team_env["api"]).delete_namespaced_pod(deleted, team_env["ns"], grace_period_seconds=0)
        time.sleep(1)
    thread.join(900)
    assert deleted, f"the slow step's pod never ran: {outcome}"
    doc = outcome.get("doc") or {}
    assert doc.get("steps", {}).get("slow") == {"status": "succeeded", "attempts": 2,
                                                "duration_s": doc["steps"]["slow"]["duration_s"]}, outcome
    late = doc["steps"]["late"]
    assert late["status"] == "failed" and late["error"]["type"] == "TimeoutError", late
    assert outcome["code"] == 1


def test_ctrl_c_terminates_the_workflow_and_leaves_no_running_pod(team_env: dict[str, Any]) -> None:
    import signal
    import time

    from kubernetes import client

    _write_faults(team_env)
    seen = {p.metadata.labels["scanflow.io/run-id"] for p in _step_pods(team_env, "slow")}
    proc = subprocess.Popen([*scanflow_command(), "run", "faults.ipynb", "--backend", "kubernetes", "--no-cache"],
                            cwd=team_env["project"], env=team_env["environ"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    run_id = None
    while time.monotonic() < deadline and run_id is None and proc.poll() is None:
        running = [p.metadata.labels["scanflow.io/run-id"] for p in _step_pods(team_env, "slow")
                   if p.status.phase == "Running" and p.metadata.labels["scanflow.io/run-id"] not in seen]
        run_id = running[0] if running else None
        time.sleep(1)
    assert run_id, "no step pod ran"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err[-2000:]
    core = client.CoreV1Api(team_env["api"])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        alive = [p.metadata.name for p in core.list_namespaced_pod(
            team_env["ns"], label_selector=f"scanflow.io/run-id={run_id}").items
            if p.status.phase in ("Pending", "Running")]
        if not alive:
            break
        time.sleep(2)
    assert not alive, f"pods still running after Ctrl-C: {alive}"
    wf = [w for w in workflows(team_env) if w["metadata"]["labels"].get("scanflow.io/run-id") == run_id]
    assert wf and wf[0]["spec"].get("shutdown") == "Terminate", wf


TRACKER_FAULT_CELLS = [
    "%load_ext scanflow_jupyter\n%scanflow_app tracker-fault",
    "%%executor work --outputs result\nimport time\nimport mlflow\nmlflow.log_metric('before', 1.0)\n"
    "time.sleep(45)\nmlflow.log_metric('after', 2.0)\nresult = 42",
]


def test_killing_the_tracker_pod_mid_run_loses_no_tracking(k8s_cluster: K8sCluster, offline_base: str,  # noqa: F811
                                                           tmp_path: Path) -> None:
    """PostgreSQL + object store environment: the tracker pod is deleted while a step runs; the
    Deployment brings a new one, the step's later `mlflow.log_metric` and the runner's records reach
    it (MLflow's retries, the port-forward finds the new pod), and the run ends succeeded and synced."""
    import threading
    import time

    from kubernetes import client

    from tests.conftest import notebook_dict

    with deployed(k8s_cluster, offline_base, tmp_path, "postgres") as state:
        (tmp_path / "tracker_fault.ipynb").write_text(json.dumps(notebook_dict(TRACKER_FAULT_CELLS)), encoding="utf-8")
        outcome: dict[str, Any] = {}
        thread = threading.Thread(target=lambda: outcome.update(zip(
            ("code", "doc", "err"), scanflow(state, "run", "tracker_fault.ipynb", "--backend", "kubernetes", "--json"),
            strict=True)))
        thread.start()
        core = client.CoreV1Api(state["api"])
        killed = None
        deadline = time.monotonic() + 600
        while killed is None and time.monotonic() < deadline and thread.is_alive():
            work = [p for p in _step_pods(state, "work") if p.status.phase == "Running"
                    and p.status.start_time and time.time() - p.status.start_time.timestamp() > 12]
            if work:
                trackers = core.list_namespaced_pod(state["ns"], label_selector="app.kubernetes.io/component=tracker")
                killed = trackers.items[0].metadata.name
                core.delete_namespaced_pod(killed, state["ns"], grace_period_seconds=0)
            time.sleep(1)
        thread.join(900)
        assert killed, f"the step never ran: {outcome}"
        doc = outcome.get("doc") or {}
        assert outcome.get("code") == 0 and doc.get("status") == "succeeded", outcome
        assert doc["tracking"] == "synced" and not doc["warnings"], doc
        run = json.loads((Path(doc["run_dir"]) / "run.json").read_text(encoding="utf-8"))
        mlflow = tracker(state)
        step = mlflow.get_run(run["steps"]["work"]["mlflow_run_id"])
        assert step.data.metrics.get("before") == 1.0 and step.data.metrics.get("after") == 2.0, step.data.metrics
        assert "output.ipynb" in {a.path for a in mlflow.list_artifacts(step.info.run_id)}
        assert mlflow.get_run(doc["mlflow_run_id"]).info.status == "FINISHED"
        new = [p.metadata.name for p in core.list_namespaced_pod(
            state["ns"], label_selector="app.kubernetes.io/component=tracker").items]
        assert killed not in new, (killed, new)
