"""Agents end to end: real processes, real HTTP on 127.0.0.1, a real MLflow sqlite store.

Every test works in its own project folder (tmp_path, SCANFLOW_HOME set, MLFLOW_TRACKING_URI
unset or pointed at the test's store) and ends with no process left: `down` stops everything
and `_no_processes_left` checks /proc for any process that still carries the test's
SCANFLOW_HOME in its environment (supervisors, agents, pipeline kernels).
"""

from __future__ import annotations

import json
import os
import signal
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.agents_support import fresh_store

pytestmark = pytest.mark.integration


def processes_with_home(home: Path) -> list[tuple[int, str]]:
    """Live processes whose environment has SCANFLOW_HOME=home (this test's processes)."""
    marker = f"SCANFLOW_HOME={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append((int(entry.name), cmd.strip()))
        except OSError:
            continue
    return found


def wait_for(check: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # noqa: BLE001 - e.g. an agent restarting: try again
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what}; last: {last!r}")


def token_headers() -> dict[str, str]:
    """The Authorization header of this test's project (SCANFLOW_HOME is set by `project`)."""
    from scanflow_jupyter.agents.auth import agent_token, auth_headers

    return auth_headers(agent_token(create=False))


def get(port: int, path: str = "/status", timeout: float = 5.0) -> dict[str, Any]:
    import httpx

    response = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=timeout, headers=token_headers())
    response.raise_for_status()
    return response.json()


def sensor(status: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in status["sensors"] if s["name"] == name)


def actuator(status: dict[str, Any], name: str) -> dict[str, Any]:
    return next(a for a in status["actuators"] if a["name"] == name)


def agent_cell(header: str, body: str, imports: str = "") -> str:
    return header + "\n" + imports + textwrap.dedent(body).strip("\n")


@pytest.fixture
def agents_project(project, require, monkeypatch):
    """A project with an MLflow store ready, whose agents are all stopped (and checked) at the end."""
    require("fastapi")
    require("uvicorn")
    require("httpx")
    require("mlflow.tracking")
    fresh_store(project.home)
    yield project
    from scanflow_jupyter.agents.control import down

    down(home=project.home)
    deadline = time.monotonic() + 15
    while processes_with_home(project.home) and time.monotonic() < deadline:
        time.sleep(0.2)
    leftover = processes_with_home(project.home)
    for pid, _cmd in leftover:  # never leave an orphan behind, even when failing
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not leftover, f"processes left after `agents down`: {leftover}"


def mlflow_client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def log_run(client: Any, experiment: str, params: dict[str, Any] | None = None, **metrics: float) -> str:
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    run = client.create_run(exp_id)
    for key, value in (params or {}).items():
        client.log_param(run.info.run_id, key, value)
    for key, value in metrics.items():
        client.log_metric(run.info.run_id, key, value)
    client.set_terminated(run.info.run_id)
    return run.info.run_id


# -- the loop ------------------------------------------------------------------------------


