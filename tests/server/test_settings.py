"""The user's sidebar settings sent with a request reach the subprocesses the server starts.

Precedence: user setting (request) > server traitlet (c.Scanflow.*) > server environment.
Runs are real (`scanflow run` subprocess, real kernel); MLflow stores are real sqlite files.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.server.conftest import api, write_notebook

pytestmark = pytest.mark.integration

ENV_NAMES = ["MLFLOW_TRACKING_URI", "SCANFLOW_REGISTRY", "SCANFLOW_K8S_CONTEXT", "SCANFLOW_K8S_NAMESPACE",
             "SCANFLOW_BASE_IMAGE"]


def sqlite_uri(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(folder / 'mlflow.db').as_posix()}"


@pytest.fixture
def server_store(tmp_path: Path) -> str:
    """The server's own tracking store (c.Scanflow.tracking_uri)."""
    return sqlite_uri(tmp_path / "server-store")


@pytest.fixture
def jp_server_config(jp_root_dir: Path, server_store: str) -> dict[str, Any]:
    return {"ServerApp": {"jpserver_extensions": {"scanflow_jupyter.server": True}},
            "Scanflow": {"tracking_uri": server_store, "namespace": "server-ns", "registry": "server-registry"}}


@pytest.fixture(autouse=True)
def _server_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Environment values that the traitlets and the user settings must win over."""
    monkeypatch.setenv("SCANFLOW_REGISTRY", "env-registry")
    monkeypatch.setenv("SCANFLOW_K8S_NAMESPACE", "env-ns")
    monkeypatch.setenv("SCANFLOW_K8S_CONTEXT", "env-context")
    for name in ("SCANFLOW_BASE_IMAGE", "KUBECONFIG"):
        monkeypatch.delenv(name, raising=False)


def probe_notebook(root: Path, probe: Path) -> None:
    """A one-step app whose step writes the environment variables the settings map to."""
    write_notebook(root, "probe.ipynb", [
        "%load_ext scanflow_jupyter\n%scanflow_app probe",
        "%%executor env_probe\nimport json, os\n"
        f"names = {ENV_NAMES!r}\n"
        f"open({str(probe)!r}, 'w').write(json.dumps({{n: os.environ.get(n) for n in names}}))",
    ])


async def exited(serverapp: Any, run_id: str) -> None:
    """Wait for the run's subprocess to exit (so no child outlives the test's event loop)."""
    managed = serverapp.web_app.settings["scanflow"].runs.managed.get(run_id)
    if managed is not None and managed.waiter is not None:
        await asyncio.wait_for(managed.waiter, 60)


async def finished(jp_fetch: Any, run_id: str, timeout: float = 180) -> dict[str, Any]:
    """The run once it has ended and named its MLflow run (the runner saves the final status
    just before it closes its MLflow runs)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        _, run = await api(jp_fetch, "runs", run_id, expect=200)
        if run["status"] != "running" and (run["mlflow_run_id"] or loop.time() > deadline):
            return run
        assert loop.time() < deadline, f"run {run_id} still running after {timeout} s"
        await asyncio.sleep(0.3)


def mlflow_run_ids(uri: str, experiment: str) -> list[str]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return [r.info.run_id for r in client.search_runs([exp.experiment_id], max_results=100)]


