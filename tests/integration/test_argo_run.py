"""`--backend kubernetes`: the pipeline as an Argo Workflow on a real control plane.

The cluster (tests/k8s: etcd, kube-apiserver, controller-manager, scheduler, kwok, Argo's
workflow-controller) is real; only the pods are faked by kwok: they become Running, then
Succeeded about a second later without running a container (a pod labelled
`scanflow.io/kwok-fail=true` fails instead). So the images are never pulled: the tests pass
one placeholder reference through SCANFLOW_K8S_IMAGES instead of building. What a pod would run
(`python -m scanflow_jupyter.runtime.kubernetes_backend step ...`) is tested on its own below,
with real kernels and a real run store folder standing in for the PVC.

Each cluster test gets its own namespace (the team environment is not deployed) with a
statically bound hostPath PV + PVC for the run store, so the scheduler can place the pods.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from scanflow_jupyter.runtime.events import Event, read_journal
from scanflow_jupyter.runtime.runner import InvalidApplication, run_notebook
from tests.conftest import Project, scanflow_command
from tests.k8s.fixture import k8s_cluster  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = "argoproj.io", "v1alpha1", "workflows"
# kwok pool, to be moved to the real node: issue #10. A non-local image places the pods on the
# tainted kwok pool (tests/k8s/manifests/kwok-pool.yaml); step images in the local registry would
# run for real on scanflow-node-0.
PLACEHOLDER_IMAGE = "scanflow/kwok-placeholder:never-pulled"  # kwok runs no containers
DIAMOND_EDGES = [("load", "features"), ("load", "stats"), ("features", "train"), ("stats", "train")]


# ------------------------------------------------------------------ the step pod's command, locally

def test_step_command_runs_steps_against_a_run_store(tmp_path: Path) -> None:
    """What every step pod runs, here with real kernels: inputs from the producer's folder, params from env."""
    from scanflow_jupyter.data.serializers import load_value, read_record
    from scanflow_jupyter.notebook.compile import compile_step, dumps
    from scanflow_jupyter.runtime.runner import load_application

    app, _ = load_application(ROOT / "notebooks" / "parameterised.ipynb")
    store, run_id = tmp_path / "store", "20261127T120000-abcdef"
    env = {**os.environ, "SCANFLOW_PARAM_n_rows": "4", "SCANFLOW_PARAM_learning_rate": "0.5",
           "SCANFLOW_PARAM_label": "'pod'", "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    for ex, inputs in ((app.executor("make_data"), []), (app.executor("report"), ["--input", "rows=make_data"])):
        notebook = tmp_path / f"{ex.name}.ipynb"  # the image holds it at /opt/scanflow/step.ipynb
        notebook.write_text(dumps(compile_step(app, ex)), encoding="utf-8")
        proc = subprocess.run([sys.executable, "-m", "scanflow_jupyter.runtime.kubernetes_backend", "step",
                               "--step", ex.name, "--store", str(store), "--run-id", run_id, *inputs,
                               "--notebook", str(notebook)],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert '"status": "succeeded"' in proc.stdout
    rows_dir = store / run_id / "make_data" / "outputs"
    assert len(load_value(rows_dir, read_record(rows_dir, "rows"))) == 4
    result_dir = store / run_id / "report" / "outputs"
    result = load_value(result_dir, read_record(result_dir, "result"))
    assert result["n_rows"] == 4 and result["learning_rate"] == 0.5 and result["label"] == "pod"
    assert "label = pod" in (store / run_id / "report" / "log.txt").read_text(encoding="utf-8")
    assert (store / run_id / "report" / "output.ipynb").exists()


def test_step_command_reports_a_failing_step(tmp_path: Path) -> None:
    from scanflow_jupyter.notebook.compile import compile_step, dumps
    from scanflow_jupyter.runtime.runner import load_application

    app, _ = load_application(ROOT / "notebooks" / "failing_step.ipynb")
    store, run_id = tmp_path / "store", "20261127T120000-fedcba"
    for name, extra in (("prepare", []), ("explode", ["--input", "data=prepare"])):
        notebook = tmp_path / f"{name}.ipynb"
        notebook.write_text(dumps(compile_step(app, app.executor(name))), encoding="utf-8")
        proc = subprocess.run([sys.executable, "-m", "scanflow_jupyter.runtime.kubernetes_backend", "step",
                               "--step", name, "--store", str(store), "--run-id", run_id, *extra,
                               "--notebook", str(notebook)],
                              cwd=tmp_path, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "this step fails on purpose" in proc.stdout  # the outcome event the follower parses


# ------------------------------------------------------------------ on the cluster

def _api(cluster: Any) -> Any:
    return cluster.api_client()


@pytest.fixture
def k8s_env(k8s_cluster: Any, project: Project, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # noqa: F811
    """A fresh namespace with a bound run-store PVC; the backend pointed at it through the environment."""
    from kubernetes import client

    from scanflow_jupyter.runtime.backends import available_backends

    if "kubernetes" not in available_backends():
        pytest.fail("the `kubernetes` backend is not registered: pyproject.toml needs `kubernetes = "
                    "\"scanflow_jupyter.runtime.kubernetes_backend:KubernetesBackend\"` under "
                    "[project.entry-points.\"scanflow_jupyter.backends\"], then `pip install -e .`")
    api = _api(k8s_cluster)
    core = client.CoreV1Api(api)
    suffix = uuid.uuid4().hex[:6]
    ns = f"scanflow-it-{suffix}"
    pv = f"scanflow-it-store-{suffix}"
    core.create_namespace({"metadata": {"name": ns}})
    core.create_persistent_volume({"metadata": {"name": pv}, "spec": {
        "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "",
        "hostPath": {"path": str(tmp_path / "pv")}, "persistentVolumeReclaimPolicy": "Retain"}})
    core.create_namespaced_persistent_volume_claim(ns, {"metadata": {"name": "runs"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "storageClassName": "", "volumeName": pv,
        "resources": {"requests": {"storage": "1Gi"}}}})
    monkeypatch.setenv("KUBECONFIG", str(k8s_cluster.kubeconfig))
    monkeypatch.setenv("SCANFLOW_K8S_NAMESPACE", ns)
    monkeypatch.setenv("SCANFLOW_K8S_STORE_CLAIM", "runs")
    monkeypatch.setenv("SCANFLOW_K8S_IMAGES", json.dumps({"*": PLACEHOLDER_IMAGE}))
    monkeypatch.delenv("SCANFLOW_K8S_CONTEXT", raising=False)
    monkeypatch.delenv("SCANFLOW_K8S_POD_METADATA", raising=False)
    yield {"api": api, "namespace": ns, "project": project}
    try:
        core.delete_namespace(ns)
        core.delete_persistent_volume(pv)
    except Exception:  # noqa: BLE001 - cleanup only
        pass


def _workflows(api: Any, ns: str) -> list[dict[str, Any]]:
    from kubernetes import client

    return client.CustomObjectsApi(api).list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]


def _collect() -> tuple[list[Event], Any]:
    events: list[Event] = []
    return events, events.append


def _index(events: list[Event], type_: str, step: str) -> int:
    for i, e in enumerate(events):
        if e.type == type_ and e.step == step:
            return i
    raise AssertionError(f"no {type_} for {step} in {[(e.type, e.step) for e in events]}")


def test_diamond_runs_as_an_argo_workflow(k8s_env: dict[str, Any]) -> None:
    project, ns, api = k8s_env["project"], k8s_env["namespace"], k8s_env["api"]
    events, listener = _collect()
    result = run_notebook(project.nb("diamond"), backend="kubernetes", on_event=listener, handle_signals=False)
    assert result.status == "succeeded", [(e.type, e.step, e.data) for e in events]
    for step in ("load", "features", "stats", "train"):
        assert _index(events, "step_started", step) < _index(events, "step_succeeded", step)
    for parent, child in DIAMOND_EDGES:
        assert _index(events, "step_succeeded", parent) < _index(events, "step_started", child)
    assert events[0].type == "run_started" and events[-1].type == "run_finished"
    # the Workflow in the cluster, and the local run store (`scanflow runs`)
    (wf,) = _workflows(api, ns)
    assert wf["status"]["phase"] == "Succeeded"
    assert wf["metadata"]["labels"]["scanflow.io/run-id"] == result.run_id
    state = project.store.read_state(result.run_id)
    assert state.backend == "kubernetes" and state.status == "succeeded"
    assert {n: s.status for n, s in state.steps.items()} == dict.fromkeys(("load", "features", "stats", "train"), "succeeded")
    proc = project.cli("runs", "--json")
    assert result.run_id in proc.stdout, proc.stdout + proc.stderr
    # the sidebar's Workflow line (#15): the run names the Workflow it submitted
    from scanflow_jupyter.kubernetes import workflow_ref

    shown = workflow_ref.summary(project.store.run_dir(result.run_id), env={})
    assert shown is not None and (shown["name"], shown["namespace"]) == (wf["metadata"]["name"], ns)
    assert shown["command"] == f"kubectl -n {ns} get workflow {wf['metadata']['name']}"


def test_failing_step_fails_the_run_and_skips_its_dependents(k8s_env: dict[str, Any],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    project = k8s_env["project"]
    monkeypatch.setenv("SCANFLOW_K8S_POD_METADATA", json.dumps({"features": {"labels": {"scanflow.io/kwok-fail": "true"}}}))
    events, listener = _collect()
    result = run_notebook(project.nb("diamond"), backend="kubernetes", on_event=listener, handle_signals=False)
    assert result.status == "failed"
    statuses = {n: s.status for n, s in result.steps.items()}
    assert statuses == {"load": "succeeded", "features": "failed", "stats": "succeeded", "train": "skipped"}
    skipped = events[_index(events, "step_skipped", "train")]
    assert skipped.data["upstream"] == "features"
    failed = events[_index(events, "step_failed", "features")]
    assert failed.data["ename"] == "PodFailed" and failed.data["evalue"]
    state = project.store.read_state(result.run_id)
    assert state.status == "failed" and state.steps["features"].error is not None
    (wf,) = _workflows(k8s_env["api"], k8s_env["namespace"])
    assert wf["status"]["phase"] == "Failed"


def test_interrupt_stops_the_workflow(k8s_env: dict[str, Any]) -> None:
    project, ns, api = k8s_env["project"], k8s_env["namespace"], k8s_env["api"]
    env = {**project.env(), **{k: os.environ[k] for k in os.environ if k.startswith(("SCANFLOW_K8S_", "KUBECONFIG"))}}
    proc = subprocess.Popen([*scanflow_command(), "run", "diamond.ipynb", "--backend", "kubernetes"],
                            cwd=project.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        started = False
        while time.monotonic() < deadline and not started and proc.poll() is None:
            for folder in project.run_folders():
                started = any(e["type"] == "step_started" for e in read_journal(folder))
            time.sleep(0.1)
        assert started, f"no step started: {proc.poll()} {proc.stderr.read() if proc.poll() is not None else ''}"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out + err
    (wf,) = _workflows(api, ns)
    assert wf["spec"].get("shutdown") == "Terminate"
    deadline = time.monotonic() + 60
    while wf["status"].get("phase") not in ("Failed", "Error") and time.monotonic() < deadline:
        time.sleep(0.5)
        (wf,) = _workflows(api, ns)
    assert wf["status"]["phase"] in ("Failed", "Error"), wf["status"]
    (folder,) = project.run_folders()
    journal = read_journal(folder)
    assert any(e["type"] == "step_killed" for e in journal), journal
    assert project.store.read_state(folder.name).status == "killed"
    statuses = {s.status for s in project.store.read_state(folder.name).steps.values()}
    assert not statuses & {"running", "queued", "pending"}, statuses


def test_invalid_notebook_submits_nothing(k8s_env: dict[str, Any]) -> None:
    project = k8s_env["project"]
    bad = project.root / "bad.ipynb"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(InvalidApplication):
        run_notebook(bad, backend="kubernetes", handle_signals=False)
    assert project.cli("run", "bad.ipynb", "--backend", "kubernetes").returncode == 2
    assert _workflows(k8s_env["api"], k8s_env["namespace"]) == []


def test_retries_are_argo_attempts(k8s_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    project = k8s_env["project"]
    path = project.write_notebook("flaky", ["%scanflow_app flaky",
                                            "%%executor flaky --outputs x --retries 1 --timeout 600\nx = 1",
                                            "%%executor after --inputs x\nprint(x)"])
    monkeypatch.setenv("SCANFLOW_K8S_POD_METADATA", json.dumps({"flaky": {"labels": {"scanflow.io/kwok-fail": "true"}}}))
    events, listener = _collect()
    result = run_notebook(path, backend="kubernetes", on_event=listener, handle_signals=False)
    assert result.status == "failed"
    flaky = [(e.type, e.attempt) for e in events if e.step == "flaky"]
    assert flaky == [("step_queued", None), ("step_started", 1), ("step_retrying", 1), ("step_started", 2),
                     ("step_failed", 2)], flaky
    assert result.steps["flaky"].attempts == 2 and result.steps["after"].status == "skipped"
    (wf,) = _workflows(k8s_env["api"], k8s_env["namespace"])
    template = next(t for t in wf["spec"]["templates"] if t["name"] == "flaky")
    assert template["retryStrategy"]["limit"] == 1 and template["activeDeadlineSeconds"] == 600


def test_no_store_claim_without_a_default_storage_class_fails_before_submitting(
        k8s_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The test cluster has no storage provisioner: a claim template would leave the pods pending forever."""
    monkeypatch.delenv("SCANFLOW_K8S_STORE_CLAIM")
    events, listener = _collect()
    result = run_notebook(k8s_env["project"].nb("linear_chain"), backend="kubernetes", on_event=listener,
                          handle_signals=False)
    assert result.status == "failed"
    failed = events[_index(events, "step_failed", "extract")]
    assert "no default StorageClass" in failed.data["evalue"] and "SCANFLOW_K8S_STORE_CLAIM" in failed.data["evalue"]
    assert _workflows(k8s_env["api"], k8s_env["namespace"]) == []


def test_exported_yaml_runs_as_is(k8s_env: dict[str, Any]) -> None:
    """`scanflow export --to argo` output (generateName, run id = {{workflow.name}}) is accepted and runs."""
    import yaml
    from kubernetes import client

    from scanflow_jupyter.kubernetes.workflow import export_workflow_yaml

    api, ns = k8s_env["api"], k8s_env["namespace"]
    text = export_workflow_yaml(ROOT / "notebooks" / "parameterised.ipynb", images={"*": PLACEHOLDER_IMAGE},
                                namespace=ns, store_claim="runs", params={"n_rows": 5})
    created = client.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, yaml.safe_load(text))
    name = created["metadata"]["name"]
    assert name.startswith("scanflow-parameterised-")
    deadline = time.monotonic() + 90
    phase = None
    while time.monotonic() < deadline:
        wf = client.CustomObjectsApi(api).get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
        phase = (wf.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed", "Error"):
            break
        time.sleep(0.5)
    assert phase == "Succeeded", wf.get("status")
    pods = client.CoreV1Api(api).list_namespaced_pod(ns, label_selector="scanflow.io/step=report").items
    (main,) = [c for c in pods[0].spec.containers if c.name == "main"]
    env = {e.name: e.value for e in main.env if e.value is not None}
    assert env["SCANFLOW_PARAM_n_rows"] == "5" and env["SCANFLOW_RUN_ID"] == name  # Argo substituted both
