"""One agent in-process: the runtime behind the FastAPI routes (real sqlite MLflow store).

Peers over real HTTP, processes, restarts and the supervisor are in
tests/integration/test_agents.py (processes).
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from scanflow_jupyter.agents.loader import agent_spec, load_agent
from scanflow_jupyter.model import Agent, Application
from tests.agents_support import fresh_store

pytestmark = pytest.mark.integration

IMPORTS = "from scanflow_jupyter.agents import sensor, rule, actuator, new_run\n"
TOKEN = "test-agent-token-0123456789"

SOURCE = """
import time
calls = []

@sensor
def manual(ctx):
    calls.append(ctx.trigger)
    return {"calls": len(calls), "limit": ctx.params["limit"]}

@sensor(every="0.1s")
def fast(ctx):
    return time.time()

@rule(after="manual")
def over_limit(ctx, value):
    return value["calls"] > 1

@sensor
def flaky(ctx):
    if not calls:
        raise RuntimeError("no data yet")
    return "fine"

@sensor(on=new_run("watched", poll="1h"))
def watched_runs(ctx, runs):
    return [r.info.run_id for r in runs]

@actuator
def echo(ctx, payload):
    ctx.log("echoing", size=len(payload or {}))
    return {"payload": payload, "caller": ctx.caller}

@actuator
def explode(ctx, payload):
    raise ValueError("bad payload: " + str(payload))
"""


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory, require):
    require("mlflow.tracking")
    require("fastapi.testclient")
    return fresh_store(tmp_path_factory.mktemp("store"))


def make_runtime(tmp_path: Path, tracking_uri: str, source: str = SOURCE, template: str | None = "analyzer"):
    from scanflow_jupyter.agents.runtime import AgentRuntime

    app = Application(name="svc", notebook=str(tmp_path / "nb.ipynb"), parameters={"limit": 3})
    program = load_agent(agent_spec(Agent("watcher", 4, IMPORTS + textwrap.dedent(source), template), app))
    return AgentRuntime(program, home=tmp_path / "home", tracking_uri=tracking_uri,
                        state_dir=tmp_path / "home" / "agents" / "svc" / "watcher")


def client_for(runtime):
    """A TestClient that calls the agent as the CLI does: 127.0.0.1, with the project's token."""
    from fastapi.testclient import TestClient

    from scanflow_jupyter.agents.service import create_app

    return TestClient(create_app(runtime, token=TOKEN), base_url="http://127.0.0.1",
                      headers={"Authorization": f"Bearer {TOKEN}"})


@pytest.fixture
def served(tmp_path, tracking_uri):
    runtime = make_runtime(tmp_path, tracking_uri)
    with client_for(runtime) as client:
        yield runtime, client


def test_status_lists_schedules_actuators_and_rules(served):
    _runtime, client = served
    status = client.get("/status").json()
    assert (status["name"], status["app"], status["template"], status["cell"]) == ("watcher", "svc", "analyzer", 4)
    assert status["uptime_s"] >= 0 and status["starts"] == 1
    schedules = {s["name"]: s["schedule"] for s in status["sensors"]}
    assert schedules == {"manual": "manual (POST /sensors/{name})", "fast": "every 0.1s", "flaky": "manual (POST /sensors/{name})",
                         "watched_runs": "on new finished run in watched"}
    assert [(a["name"], a["builtin"]) for a in status["actuators"]] == [("drift_test", True), ("echo", False),
                                                                        ("explode", False)]
    assert status["rules"] == [{"name": "over_limit", "after": "manual", "doc": ""}]
    assert client.get("/health").json()["ok"] is True


def test_trigger_a_sensor_then_its_rule(served):
    _runtime, client = served
    first = client.post("/sensors/manual").json()
    assert first["ok"] and first["value"] == {"calls": 1, "limit": 3}
    client.post("/sensors/manual")
    sensor = next(s for s in client.get("/status").json()["sensors"] if s["name"] == "manual")
    assert (sensor["runs"], sensor["state"], sensor["last_value"]) == (2, "ok", {"calls": 2, "limit": 3})
    messages = client.get("/messages").json()["messages"]
    rules = [m for m in messages if m["kind"] == "rule"]
    assert [m["value"] for m in rules] == [False, True]
    assert client.post("/sensors/nope").status_code == 404


def test_scheduled_sensor_runs_on_its_own(served):
    _runtime, client = served
    time.sleep(0.5)
    fast = next(s for s in client.get("/status").json()["sensors"] if s["name"] == "fast")
    assert fast["runs"] >= 3 and fast["next_run"] is not None


