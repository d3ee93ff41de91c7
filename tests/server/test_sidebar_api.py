"""Routes the sidebar needs (#15): a step's output notebook read-only through the API (a real run),
validation of an unsaved notebook model (POST app), and MLflow filters that match step runs."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.server.conftest import api, copy_example, write_notebook


async def _finished(jp_fetch: Any, run_id: str) -> dict[str, Any]:
    for _ in range(600):
        _, doc = await api(jp_fetch, "runs", run_id, expect=200)
        if doc["status"] != "running":
            return doc
        await asyncio.sleep(0.5)
    raise AssertionError(f"run {run_id} still running")


async def test_output_notebook_of_a_real_run(jp_fetch: Any, jp_root_dir: Path) -> None:
    copy_example(jp_root_dir, "linear_chain.ipynb", "nb/linear_chain.ipynb")
    _, run = await api(jp_fetch, "runs", method="POST", body={"path": "nb/linear_chain.ipynb"}, expect=202)
    summary = await _finished(jp_fetch, run["run_id"])
    assert summary["status"] == "succeeded", summary
    _, doc = await api(jp_fetch, "runs", run["run_id"], "notebook", params={"step": "transform"}, expect=200)
    assert doc["run_id"] == run["run_id"] and doc["step"] == "transform"
    on_disk = json.loads((jp_root_dir / ".scanflow" / "runs" / run["run_id"] / "transform" / "output.ipynb").read_text())
    assert doc["notebook"] == on_disk
    assert any("transform" in "".join(c["source"]) if isinstance(c["source"], list) else "transform" in c["source"]
               for c in doc["notebook"]["cells"])
    # the contents API refuses the hidden run store: this route is the way to read it
    _, logs = await api(jp_fetch, "runs", run["run_id"], "logs", params={"step": "transform"}, expect=200)
    assert logs["output_notebook"].startswith(".scanflow/")
    refused = await jp_fetch("api", "contents", *logs["output_notebook"].split("/"), raise_error=False)
    assert refused.code == 404, "Jupyter serves hidden files now: the sidebar could use the contents API"
    _, doc = await api(jp_fetch, "runs", run["run_id"], "notebook", params={"step": "nope"}, expect=404)
    assert "extract" in doc["message"]
    _, doc = await api(jp_fetch, "runs", run["run_id"], "notebook", expect=400)
    assert doc["fix"]


async def test_output_notebook_missing_or_escaping(jp_fetch: Any, jp_root_dir: Path, tmp_path: Path) -> None:
    from scanflow_jupyter.data.store import RunState, RunStore, StepState

    store = RunStore(jp_root_dir / ".scanflow" / "runs")
    run_id = "20260101T000009-outnbk"
    steps = {name: StepState(name=name, status="succeeded", attempts=1) for name in ("a", "b", "c")}
    store.write_state(RunState(run_id=run_id, app="x", notebook=str(jp_root_dir / "x.ipynb"), status="succeeded",
                               created_at=1.0, started_at=1.0, finished_at=2.0, pid=None, steps=steps))
    # a: never executed; b: a symlink out of the store; c: not a notebook
    secret = tmp_path / "secret.ipynb"
    secret.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    store.step_dir(run_id, "b").mkdir(parents=True)
    os.symlink(secret, store.step_dir(run_id, "b") / "output.ipynb")
    store.step_dir(run_id, "c").mkdir(parents=True)
    (store.step_dir(run_id, "c") / "output.ipynb").write_text("[1, 2]")
    _, doc = await api(jp_fetch, "runs", run_id, "notebook", params={"step": "a"}, expect=404)
    assert "did not execute" in doc["message"] and doc["fix"]
    await api(jp_fetch, "runs", run_id, "notebook", params={"step": "b"}, expect=404)
    _, doc = await api(jp_fetch, "runs", run_id, "notebook", params={"step": "c"}, expect=409)
    assert "cells" in doc["message"]
    await api(jp_fetch, "runs", run_id, "notebook", params={"step": "../../../etc"}, expect=404)
    await api(jp_fetch, "runs", "20260101T000000-abcdef", "notebook", params={"step": "a"}, expect=404)


def _nb(cells: list[str]) -> dict[str, Any]:
    from tests.conftest import notebook_dict

    return notebook_dict(cells)


async def test_post_app_validates_the_unsaved_model(jp_fetch: Any, jp_root_dir: Path) -> None:
    saved = ["%load_ext scanflow_jupyter\n%scanflow_app typing", "%%executor a --outputs x\nx = 1"]
    write_notebook(jp_root_dir, "typing.ipynb", saved)
    _, doc = await api(jp_fetch, "app", params={"path": "typing.ipynb"}, expect=200)
    assert doc["valid"] and [n["id"] for n in doc["nodes"]] == ["a"]
    # the editor's content (not saved): a second step that needs an input nobody produces
    edited = _nb([*saved, "%%executor b --inputs y --outputs z\nz = y"])
    _, doc = await api(jp_fetch, "app", method="POST", body={"path": "typing.ipynb", "notebook": edited}, expect=200)
    assert not doc["valid"]
    assert [n["id"] for n in doc["nodes"]] == ["a", "b"]
    errors = [m for m in doc["messages"] if m["severity"] == "error"]
    assert errors and errors[0]["cell"] == 3 and "'y'" in errors[0]["text"]
    # the file itself is unchanged and still valid
    _, doc = await api(jp_fetch, "app", params={"path": "typing.ipynb"}, expect=200)
    assert doc["valid"]


@pytest.mark.parametrize("notebook, where", [
    (None, "`notebook`"), ([1], "`notebook`"), ({"cells": "x"}, "cells"), ({"cells": [5]}, "cell 1"),
    ({"cells": [{"source": 5}]}, "cell 1"), ({"cells": [{"source": "x", "metadata": []}]}, "metadata"),
    ({"cells": [], "metadata": "m"}, "metadata"),
])
async def test_post_app_bad_bodies(jp_fetch: Any, jp_root_dir: Path, notebook: Any, where: str) -> None:
    write_notebook(jp_root_dir, "t.ipynb", ["x = 1"])
    _, doc = await api(jp_fetch, "app", method="POST", body={"path": "t.ipynb", "notebook": notebook}, expect=400)
    assert where in doc["message"] and doc["fix"]
    await api(jp_fetch, "app", method="POST", body={"path": "../t.ipynb", "notebook": _nb([])}, expect=403)


@pytest.fixture
def step_store(tmp_path: Path, require: Any) -> dict[str, Any]:
    """Three pipeline runs as Scanflow records them: metrics only on the step runs."""
    require("mlflow")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{(tmp_path / 'steps.db').as_posix()}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("pipe", artifact_location=str(tmp_path / "artifacts"))
    parents = []
    for i, acc in enumerate([0.5, 0.95, 0.97]):
        parent = client.create_run(exp, run_name=f"p{i}", start_time=1_700_000_000_000 + i)
        step = client.create_run(exp, run_name="train", tags={"mlflow.parentRunId": parent.info.run_id,
                                                                "scanflow.step": "train"})
        client.log_metric(step.info.run_id, "accuracy", acc)
        parents.append(parent.info.run_id)
    client.log_param(parents[0], "lr", "0.1")
    return {"uri": uri, "parents": parents}


@pytest.fixture
def jp_server_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    config: dict[str, Any] = {"ServerApp": {"jpserver_extensions": {"scanflow_jupyter.server": True}}}
    if "step_store" in request.fixturenames:
        config["Scanflow"] = {"tracking_uri": request.getfixturevalue("step_store")["uri"]}
    return config


async def test_filter_matches_step_metrics_and_lists_parents(jp_fetch: Any, step_store: dict[str, Any]) -> None:
    p0, p1, p2 = step_store["parents"]
    _, doc = await api(jp_fetch, "mlflow", "runs", params={"experiment": "pipe", "filter": "metrics.accuracy > 0.9"},
                       expect=200)
    assert [r["run_id"] for r in doc["runs"]] == [p2, p1], "parents of the matching steps, newest first"
    # a parent's own params still match; pages still work over the union
    _, doc = await api(jp_fetch, "mlflow", "runs", params={"experiment": "pipe", "filter": "params.lr = '0.1'"},
                       expect=200)
    assert [r["run_id"] for r in doc["runs"]] == [p0]
    _, doc = await api(jp_fetch, "mlflow", "runs", params={"experiment": "pipe", "filter": "metrics.accuracy > 0.9",
                                                          "max_results": 1}, expect=200)
    assert [r["run_id"] for r in doc["runs"]] == [p2] and doc["next_page_token"]
    _, doc = await api(jp_fetch, "mlflow", "runs", params={"experiment": "pipe", "filter": "metrics.accuracy > 0.99"},
                       expect=200)
    assert doc["runs"] == []
    # nested=true keeps MLflow's own meaning: the matching runs themselves (the step runs)
    _, doc = await api(jp_fetch, "mlflow", "runs", params={"experiment": "pipe", "nested": "true",
                                                          "filter": "metrics.accuracy > 0.9"}, expect=200)
    assert {r["run_name"] for r in doc["runs"]} == {"train"}


async def test_bad_filter_error_quotes_only_the_users_clause(jp_fetch: Any, step_store: dict[str, Any]) -> None:
    _, doc = await api(jp_fetch, "mlflow", "runs", params={"experiment": "pipe", "filter": "this is not a filter"},
                       expect=400)
    assert "parentRunId" not in doc["message"] and "IS NULL" not in doc["message"]
    assert doc["fix"]


async def test_config_names_the_default_base_image(jp_fetch: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCANFLOW_BASE_IMAGE", raising=False)
    _, doc = await api(jp_fetch, "config", expect=200)
    assert doc["base_image"] is None and doc["default_base_image"] == "python:3.11-slim"
    monkeypatch.setenv("SCANFLOW_BASE_IMAGE", "scanflow/base")
    _, doc = await api(jp_fetch, "config", expect=200)
    assert doc["default_base_image"] == "scanflow/base"


async def test_kubernetes_reason_is_readable(jp_fetch: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "no-such-kubeconfig"
    monkeypatch.setenv("KUBECONFIG", str(missing))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    _, doc = await api(jp_fetch, "config", expect=200)
    kube = next(b for b in doc["backends"] if b["name"] == "kubernetes")
    assert kube["available"] is False
    assert kube["reason"].startswith("no usable kubeconfig for the current context: ")
    assert "Invalid kube-config file" not in kube["reason"] and "Fix: set KUBECONFIG" in kube["reason"], kube