def test_monitor_and_planner_close_the_loop(agents_project):
    """`scanflow run` logs a weak model → the monitor's event sensor sees its error rate over the
    threshold → it calls the planner → the planner runs the pipeline again with more rows."""
    project = agents_project
    code, up = project.cli_json("agents", "up", "agents_loop.ipynb", "--json", timeout=120)
    assert code == 0, up
    ports = {a["name"]: a["port"] for a in up["agents"]}
    assert set(ports) == {"monitor", "planner"} and all(a["state"] == "running" for a in up["agents"])
    assert len(set(ports.values())) == 2

    weak = project.cli_json("run", "agents_loop.ipynb", "--json", timeout=180)
    assert weak[0] == 0, weak

    planner = wait_for(lambda: (s := get(ports["planner"])) and actuator(s, "retrain")["runs"] == 1 and s,
                       120, "the planner's retrain actuator to run")
    retrain = actuator(planner, "retrain")
    assert retrain["state"] == "ok", retrain
    assert retrain["last_value"]["status"] == "succeeded"
    monitor = wait_for(lambda: (s := get(ports["monitor"])) and sensor(s, "weak_models")["runs"] >= 1 and s,
                       30, "the monitor's sensor to finish")
    weak_models = sensor(monitor, "weak_models")
    assert weak_models["last_value"]["retrain"] == "succeeded"
    assert weak_models["events"] == 1 and len(weak_models["last_value"]["weak_runs"]) == 1

    runs = sorted(project.store.list_runs(), key=lambda r: r.created_at)
    assert [(r.params["n_rows"], r.status) for r in runs] == [(20, "succeeded"), (400, "succeeded")]
    assert retrain["last_value"]["run_id"] == runs[1].run_id

    client = project.mlflow_client()
    errors = {r.data.params["n_rows"]: r.data.metrics["error_rate"]
              for r in client.search_runs([client.get_experiment_by_name("agents-loop").experiment_id],
                                          filter_string="metrics.error_rate > 0")}
    assert errors["20"] > 0.2 > errors["400"]

    # The better model is under the threshold: no second retrain, however long we wait.
    time.sleep(5)
    assert actuator(get(ports["planner"]), "retrain")["runs"] == 1

    agents_exp = client.get_experiment_by_name("agents-loop-agents")
    calls = client.search_runs([agents_exp.experiment_id], max_results=1000,
                               filter_string="tags.`scanflow.call` = 'retrain'")
    assert len(calls) == 1
    call = calls[0]
    assert call.info.status == "FINISHED" and call.data.tags["scanflow.kind"] == "actuator"
    assert call.data.tags["scanflow.caller"] == "agents-loop/monitor/weak_models"
    assert json.loads(call.data.params["input.payload"])["n_rows"] == 400
    assert json.loads(call.data.tags["scanflow.result"])["status"] == "succeeded"
    sensed = client.search_runs([agents_exp.experiment_id], filter_string="tags.`scanflow.call` = 'weak_models'")
    assert len(sensed) == 1 and "input.events" in sensed[0].data.params

    messages = get(ports["planner"], "/messages")["messages"]
    assert any(m["kind"] == "log" and "retrained after 1 weak run(s): succeeded" in m["text"] for m in messages)

    listed = project.cli("agents", "ls")
    assert listed.returncode == 0
    for word in ("agents-loop/monitor", "agents-loop/planner", "running", str(ports["monitor"])):
        assert word in listed.stdout
    stopped = project.cli("agents", "down", "agents_loop.ipynb")
    assert stopped.returncode == 0 and "stopped 2 agent(s)" in stopped.stdout
    assert not processes_with_home(project.home)
    assert project.cli_json("agents", "ls", "--json")[1] == []


# -- faults -------------------------------------------------------------------------------


def _ticker_notebook(project: Any, seen_file: Path) -> Path:
    return project.write_notebook("ticker", [
        "%scanflow_app ticking",
        agent_cell("%%agent ticker", f"""
            import time
            from pathlib import Path
            from scanflow_jupyter.agents import sensor, new_run

            SEEN = Path({str(seen_file)!r})

            @sensor(every="0.5s")
            def tick(ctx):
                return time.time()

            @sensor(on=new_run("watched", poll="0.2s"))
            def seen(ctx, runs):
                with SEEN.open("a") as fh:
                    fh.writelines(r.info.run_id + "\\n" for r in runs)
                return [r.info.run_id for r in runs]
        """),
        agent_cell("%%agent bystander", """
            from scanflow_jupyter.agents import sensor

            @sensor(every="1s")
            def beat(ctx):
                return 1
        """),
    ])


