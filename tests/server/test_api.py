"""Every route of the Scanflow REST API through a real jupyter_server: success, validation
errors, 403 without a token, 403 for a cookie-authenticated write without XSRF, paths outside
the root refused."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.server.conftest import api, copy_example, raw, write_notebook

BROKEN_CELLS = ["%%executor train --inputs nothing_produces_this\nx = 1"]

# (method, route, body or None) — every route, for the 403-without-token check
ROUTES = [
    ("GET", "config", None), ("GET", "app?path=diamond.ipynb", None), ("GET", "runs", None),
    ("POST", "runs", {"path": "diamond.ipynb"}), ("GET", "runs/20260101T000000-abcdef", None),
    ("POST", "runs/20260101T000000-abcdef/cancel", {}), ("GET", "runs/20260101T000000-abcdef/events", None),
    ("GET", "runs/20260101T000000-abcdef/logs?step=load", None), ("GET", "mlflow/experiments", None),
    ("GET", "mlflow/runs", None), ("POST", "mlflow-ui", {}), ("GET", "agents", None), ("POST", "agents", {"path": "diamond.ipynb", "action": "stop"}),
    ("POST", "builds", {"path": "diamond.ipynb"}), ("GET", "builds/0123456789ab", None),
    ("GET", "deployments?path=diamond.ipynb", None), ("POST", "deployments", {"path": "diamond.ipynb"}),
    ("DELETE", "deployments?path=diamond.ipynb", None), ("GET", "deployments/0123456789ab", None),
]


def _runs_dir(root: Path) -> Path:
    return root / ".scanflow" / "runs"


def _run_dirs(root: Path) -> list[Path]:
    d = _runs_dir(root)
    return [p for p in d.iterdir() if p.name != "cache"] if d.exists() else []


async def test_config(jp_fetch: Any, jp_root_dir: Path) -> None:
    _, doc = await api(jp_fetch, "config", expect=200)
    assert doc["default_backend"] == "local"
    assert doc["tracking_uri"] == f"sqlite:///{(jp_root_dir / '.scanflow').resolve().as_posix()}/mlflow.db"
    backends = {b["name"]: b for b in doc["backends"]}
    assert backends["local"] == {"name": "local", "available": True, "reason": None, "fix": None,
                                 "capabilities": ["cache", "cancel", "logs", "only", "resume", "retries"],
                                 "execution": "per_step"}
    assert backends["kubernetes"]["execution"] == "whole_pipeline"
    assert set(backends) == {"local", "docker", "kubernetes"}
    for b in backends.values():
        assert b["available"] or b["reason"], b
    assert doc["version"]


async def test_app_view(jp_fetch: Any, jp_root_dir: Path) -> None:
    copy_example(jp_root_dir, "diamond.ipynb", "nbs/diamond.ipynb")
    _, doc = await api(jp_fetch, "app", params={"path": "nbs/diamond.ipynb"}, expect=200)
    assert doc["valid"] is True and doc["path"] == "nbs/diamond.ipynb"
    ids = {n["id"]: n for n in doc["nodes"]}
    assert set(ids) == {"load", "features", "stats", "train"}
    assert all(n["kind"] == "executor" and isinstance(n["cell"], int) for n in ids.values())
    edges = {(e["source"], e["target"]) for e in doc["edges"]}
    assert ("load", "features") in edges and ("features", "train") in edges
    assert doc["parameters"] == [] and doc["app"]["name"] == "diamond"
    copy_example(jp_root_dir, "parameterised.ipynb")
    _, doc = await api(jp_fetch, "app", params={"path": "parameterised.ipynb"}, expect=200)
    params = {p["name"]: p for p in doc["parameters"]}
    assert params["n_rows"] == {"name": "n_rows", "value": 50, "type": "int"}


async def test_app_view_of_invalid_notebook(jp_fetch: Any, jp_root_dir: Path) -> None:
    write_notebook(jp_root_dir, "broken.ipynb", BROKEN_CELLS)
    _, doc = await api(jp_fetch, "app", params={"path": "broken.ipynb"}, expect=200)
    assert doc["valid"] is False
    errors = [m for m in doc["messages"] if m["severity"] == "error"]
    assert errors and errors[0]["cell"] == 1 and errors[0]["fix"]  # REST cell numbers are 1-based
    (jp_root_dir / "notjson.ipynb").write_text("{not json", encoding="utf-8")
    _, doc = await api(jp_fetch, "app", params={"path": "notjson.ipynb"}, expect=200)
    assert doc["valid"] is False and doc["messages"][0]["code"] == "not-a-notebook"


async def test_app_view_missing_path(jp_fetch: Any) -> None:
    await api(jp_fetch, "app", expect=400)
    await api(jp_fetch, "app", params={"path": "nope.ipynb"}, expect=404)


@pytest.mark.parametrize("bad", ["../x.ipynb", "/etc/passwd", "a/../../x.ipynb", "link/outside.ipynb", "linked.ipynb"])
async def test_paths_outside_root_refused(jp_fetch: Any, jp_root_dir: Path, tmp_path: Path, bad: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    copy_example(outside, "diamond.ipynb", "outside.ipynb")
    (jp_root_dir / "link").symlink_to(outside, target_is_directory=True)
    (jp_root_dir / "linked.ipynb").symlink_to(outside / "outside.ipynb")
    for method, route, body in [("GET", "app", None), ("GET", "runs", None), ("POST", "runs", {}),
                                ("GET", "agents", None), ("POST", "agents", {"action": "start"}),
                                ("POST", "builds", {}), ("GET", "deployments", None)]:
        params = {"path": bad} if method == "GET" else None
        payload = {**body, "path": bad} if body is not None else None
        code, doc = await api(jp_fetch, route, method=method, params=params, body=payload)
        assert code == 403, (method, route, code, doc)
        assert "root" in doc["message"]
    assert not _run_dirs(jp_root_dir)


async def test_post_runs_invalid_notebook(jp_fetch: Any, jp_root_dir: Path) -> None:
    write_notebook(jp_root_dir, "broken.ipynb", BROKEN_CELLS)
    _, doc = await api(jp_fetch, "runs", method="POST", body={"path": "broken.ipynb"}, expect=400)
    assert doc["messages"] and doc["messages"][0]["severity"] == "error"
    assert "nothing was started" in doc["message"]
    assert not _run_dirs(jp_root_dir)
    assert not (jp_root_dir / ".scanflow" / "mlflow.db").exists()


@pytest.mark.parametrize("case", ["not_json.ipynb", "nbformat3.ipynb", "no_kernelspec.ipynb"])
async def test_post_runs_bad_input_cases(jp_fetch: Any, jp_root_dir: Path, case: str) -> None:
    from tests.bad_inputs.cases import CASES_DIR

    (jp_root_dir / case).write_bytes((CASES_DIR / case).read_bytes())
    _, doc = await api(jp_fetch, "runs", method="POST", body={"path": case}, expect=400)
    assert doc["messages"] and all(m["text"] and m["fix"] for m in doc["messages"])
    assert not _run_dirs(jp_root_dir)


async def test_post_runs_bad_requests(jp_fetch: Any, jp_root_dir: Path) -> None:
    copy_example(jp_root_dir, "diamond.ipynb")
    cases = [
        ({"path": "diamond.ipynb", "parameters": {"no_such_param": 1}}, "unknown-parameter"),
        ({"path": "diamond.ipynb", "only": ["no_such_step"]}, "unknown-step"),
        ({"path": "diamond.ipynb", "resume": "20200101T000000-000000"}, None),
        ({"path": "diamond.ipynb", "backend": "nope"}, None),
        ({"path": "diamond.ipynb", "parameters": {"seed": [1, 2]}}, None),
        ({"path": "diamond.ipynb", "parameters": "x"}, None),
    ]
    for body, code in cases:
        status, doc = await api(jp_fetch, "runs", method="POST", body=body)
        assert status in (400, 404), (body, status, doc)
        if code:
            assert [m["code"] for m in doc["messages"]] == [code], doc
    status, doc = await api(jp_fetch, "runs", method="POST", body="[1, 2")
    assert status == 400 and "JSON" in doc["message"]
    assert not _run_dirs(jp_root_dir)


async def test_unavailable_backend_is_503(jp_fetch: Any, jp_root_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    from scanflow_jupyter.server import backends

    copy_example(jp_root_dir, "diamond.ipynb")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    backends._cache.clear()
    try:
        _, doc = await api(jp_fetch, "runs", method="POST", body={"path": "diamond.ipynb", "backend": "docker"},
                           expect=503)
        assert "docker backend is unavailable" in doc["message"] and "dockerd" in doc["message"]
        _, doc = await api(jp_fetch, "builds", method="POST", body={"path": "diamond.ipynb"}, expect=503)
        assert "cannot be built" in doc["message"]
    finally:
        backends._cache.clear()
    assert not _run_dirs(jp_root_dir)


async def test_unknown_run_is_404(jp_fetch: Any) -> None:
    for route in ["runs/20260101T000000-abcdef", "runs/20260101T000000-abcdef/logs?step=x",
                  "runs/20260101T000000-abcdef/events?format=json"]:
        path, _, query = route.partition("?")
        params = dict([query.split("=")]) if query else None
        code, doc = await api(jp_fetch, *path.split("/"), params=params)
        assert code == 404 and "no run" in doc["message"], (route, code, doc)
    await api(jp_fetch, "runs", "cache", expect=404)
    await api(jp_fetch, "runs", "20260101T000000-abcdef", "cancel", method="POST", body={}, expect=404)
    await api(jp_fetch, "builds", "0123456789ab", expect=404)
    await api(jp_fetch, "deployments", "0123456789ab", expect=404)


async def test_no_token_is_403(server_url: str, jp_root_dir: Path) -> None:
    copy_example(jp_root_dir, "diamond.ipynb")
    for method, route, body in ROUTES:
        resp = await raw(server_url + "scanflow/api/" + route, method=method,
                         body=json.dumps(body) if body is not None else None)
        assert resp.code == 403, (method, route, resp.code, resp.body[:300])
    assert not _run_dirs(jp_root_dir)


async def test_cookie_auth_without_xsrf_is_403(server_url: str, jp_serverapp: Any, jp_root_dir: Path) -> None:
    write_notebook(jp_root_dir, "broken.ipynb", BROKEN_CELLS)
    token = jp_serverapp.identity_provider.token
    login = await raw(server_url + f"scanflow/api/config?token={token}")
    assert login.code == 200
    cookies = [c.split(";", 1)[0] for c in login.headers.get_list("Set-Cookie")]
    assert cookies, "the token in the URL must set a login cookie"
    cookie = "; ".join(cookies)
    ok = await raw(server_url + "scanflow/api/runs", headers={"Cookie": cookie})
    assert ok.code == 200, "the cookie alone authenticates a GET"
    for route, body in [("runs", {"path": "broken.ipynb"}), ("agents", {"path": "broken.ipynb", "action": "stop"}),
                        ("builds", {"path": "broken.ipynb"}), ("runs/20260101T000000-abcdef/cancel", {}),
                        ("mlflow-ui", {})]:
        resp = await raw(server_url + "scanflow/api/" + route, method="POST", body=json.dumps(body),
                         headers={"Cookie": cookie})
        assert resp.code == 403, (route, resp.code, resp.body[:300])
        assert b"XSRF" in resp.body or b"xsrf" in resp.body
    # the same write with the XSRF cookie + header goes through (400: the notebook is broken)
    xsrf = "2|abcdef01|0123456789abcdef0123456789abcdef|1700000000"
    resp = await raw(server_url + "scanflow/api/runs", method="POST", body=json.dumps({"path": "broken.ipynb"}),
                     headers={"Cookie": f"{cookie}; _xsrf={xsrf}", "X-XSRFToken": xsrf})
    assert resp.code == 400, resp.body[:500]
    assert not _run_dirs(jp_root_dir)


async def test_mlflow_empty_store(jp_fetch: Any, jp_root_dir: Path) -> None:
    _, doc = await api(jp_fetch, "mlflow", "experiments", expect=200)
    assert doc == {"experiments": []}
    _, doc = await api(jp_fetch, "mlflow", "runs", expect=200)
    assert doc == {"runs": [], "next_page_token": None}
    assert not (jp_root_dir / ".scanflow" / "mlflow.db").exists(), "reading must not create the store"


async def test_agents_routes(jp_fetch: Any, jp_root_dir: Path) -> None:
    copy_example(jp_root_dir, "diamond.ipynb")
    _, doc = await api(jp_fetch, "agents", expect=200)
    assert doc == {"agents": []}
    _, doc = await api(jp_fetch, "agents", params={"path": "diamond.ipynb"}, expect=200)
    assert doc == {"agents": []}
    _, doc = await api(jp_fetch, "agents", method="POST", body={"path": "diamond.ipynb", "action": "start"}, expect=400)
    assert "no %%agent" in doc["message"]
    await api(jp_fetch, "agents", method="POST", body={"path": "diamond.ipynb", "action": "jump"}, expect=400)
    await api(jp_fetch, "agents", method="POST", body={"path": "diamond.ipynb", "action": "stop", "names": ["a"]},
              expect=400)
    _, doc = await api(jp_fetch, "agents", method="POST", body={"path": "diamond.ipynb", "action": "stop"}, expect=202)
    assert doc["agents"] == []


async def test_builds_validation(jp_fetch: Any, jp_root_dir: Path) -> None:
    write_notebook(jp_root_dir, "broken.ipynb", BROKEN_CELLS)
    _, doc = await api(jp_fetch, "builds", method="POST", body={"path": "broken.ipynb"}, expect=400)
    assert doc["messages"] and "nothing was built" in doc["message"]
    await api(jp_fetch, "builds", method="POST", body={}, expect=400)


async def test_deployments_unavailable(jp_fetch: Any, jp_root_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                       tmp_path: Path) -> None:
    copy_example(jp_root_dir, "diamond.ipynb")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    from scanflow_jupyter.server import backends

    backends._cache.clear()
    _, doc = await api(jp_fetch, "deployments", params={"path": "diamond.ipynb"}, expect=200)
    assert doc["available"] is False and doc["reason"] and doc["objects"] == []
    _, doc = await api(jp_fetch, "deployments", method="POST", body={"path": "diamond.ipynb"}, expect=503)
    assert "cannot deploy" in doc["message"]
    _, doc = await api(jp_fetch, "deployments", method="DELETE", params={"path": "diamond.ipynb"}, expect=503)
    backends._cache.clear()


def test_jupyter_config_enables_extension() -> None:
    repo = Path(__file__).resolve().parents[2]
    doc = json.loads((repo / "jupyter-config" / "jupyter_server_config.d" / "scanflow_jupyter.json").read_text())
    assert doc == {"ServerApp": {"jpserver_extensions": {"scanflow_jupyter.server": True}}}
    from scanflow_jupyter.server import _jupyter_server_extension_points

    assert _jupyter_server_extension_points() == [{"module": "scanflow_jupyter.server"}]
    assert os.path.basename(__file__)
