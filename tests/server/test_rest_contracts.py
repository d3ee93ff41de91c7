"""Every answer of the real REST API validates against its contract model (contracts/rest.py):
a key the server adds, drops or retypes without the contract (and so the sidebar's generated
types) following fails here. Real jupyter_server, real `scanflow run` subprocesses and kernels,
real MLflow store."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from scanflow_jupyter.contracts import rest
from tests.agents_support import fresh_store
from tests.server.conftest import api, drain, write_notebook
from tests.server.rest_contract import check
from tests.services_support import CUSTOM_SERVICE

pytestmark = pytest.mark.integration

PIPE = [
    "%load_ext scanflow_jupyter\n%scanflow_app contract",
    {"source": "n = 2", "tags": ["parameters"]},
    "%%executor make --outputs x\nx = list(range(n))",
    "%%executor boom --inputs x\nraise ValueError(f'no good: {len(x)}')",
]
SHOWCASE = [  # every node kind of the app view
    "%scanflow_app showcase",
    "%%executor a --outputs y\ny = 1",
    "%%service scorer\ndef predict(rows):\n    return rows",
    "%%agent watcher\nfrom scanflow_jupyter.agents import sensor\n\n@sensor(every='1h')\ndef tick(ctx):\n    return 1",
]


async def call(jp_fetch: Any, route: str, *, method: str = "GET", expect: int, body: Any = None,
               params: Any = None) -> Any:
    """One API call whose answer must have status `expect` and match its contract model."""
    status, doc = await api(jp_fetch, *route.split("/"), method=method, body=body, params=params, expect=expect)
    check(method, route, status, doc)
    return doc


async def finished(jp_fetch: Any, run_id: str, timeout: float = 180) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        run = await call(jp_fetch, f"runs/{run_id}", expect=200)
        if run["status"] != "running":
            return run
        assert loop.time() < deadline, f"run {run_id} still running after {timeout} s"
        await asyncio.sleep(0.2)


async def test_every_answer_matches_its_contract(jp_fetch: Any, jp_root_dir: Path, jp_serverapp: Any) -> None:
    config = await call(jp_fetch, "config", expect=200)
    assert [b["name"] for b in config["backends"]][:3] == ["local", "docker", "kubernetes"]

    write_notebook(jp_root_dir, "c/showcase.ipynb", SHOWCASE)
    view = await call(jp_fetch, "app", params={"path": "c/showcase.ipynb"}, expect=200)
    assert {n["kind"] for n in view["nodes"]} == {"executor", "service", "agent"}
    content = json.loads((jp_root_dir / "c/showcase.ipynb").read_text())
    await call(jp_fetch, "app", method="POST", body={"path": "c/showcase.ipynb", "notebook": content}, expect=200)

    write_notebook(jp_root_dir, "c/pipe.ipynb", PIPE)
    request = {"path": "c/pipe.ipynb", "backend": "local", "parameters": {"n": 3}, "resume": None, "only": None}
    rest.RunRequest.model_validate(request)  # the body as the sidebar sends it (api.ts startRun)
    started = await call(jp_fetch, "runs", method="POST", body=request, expect=202)
    run_id = started["run_id"]
    run = await finished(jp_fetch, run_id)
    assert run["status"] == "failed" and run["steps"]["boom"]["error"]["ename"] == "ValueError"
    await drain(jp_serverapp)

    listed = await call(jp_fetch, "runs", expect=200)
    assert [r["run_id"] for r in listed["runs"]] == [run_id]
    await call(jp_fetch, "runs", params={"path": "c/pipe.ipynb"}, expect=200)
    page = await call(jp_fetch, f"runs/{run_id}/events", params={"format": "json"}, expect=200)
    assert page["finished"] is True and page["events"][-1]["type"] == "run_finished"
    await call(jp_fetch, f"runs/{run_id}/logs", params={"step": "boom"}, expect=200)
    await call(jp_fetch, f"runs/{run_id}/notebook", params={"step": "make"}, expect=200)
    await call(jp_fetch, f"runs/{run_id}/as-notebook", method="POST", body={}, expect=201)
    await call(jp_fetch, f"runs/{run_id}/cancel", method="POST", body={}, expect=409)
    await call(jp_fetch, "runs/no-such-run", expect=404)
    bad = await call(jp_fetch, "runs", method="POST", body={"path": "c/pipe.ipynb", "parameters": {"zz": 1}},
                     expect=400)
    assert bad["messages"][0]["code"] == "unknown-parameter"

    broken = jp_root_dir / ".scanflow" / "runs" / "20990101T000000-broken"
    broken.mkdir(parents=True)
    (broken / "run.json").write_text("{not json", encoding="utf-8")
    listed = await call(jp_fetch, "runs", expect=200)
    assert [r["status"] for r in listed["runs"]] == ["unreadable", "failed"]

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    while True:  # the run's MLflow records (delivered by the runner or its recorder)
        experiments = await call(jp_fetch, "mlflow/experiments", expect=200)
        runs = {"runs": []}
        if "contract" in [e["name"] for e in experiments["experiments"]]:
            runs = await call(jp_fetch, "mlflow/runs", params={"experiment": "contract", "nested": "true"}, expect=200)
        if runs["runs"] or loop.time() > deadline:
            break
        await asyncio.sleep(0.5)
    assert runs["runs"], "the run's MLflow records never arrived"
    await call(jp_fetch, "mlflow/runs", params={"filter": "metrics.x >"}, expect=400)

    assert (await call(jp_fetch, "agents", expect=200))["agents"] == []
    assert (await call(jp_fetch, "services", expect=200))["services"] == []
    await call(jp_fetch, "deployments", params={"path": "c/pipe.ipynb"}, expect=200)
    await call(jp_fetch, "builds/0123456789ab", expect=404)
    await call(jp_fetch, "no/such/route", expect=404)


@pytest.fixture
def live_root(jp_root_dir: Path, require: Any) -> Any:
    """A notebook with an agent and a service; both are stopped after the test."""
    for module in ("fastapi", "uvicorn", "pyarrow", "mlflow.tracking"):
        require(module)
    home = jp_root_dir / ".scanflow"
    fresh_store(home)
    write_notebook(jp_root_dir, "live/both.ipynb", [
        "%scanflow_app live",
        "%%setup\nWEIGHT = 3.0",
        "%%agent ticker\nfrom scanflow_jupyter.agents import sensor\n\n@sensor(every='0.5s')\ndef tick(ctx):\n    return 42",
        CUSTOM_SERVICE])
    yield jp_root_dir
    from scanflow_jupyter.agents.control import down as agents_down
    from scanflow_jupyter.services.supervisor import down as services_down

    agents_down(home=home)
    services_down(home=home)


async def test_agents_and_services_answers_match_their_contracts(jp_fetch: Any, live_root: Path) -> None:
    body = {"path": "live/both.ipynb", "action": "start"}
    started = await call(jp_fetch, "agents", method="POST", body=body, expect=202)
    assert [a["status"] for a in started["agents"]] == ["running"], started
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:  # until the sensor has run: its last_run/next_run/last_value are filled in
        listed = await call(jp_fetch, "agents", params={"path": "live/both.ipynb"}, expect=200)
        sensors = listed["agents"][0]["sensors"]
        if (sensors and sensors[0]["last_run"]) or loop.time() > deadline:
            break
        await asyncio.sleep(0.3)
    assert sensors[0]["last_value"] == 42, listed
    services = await call(jp_fetch, "services", method="POST", body=body, expect=202)
    assert [s["state"] for s in services["services"]] == ["running"], services
    await call(jp_fetch, "services", expect=200)
    answer = await call(jp_fetch, "services/predict", method="POST", expect=200,
                        body={"path": "live/both.ipynb", "name": "scorer",
                              "payload": {"inputs": [{"age": 1, "income": 1}]}})
    assert answer["status"] == 200
    stopped = await call(jp_fetch, "services", method="POST", body={**body, "action": "stop"}, expect=202)
    assert stopped["services"] == [] and stopped["stopped"]
    await call(jp_fetch, "agents", method="POST", body={**body, "action": "stop"}, expect=202)


def test_a_drifted_answer_fails_the_check() -> None:
    """The check is strict: an unknown key, a missing key and a wrong type each fail."""
    good = {"run_id": "r", "status": "killed"}
    check("POST", "runs/r/cancel", 202, good)
    for doc in ({**good, "extra": 1}, {"run_id": "r"}, {**good, "status": 3}):
        with pytest.raises(AssertionError, match="does not match CancelAnswer"):
            check("POST", "runs/r/cancel", 202, doc)
    with pytest.raises(AssertionError, match="no contract model"):
        check("GET", "nothing/here", 200, {})
