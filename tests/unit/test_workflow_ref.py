"""The Workflow of a kubernetes run: recorded beside run.json, shown in the run summary."""

from __future__ import annotations

import json
from pathlib import Path

from scanflow_jupyter.data.store import RunState, RunStore
from scanflow_jupyter.kubernetes import workflow_ref
from scanflow_jupyter.server.mlflow_ui import public_url
from scanflow_jupyter.server.run_manager import RunManager


def test_summary_without_argo_ui_gives_the_kubectl_command(tmp_path: Path) -> None:
    workflow_ref.write(tmp_path, "scanflow-mnist-20261204t1-ab12", "scanflow-mnist-default")
    doc = workflow_ref.summary(tmp_path, env={})
    assert doc == {"name": "scanflow-mnist-20261204t1-ab12", "namespace": "scanflow-mnist-default", "context": None,
                   "command": "kubectl -n scanflow-mnist-default get workflow scanflow-mnist-20261204t1-ab12",
                   "url": None}


def test_summary_links_to_the_argo_ui_without_credentials(tmp_path: Path) -> None:
    workflow_ref.write(tmp_path, "wf-1", "team ns", context="kind-dev")
    env = {"SCANFLOW_ARGO_UI_URL": "https://ops:pw@argo.example.com:2746/argo/?auth=x"}
    doc = workflow_ref.summary(tmp_path, env=env)
    assert doc is not None
    assert doc["url"] == "https://argo.example.com:2746/argo/workflows/team%20ns/wf-1"
    assert doc["command"] == "kubectl --context kind-dev -n 'team ns' get workflow wf-1"


def test_an_unusable_argo_ui_setting_gives_no_link(tmp_path: Path) -> None:
    workflow_ref.write(tmp_path, "wf-1", "ns")
    for value in ("argo.example.com", "javascript:alert(1)", "ftp://argo", "  "):
        assert workflow_ref.summary(tmp_path, env={"SCANFLOW_ARGO_UI_URL": value})["url"] is None  # type: ignore[index]


def test_missing_or_broken_record_is_none(tmp_path: Path) -> None:
    assert workflow_ref.summary(tmp_path, env={}) is None
    (tmp_path / workflow_ref.FILE).write_text("{not json")
    assert workflow_ref.summary(tmp_path, env={}) is None
    (tmp_path / workflow_ref.FILE).write_text(json.dumps({"name": 3, "namespace": "ns"}))
    assert workflow_ref.summary(tmp_path, env={}) is None


def test_run_summary_carries_the_workflow_of_kubernetes_runs_only(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SCANFLOW_ARGO_UI_URL", "http://127.0.0.1:2746")
    home = tmp_path / ".scanflow"
    store = RunStore(home / "runs")
    for run_id, backend in (("20261204T120000-aaaaaa", "kubernetes"), ("20261204T120001-bbbbbb", "local")):
        store.write_state(RunState(run_id=run_id, app="mnist", notebook=str(tmp_path / "nb.ipynb"), backend=backend,
                                   status="succeeded"))
        workflow_ref.write(store.run_dir(run_id), f"wf-{run_id[-6:]}", "scanflow-mnist-default")
    manager = RunManager(tmp_path, home)
    k8s = manager.get("20261204T120000-aaaaaa")["workflow"]
    assert k8s["url"] == "http://127.0.0.1:2746/workflows/scanflow-mnist-default/wf-aaaaaa"
    assert k8s["command"] == "kubectl -n scanflow-mnist-default get workflow wf-aaaaaa"
    assert manager.get("20261204T120001-bbbbbb")["workflow"] is None


def test_public_url_of_a_tracking_server_drops_credentials() -> None:
    assert public_url("https://u:p@mlflow.example.com/x/?token=t#f") == "https://mlflow.example.com/x"
    assert public_url("http://[::1]:5000") == "http://[::1]:5000"