def test_sensor_errors_show_in_status_and_clear_state_when_it_recovers(served):
    _runtime, client = served
    failed = client.post("/sensors/flaky")
    assert failed.status_code == 500 and failed.json()["error"] == "RuntimeError: no data yet"
    flaky = next(s for s in client.get("/status").json()["sensors"] if s["name"] == "flaky")
    assert (flaky["state"], flaky["errors"], flaky["last_error"]) == ("error", 1, "RuntimeError: no data yet")
    client.post("/sensors/manual")
    assert client.post("/sensors/flaky").json()["value"] == "fine"
    flaky = next(s for s in client.get("/status").json()["sensors"] if s["name"] == "flaky")
    assert flaky["state"] == "ok" and flaky["last_error"] == "RuntimeError: no data yet"


def test_actuators(served):
    _runtime, client = served
    ok = client.post("/actuators/echo", json={"a": 1}, headers={"x-scanflow-caller": "svc/other/s"})
    assert ok.json()["result"] == {"payload": {"a": 1}, "caller": "svc/other/s"}
    assert client.post("/actuators/echo").json()["result"]["payload"] is None  # empty body
    bad = client.post("/actuators/explode", json=[1])
    assert bad.status_code == 500 and bad.json()["error"] == "ValueError: bad payload: [1]"
    assert "Traceback" in bad.json()["traceback"]
    assert client.post("/actuators/echo", content=b"{not json",
                       headers={"content-type": "application/json"}).status_code == 400
    missing = client.post("/actuators/nope")
    assert missing.status_code == 404 and "actuators: drift_test, echo, explode" in missing.json()["error"]
    drift = client.post("/actuators/drift_test", json={"reference": {"x": [1, 2, 3, 4] * 10},
                                                       "current": {"x": [10, 11, 12, 13] * 10}})
    assert drift.json()["result"]["drifted"] == ["x"]
    logs = [m for m in client.get("/messages").json()["messages"] if m["kind"] == "log"]
    assert logs[0]["text"] == "echoing" and logs[0]["data"] == {"size": 1}


def test_event_sensor_gets_new_runs_once(served, tracking_uri):
    from mlflow.tracking import MlflowClient

    _runtime, client = served
    mlflow = MlflowClient(tracking_uri=tracking_uri)
    exp = mlflow.get_experiment_by_name("watched")
    exp_id = exp.experiment_id if exp else mlflow.create_experiment("watched")
    run = mlflow.create_run(exp_id)
    mlflow.set_terminated(run.info.run_id)
    assert client.post("/sensors/watched_runs").json()["value"] == [run.info.run_id]
    assert client.post("/sensors/watched_runs").json()["called"] is False  # nothing new
    sensor = next(s for s in client.get("/status").json()["sensors"] if s["name"] == "watched_runs")
    assert sensor["events"] == 1 and sensor["watermark"]["seen"] == 1


def test_every_call_is_an_mlflow_run(served, tracking_uri):
    from mlflow.tracking import MlflowClient

    runtime, client = served
    client.post("/sensors/manual")
    client.post("/actuators/echo", json={"x": 2})
    client.post("/actuators/explode", json={})
    assert runtime.journal.flush(20)
    mlflow = MlflowClient(tracking_uri=tracking_uri)
    exp = mlflow.get_experiment_by_name("svc-agents")
    runs = mlflow.search_runs([exp.experiment_id], filter_string="tags.`scanflow.agent` = 'watcher'",
                              max_results=1000)
    by_call = {}
    for r in runs:
        by_call.setdefault(r.data.tags["scanflow.call"], []).append(r)
    echo = by_call["echo"][0]
    assert echo.info.run_name == "watcher.echo" and echo.info.status == "FINISHED"
    assert echo.data.tags["scanflow.kind"] == "actuator" and echo.data.params["input.payload"] == '{"x": 2}'
    assert "duration_s" in echo.data.metrics and echo.data.tags["scanflow.status"] == "ok"
    boom = by_call["explode"][0]
    assert boom.info.status == "FAILED" and boom.data.tags["scanflow.error"].startswith("ValueError")
    assert by_call["manual"][0].data.tags["scanflow.kind"] == "sensor"
    assert len(by_call["fast"]) >= 1 and "value" in by_call["fast"][0].data.metrics


def test_state_survives_a_restart_and_a_changed_trigger_resets(tmp_path, tracking_uri):
    first = make_runtime(tmp_path, tracking_uri)
    with client_for(first) as client:
        client.post("/sensors/manual")
        before = {s["name"]: s for s in client.get("/status").json()["sensors"]}
    second = make_runtime(tmp_path, tracking_uri)
    status = second.status()
    after = {s["name"]: s for s in status["sensors"]}
    assert status["starts"] == 2
    assert after["manual"]["runs"] == 1 and after["manual"]["last_value"] == before["manual"]["last_value"]
    assert after["watched_runs"]["watermark"] == before["watched_runs"]["watermark"]
    assert after["fast"]["next_run"] == before["fast"]["next_run"]
    changed = make_runtime(tmp_path, tracking_uri, SOURCE.replace('every="0.1s"', 'every="5s"'))
    fast = next(s for s in changed.status()["sensors"] if s["name"] == "fast")
    assert fast["next_run"] is None and fast["runs"] >= 1  # new schedule; history kept
