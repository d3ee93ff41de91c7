"""services routes with real service processes (supervisor + Starlette services on 127.0.0.1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.server.conftest import api, write_notebook
from tests.services_support import CUSTOM_SERVICE, Http

pytestmark = pytest.mark.integration


@pytest.fixture
def services_root(jp_root_dir: Path, require: Any) -> Any:
    for module in ("uvicorn", "pyarrow"):
        require(module)
    write_notebook(jp_root_dir, "svc/scoring.ipynb", ["%%setup\nWEIGHT = 3.0", CUSTOM_SERVICE])
    write_notebook(jp_root_dir, "svc/empty.ipynb", ["x = 1"])
    yield jp_root_dir
    from scanflow_jupyter.services.supervisor import down

    down(home=jp_root_dir / ".scanflow")


async def test_start_list_try_stop(jp_fetch: Any, services_root: Path) -> None:
    _, doc = await api(jp_fetch, "services", method="POST", body={"path": "svc/scoring.ipynb", "action": "start"},
                       expect=202)
    [svc] = doc["services"]
    assert (svc["name"], svc["state"], svc["kind"]) == ("scorer", "running", "custom"), doc
    assert svc["url"].startswith("http://127.0.0.1:") and svc["pid"]
    # the sidebar's "try it": a request to the service itself
    assert Http(svc["url"]).post("/predict", {"inputs": [{"age": 1, "income": 1}]}) == (
        200, {"predictions": [{"score": 4.0, "loads": 1}]})
    _, listed = await api(jp_fetch, "services", params={"path": "svc/scoring.ipynb"}, expect=200)
    assert [s["name"] for s in listed["services"]] == ["scorer"]
    _, stopped = await api(jp_fetch, "services", method="POST", body={"path": "svc/scoring.ipynb", "action": "stop"},
                           expect=202)
    assert stopped["stopped"] == ["scoring/scorer"] and stopped["services"] == []


async def test_bad_requests(jp_fetch: Any, services_root: Path) -> None:
    status, doc = await api(jp_fetch, "services", method="POST", body={"path": "svc/empty.ipynb", "action": "start"})
    assert status == 400 and "declares no %%service cell" in doc["message"]
    status, doc = await api(jp_fetch, "services", method="POST",
                            body={"path": "svc/scoring.ipynb", "action": "start", "names": ["nosuch"]})
    assert status == 400 and "no service 'nosuch'" in doc["message"]
    status, _ = await api(jp_fetch, "services", method="POST", body={"path": "svc/scoring.ipynb", "action": "go"})
    assert status == 400
    status, _ = await api(jp_fetch, "services", method="POST", body={"path": "../outside.ipynb", "action": "start"})
    assert status in (400, 403, 404)


async def test_try_it_through_the_server(jp_fetch: Any, services_root: Path) -> None:
    body = {"path": "svc/scoring.ipynb", "name": "scorer", "payload": {"inputs": [{"age": 1, "income": 1}]}}
    status, doc = await api(jp_fetch, "services/predict", method="POST", body=body)
    assert status == 404 and "start it first" in doc["fix"], doc  # never started: not in services.json
    await api(jp_fetch, "services", method="POST", body={"path": "svc/scoring.ipynb", "action": "start"}, expect=202)
    _, doc = await api(jp_fetch, "services/predict", method="POST", body=body, expect=200)
    assert doc == {"status": 200, "answer": {"predictions": [{"score": 4.0, "loads": 1}]}}
    # the service's own refusal comes back as its status and JSON, inside a 200 from the server
    _, doc = await api(jp_fetch, "services/predict", method="POST", expect=200,
                       body={**body, "payload": {"inputs": [{"age": "old"}]}})
    assert doc["status"] == 422 and "age" in str(doc["answer"]), doc
    _, doc = await api(jp_fetch, "services/predict", method="POST", expect=200, body={**body, "payload": [1]})
    assert doc["status"] in (400, 422), doc
    # only services registered for that notebook are reachable
    status, doc = await api(jp_fetch, "services/predict", method="POST", body={**body, "name": "other"})
    assert status == 404 and "no service 'other'" in doc["message"]
    status, _ = await api(jp_fetch, "services/predict", method="POST", body={"path": "svc/scoring.ipynb",
                                                                           "name": "scorer"})
    assert status == 400
    await api(jp_fetch, "services", method="POST", body={"path": "svc/scoring.ipynb", "action": "stop"}, expect=202)
    status, _ = await api(jp_fetch, "services/predict", method="POST", body=body)
    assert status == 404