async def test_run_records_mlflow_runs_in_the_users_tracking_store(
        jp_fetch: Any, jp_root_dir: Path, tmp_path: Path, server_store: str, jp_serverapp: Any) -> None:
    user_store = sqlite_uri(tmp_path / "user-store")
    probe = tmp_path / "probe.json"
    probe_notebook(jp_root_dir, probe)
    settings = {"tracking_uri": user_store, "kube_context": "user-context", "base_image": "user/base:1",
                "namespace": "", "registry": None}
    _, started = await api(jp_fetch, "runs", method="POST", expect=202,
                           body={"path": "probe.ipynb", "settings": settings})
    run = await finished(jp_fetch, started["run_id"])
    await exited(jp_serverapp, started["run_id"])
    assert run["status"] == "succeeded", run
    assert run["mlflow_run_id"]

    # every setting reached the run's process: user > c.Scanflow.* > environment
    assert json.loads(probe.read_text()) == {
        "MLFLOW_TRACKING_URI": user_store, "SCANFLOW_K8S_CONTEXT": "user-context",
        "SCANFLOW_BASE_IMAGE": "user/base:1", "SCANFLOW_K8S_NAMESPACE": "server-ns",
        "SCANFLOW_REGISTRY": "server-registry"}

    # the MLflow runs are in the user's store, not in the server's nor the project default
    recorded = mlflow_run_ids(user_store, "probe")
    assert run["mlflow_run_id"] in recorded
    assert mlflow_run_ids(server_store, "probe") == []
    assert not (jp_root_dir / ".scanflow" / "mlflow.db").exists()

    # the Runs section's queries follow the user's tracking URI
    _, page = await api(jp_fetch, "mlflow", "runs", params={"experiment": "probe", "tracking_uri": user_store},
                        expect=200)
    assert [r["run_id"] for r in page["runs"]] == [run["mlflow_run_id"]]
    _, exps = await api(jp_fetch, "mlflow", "experiments", params={"tracking_uri": user_store}, expect=200)
    assert "probe" in [e["name"] for e in exps["experiments"]]
    _, exps = await api(jp_fetch, "mlflow", "experiments", expect=200)  # the server's store: no run went there
    assert "probe" not in [e["name"] for e in exps["experiments"]]
    _, config = await api(jp_fetch, "config", params={"tracking_uri": user_store, "namespace": "user-ns"},
                          expect=200)
    assert config["tracking_uri"] == user_store and config["namespace"] == "user-ns"
    assert config["registry"] == "server-registry"


async def test_run_without_settings_uses_the_server_traitlets(
        jp_fetch: Any, jp_root_dir: Path, tmp_path: Path, server_store: str, jp_serverapp: Any) -> None:
    probe = tmp_path / "probe.json"
    probe_notebook(jp_root_dir, probe)
    _, started = await api(jp_fetch, "runs", method="POST", body={"path": "probe.ipynb"}, expect=202)
    run = await finished(jp_fetch, started["run_id"])
    await exited(jp_serverapp, started["run_id"])
    assert run["status"] == "succeeded", run
    seen = json.loads(probe.read_text())
    assert seen["MLFLOW_TRACKING_URI"] == server_store and seen["SCANFLOW_K8S_NAMESPACE"] == "server-ns"
    assert seen["SCANFLOW_K8S_CONTEXT"] == "env-context"  # neither user nor trait: the environment's
    assert seen["SCANFLOW_BASE_IMAGE"] is None
    assert run["mlflow_run_id"] in mlflow_run_ids(server_store, "probe")


@pytest.mark.parametrize(("settings", "needle"), [
    ({"tracking_uri": "sqlite:////tmp/a.db\nMLFLOW_X=1"}, "settings.tracking_uri contains a line break"),
    ({"namespace": 7}, "settings.namespace must be a string, not int"),
    ({"registry": ["r"]}, "settings.registry must be a string, not list"),
    ({"kube_context": "ctx\r"}, "settings.kube_context contains a line break"),
    ({"trackingUri": "x"}, "`settings` has unknown keys: trackingUri"),
    ("sqlite:///x.db", "`settings` must be a JSON object, not str"),
])
async def test_bad_settings_are_refused_and_nothing_starts(
        jp_fetch: Any, jp_root_dir: Path, tmp_path: Path, settings: Any, needle: str) -> None:
    probe_notebook(jp_root_dir, tmp_path / "probe.json")
    for route in ("runs", "builds", "deployments"):
        _, doc = await api(jp_fetch, route, method="POST", body={"path": "probe.ipynb", "settings": settings},
                           expect=400)
        assert needle in doc["message"], doc
        assert doc["fix"]
    _, runs = await api(jp_fetch, "runs", expect=200)
    assert runs["runs"] == []


@pytest.mark.parametrize("route", [("mlflow", "runs"), ("mlflow", "experiments"), ("config",)])
async def test_bad_tracking_uri_query_is_refused(jp_fetch: Any, route: tuple[str, ...]) -> None:
    _, doc = await api(jp_fetch, *route, params={"tracking_uri": "sqlite:///a.db\nx"}, expect=400)
    assert "query.tracking_uri contains a line break" in doc["message"], doc


async def test_bad_settings_in_deployment_queries_are_refused(jp_fetch: Any, jp_root_dir: Path,
                                                              tmp_path: Path) -> None:
    probe_notebook(jp_root_dir, tmp_path / "probe.json")
    for method in ("GET", "DELETE"):
        _, doc = await api(jp_fetch, "deployments", method=method,
                           params={"path": "probe.ipynb", "namespace": "a\nb"}, expect=400)
        assert "query.namespace contains a line break" in doc["message"], doc