def test_sigkilled_agent_is_restarted_with_its_schedule_and_watermark(agents_project):
    from scanflow_jupyter.agents import control
    from scanflow_jupyter.agents.registry import Registry

    project = agents_project
    seen_file = project.root / "seen.txt"
    nb = _ticker_notebook(project, seen_file)
    up = control.up(nb)
    assert up.exit_code == 0, up.to_dict()
    ports = {a.name: a.port for a in up.agents}
    client = mlflow_client(project.tracking_uri())
    first = [log_run(client, "watched"), log_run(client, "watched")]
    wait_for(lambda: len(seen_file.read_text().split()) == 2 if seen_file.exists() else None, 20,
             "the event sensor to see the two runs")
    before = get(ports["ticker"])
    bystander_pid = get(ports["bystander"])["pid"]
    wait_for(lambda: sensor(get(ports["ticker"]), "tick")["runs"] >= 2, 10, "two ticks")

    killed_at = time.monotonic()
    os.kill(before["pid"], signal.SIGKILL)
    after = wait_for(lambda: (s := get(ports["ticker"], timeout=2)) and s["pid"] != before["pid"] and s,
                     10, "the agent to answer again on the same port")
    restart_s = time.monotonic() - killed_at
    assert restart_s < 5.0, f"restarted after {restart_s:.2f} s"
    assert after["starts"] == before["starts"] + 1
    assert sensor(after, "seen")["watermark"] == sensor(before, "seen")["watermark"]
    assert sensor(after, "seen")["events"] == 2
    assert sensor(after, "tick")["schedule"] == "every 0.5s"
    runs_after_restart = sensor(after, "tick")["runs"]
    assert runs_after_restart >= sensor(before, "tick")["runs"]
    wait_for(lambda: sensor(get(ports["ticker"]), "tick")["runs"] >= runs_after_restart + 2, 10,
             "the schedule to go on after the restart")

    third = log_run(client, "watched")
    wait_for(lambda: len(seen_file.read_text().split()) >= 3, 20, "the event sensor to see the third run")
    time.sleep(0.6)  # a few more polls: nothing may be delivered twice
    assert seen_file.read_text().split() == [*first, third]

    entry = Registry(project.home).notebook(str(nb))
    assert entry["agents"]["ticker"]["restarts"] == 1 and entry["agents"]["ticker"]["last_exit"] == "signal 9"
    assert get(ports["bystander"])["pid"] == bystander_pid
    code, rows = project.cli_json("agents", "ls", "--json")
    ticker = next(r for r in rows if r["name"] == "ticker")
    assert code == 0 and ticker["restarts"] == 1 and ticker["state"] == "running"
    log = Path(ticker["log"]).read_text()
    assert "exited (signal 9); restarting in 0.25 s" in log and "(start 2)" in log


def test_mlflow_store_unavailable_errors_show_in_status_and_the_agent_keeps_running(agents_project, monkeypatch):
    from scanflow_jupyter.agents import control

    project = agents_project
    store = project.root / "store"
    uri = fresh_store(store)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    nb = project.write_notebook("probe", [
        "%scanflow_app probing",
        agent_cell("%%agent probe", """
            from scanflow_jupyter.agents import sensor, new_run

            @sensor(every="0.3s")
            def experiments(ctx):
                return len(ctx.mlflow.search_experiments())

            @sensor(on=new_run("watched", poll="0.3s"))
            def runs(ctx, runs):
                return [r.info.run_id for r in runs]
        """),
    ])
    up = control.up(nb)
    assert up.exit_code == 0, up.to_dict()
    port, pid = up.agents[0].port, up.agents[0].pid
    wait_for(lambda: sensor(get(port), "experiments")["state"] == "ok", 20, "the store to be read once")

    away = project.root / "store-away"
    store.rename(away)  # the store is gone: every MLflow call fails
    try:
        down_status = wait_for(
            lambda: (s := get(port)) and all(sensor(s, n)["state"] == "error" for n in ("experiments", "runs")) and s,
            20, "both sensors to report the outage")
        for name in ("experiments", "runs"):
            assert "unable to open database file" in sensor(down_status, name)["last_error"]
        assert sensor(down_status, "runs")["last_error"].startswith("MLflow: ")
        rows = {r.name: r for r in control.ls()}
        assert rows["probe"].state == "running" and "unable to open database file" in rows["probe"].last_error
        time.sleep(1.0)
        assert get(port)["pid"] == pid  # still the same process, still answering
    finally:
        away.rename(store)

    up_status = wait_for(
        lambda: (s := get(port)) and all(sensor(s, n)["state"] == "ok" for n in ("experiments", "runs")) and s,
        20, "both sensors to recover")
    assert sensor(up_status, "experiments")["errors"] >= 1
    new = log_run(mlflow_client(uri), "watched")
    wait_for(lambda: sensor(get(port), "runs")["last_value"] == [new], 20, "the event sensor to see the new run")
    # Calls made during the outage were kept and logged once the store was back.
    tracking = wait_for(lambda: (t := get(port)["tracking"]) and t["pending"] == 0 and t, 30,
                        "the call journal to catch up")
    assert tracking["failures"] >= 1 and tracking["dropped"] == 0
    client = mlflow_client(uri)
    failed = client.search_runs([client.get_experiment_by_name("probing-agents").experiment_id],
                                filter_string="attributes.status = 'FAILED'")
    assert failed and "unable to open database file" in failed[0].data.tags["scanflow.error"]
    assert get(port)["pid"] == pid


# -- bad agent code --------------------------------------------------------------------------


def test_bad_agent_code_is_refused_with_cell_and_fix_and_the_others_start(agents_project):
    project = agents_project
    imports = "from scanflow_jupyter.agents import sensor, actuator\n"
    project.write_notebook("mixed", [
        "%scanflow_app mixed",
        {"source": "limit = 3", "tags": ["parameters"]},
        agent_cell("%%agent good", imports=imports, body="""
            @sensor(every="0.5s")
            def tick(ctx):
                return limit

            @actuator
            def double(ctx, payload):
                return payload * 2
        """),
        "%%agent syntax\ndef broken(:\n    pass",
        "%%agent typo --template planer\nx = 1",
        agent_cell("%%agent twice", imports=imports, body="""
            @sensor(every="1s", cron="*/5 * * * *")
            def check(ctx):
                return 1
        """),
        agent_cell("%%agent clash --template planner", imports=imports, body="""
            @actuator
            def run_pipeline(ctx, payload):
                return None
        """),
        agent_cell("%%agent crashes", imports=imports, body="""
            THRESHOLD = compute_threshold()
        """),
    ])
    code, doc = project.cli_json("agents", "up", "mixed.ipynb", "--json", timeout=120)
    assert code == 1, doc
    assert [(a["name"], a["state"]) for a in doc["agents"]] == [("good", "running")], json.dumps(doc)
    assert doc["agents"][0]["cell"] == 3  # `%%agent good` is the 3rd cell (1-based, as users count)
    refused = {r["agent"]: r for r in doc["refused"]}
    assert {name: (r["cell"], r["code"]) for name, r in refused.items()} == {
        "syntax": (4, "syntax-error"), "typo": (5, "unknown-template"), "twice": (6, "sensor-two-triggers"),
        "clash": (7, "actuator-name-clash"), "crashes": (8, "agent-load-error")}  # 1-based cell numbers
    assert "did you mean --template planner?" in refused["typo"]["fix"]
    assert "def check_cron(ctx)" in refused["twice"]["fix"]
    assert "@actuator(name='run_pipeline_custom')" in refused["clash"]["fix"]
    assert "NameError: name 'compute_threshold' is not defined" in refused["crashes"]["text"]
    assert "line 3 of the cell" in refused["crashes"]["text"]
    assert "inside the %%agent cell" in refused["crashes"]["fix"]

    port = doc["agents"][0]["port"]
    assert wait_for(lambda: sensor(get(port), "tick")["last_value"] == 3, 15, "the good agent to run")
    import httpx

    assert httpx.post(f"http://127.0.0.1:{port}/actuators/double", json=21, timeout=10,
                      headers=token_headers()).json()["result"] == 42

    # The same refusals, as a person reads them (and `up` again restarts cleanly).
    again = project.cli("agents", "up", "mixed.ipynb", timeout=120)
    assert again.returncode == 1
    assert "refused agent crashes (cell 8)" in again.stderr
    assert "refused agent twice (cell 6)" in again.stderr and "fix:" in again.stderr
    assert "1 agent(s) running, 5 refused, 0 failed" in again.stdout
    rows = {r["name"]: r for r in project.cli_json("agents", "ls", "--json")[1]}
    assert rows["crashes"]["state"] == "refused" and rows["crashes"]["pid"] is None
    assert rows["good"]["state"] == "running" and rows["good"]["restarts"] == 0


# -- from the notebook ---------------------------------------------------------------------


def test_scanflow_agents_magics_start_list_and_stop(agents_project, capsys):
    from IPython.core.interactiveshell import InteractiveShell

    from scanflow_jupyter.magics import register

    project = agents_project
    nb = _ticker_notebook(project, project.root / "seen.txt")
    shell = InteractiveShell.instance()
    register(shell)
    assert shell.run_cell(f"%scanflow agents up --notebook {nb}").success
    out = capsys.readouterr().out
    assert "agents of ticking" in out and "ticker" in out and "bystander" in out and "running" in out
    assert shell.run_cell("%scanflow agents ls").success
    assert "sensors tick (every 0.5s), seen (on new_run)" in capsys.readouterr().out
    assert processes_with_home(project.home)
    assert shell.run_cell(f"%scanflow agents down --notebook {nb}").success
    assert "stopped 2 agent(s): ticking/ticker, ticking/bystander" in capsys.readouterr().out
    assert not processes_with_home(project.home)
