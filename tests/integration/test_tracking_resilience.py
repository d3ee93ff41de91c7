"""Tracking survives concurrency, outages, a deleted store and a killed runner (issue #16, 3-6).

Everything is real: `scanflow run --json` subprocesses, the project's sqlite store, a closed
TCP port as the outage and a real `mlflow server` started on that port afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require, scanflow_command

pytestmark = [pytest.mark.integration]

WAIT_S = 120  # upper bound for conditions we poll for (never reached when things work)


def mlflow_notebook(project: Any, name: str = "tracked", extra: str = "") -> Path:
    """One step that logs a metric history with plain `mlflow.log_metric` (+ `extra` code)."""
    return project.write_notebook(name, [
        f"%load_ext scanflow_jupyter\n%scanflow_app {name}",
        "%%executor train --outputs m\n"
        "import mlflow\n"
        "for i in range(3):\n"
        "    mlflow.log_metric('loss', 1.0 / (i + 1), step=i)\n"
        + extra +
        "m = 1",
    ])


def hold_code(started: Path, hold: Path) -> str:
    """Kernel code: say we started, then wait while `hold` exists."""
    return (
        "import pathlib, time\n"
        f"pathlib.Path({str(started)!r}).write_text('started')\n"
        "deadline = time.time() + 150\n"
        f"while pathlib.Path({str(hold)!r}).exists() and time.time() < deadline:\n"
        "    time.sleep(0.05)\n"
    )


def wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def run_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"not one JSON document (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tables(db: Path) -> list[str]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    finally:
        con.close()


# ---------------------------------------------------------------------------- finding 3


@pytest.mark.timeout(290)
def test_five_concurrent_first_runs_are_all_tracked(project: Any) -> None:
    tracking = require("mlflow.tracking")
    nb = mlflow_notebook(project)
    assert not project.db.exists()
    procs = [subprocess.Popen([*scanflow_command(), "run", str(nb), "--json", "--max-parallel", "1"], cwd=project.root,
                              env=project.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(5)]
    docs = []
    for p in procs:
        out, err = p.communicate(timeout=280)
        docs.append(run_json(subprocess.CompletedProcess(p.args, p.returncode, out, err)))
    client = tracking.MlflowClient(project.tracking_uri())
    for doc in docs:
        assert doc["status"] == "succeeded", doc
        assert doc["tracking"] == "synced" and doc["warnings"] == [], doc
        parent = client.get_run(doc["mlflow_run_id"])  # raises if it exists nowhere
        assert parent.data.tags["scanflow.run_id"] == doc["run_id"]
        state = json.loads((Path(doc["run_dir"]) / "run.json").read_text())
        step = client.get_run(state["steps"]["train"]["mlflow_run_id"])
        assert [m.value for m in client.get_metric_history(step.info.run_id, "loss")] == [1.0, 0.5, 1 / 3]
    names = tables(project.db)
    assert not [n for n in names if n.startswith("_alembic_tmp_")], names
    con = sqlite3.connect(project.db)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        con.close()


# ---------------------------------------------------------------------------- findings 4 and 5


def start_mlflow_server(port: int, folder: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{folder / 'server.db'}", "--default-artifact-root", str(folder / "art")],
        stdout=subprocess.DEVNULL, stderr=open(folder / "server.log", "wb"), start_new_session=True)  # noqa: SIM115

    def up() -> bool:
        assert proc.poll() is None, (folder / "server.log").read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    wait_for(up, "the MLflow server")
    return proc


@pytest.mark.timeout(300)  # the pending run itself must end within 120 s (see below)
def test_unreachable_tracker_never_stalls_and_sync_delivers_later(project: Any, tmp_path: Path) -> None:
    tracking = require("mlflow.tracking")
    port = closed_port()
    uri = f"http://127.0.0.1:{port}"
    nb = mlflow_notebook(project, "outage")
    env = {**project.env(), "MLFLOW_TRACKING_URI": uri}

    # the whole run, kernel start and mlflow import included, well within what one stalled
    # `mlflow.log_metric` used to take (250 s)
    proc = subprocess.run([*scanflow_command(), "run", str(nb), "--json"], cwd=project.root, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    doc = run_json(proc)
    assert proc.returncode == 0 and doc["status"] == "succeeded", doc
    assert doc["tracking"] == "pending" and doc["mlflow_run_id"] is None, doc
    [warning] = [w for w in doc["warnings"] if w["code"] == "tracking-pending"]
    assert f"127.0.0.1:{port}" in warning["message"] and f"scanflow runs sync {doc['run_id']}" in warning["fix"]
    state = json.loads((Path(doc["run_dir"]) / "run.json").read_text())
    assert state["tracking"] == "pending" and state["warnings"] == doc["warnings"]

    sync = subprocess.run([*scanflow_command(), "runs", "sync", "--json"], cwd=project.root, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert sync.returncode == 1, sync.stdout + sync.stderr  # still unreachable: nothing lost, still pending
    assert run_json(sync)["runs"][0]["tracking"] == "pending"

    server_dir = tmp_path / "server"
    server_dir.mkdir()
    server = start_mlflow_server(port, server_dir)
    try:
        sync = subprocess.run([*scanflow_command(), "runs", "sync", "--json"], cwd=project.root, env=env,
                              capture_output=True, text=True, timeout=120, check=False)
        assert sync.returncode == 0, sync.stdout + sync.stderr
        [result] = run_json(sync)["runs"]
        assert result["tracking"] == "synced" and result["delivered"] == 2, result
        client = tracking.MlflowClient(uri)
        parent = client.get_run(result["mlflow_run_id"])
        assert parent.info.status == "FINISHED" and parent.data.tags["scanflow.run_id"] == doc["run_id"]
        step = client.get_run(result["steps"]["train"])
        assert step.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert [(m.step, m.value) for m in client.get_metric_history(step.info.run_id, "loss")] == \
            [(0, 1.0), (1, 0.5), (2, 1 / 3)]
        assert {a.path for a in client.list_artifacts(step.info.run_id)} == {"output.ipynb", "log.txt"}
        state = json.loads((Path(doc["run_dir"]) / "run.json").read_text())
        assert state["tracking"] == "synced" and state["mlflow_run_id"] == parent.info.run_id

        again = subprocess.run([*scanflow_command(), "runs", "sync", doc["run_id"], "--json"], cwd=project.root,
                               env=env, capture_output=True, text=True, timeout=120, check=False)
        assert again.returncode == 0 and run_json(again)["runs"][0]["delivered"] == 0
        exp = client.get_experiment_by_name("outage")
        assert len(client.search_runs([exp.experiment_id])) == 2  # nothing duplicated

        # with the tracker up, a run's buffer is forwarded as soon as the run ends
        live = subprocess.run([*scanflow_command(), "run", str(nb), "--json", "--no-cache"], cwd=project.root,
                              env=env, capture_output=True, text=True, timeout=220, check=False)
        now = run_json(live)
        assert now["status"] == "succeeded" and now["tracking"] == "synced" and now["warnings"] == [], now
        parent = client.get_run(now["mlflow_run_id"])
        assert parent.data.tags["scanflow.run_id"] == now["run_id"] and parent.info.status == "FINISHED"
        state = json.loads((Path(now["run_dir"]) / "run.json").read_text())
        step = client.get_run(state["steps"]["train"]["mlflow_run_id"])
        assert [m.value for m in client.get_metric_history(step.info.run_id, "loss")] == [1.0, 0.5, 1 / 3]

        unknown = subprocess.run([*scanflow_command(), "runs", "sync", "20000101T000000-000000"], cwd=project.root,
                                 env=env, capture_output=True, text=True, timeout=60, check=False)
        assert unknown.returncode == 2 and "no run" in unknown.stderr
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@pytest.mark.timeout(240)
def test_store_deleted_mid_run_is_reported_without_a_phantom_run_id(project: Any, tmp_path: Path) -> None:
    require("mlflow")
    started, hold = tmp_path / "started", tmp_path / "hold"
    hold.write_text("")
    nb = mlflow_notebook(project, "vanish", extra=hold_code(started, hold))
    proc = subprocess.Popen([*scanflow_command(), "run", str(nb), "--json"], cwd=project.root, env=project.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(started.exists, "the step to start")
    project.db.unlink()  # `rm -rf .scanflow/mlflow.db` while the step runs
    hold.unlink()
    out, err = proc.communicate(timeout=200)
    doc = run_json(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    assert doc["status"] == "succeeded", doc
    assert doc["mlflow_run_id"] is None, doc
    assert doc["tracking"] == "failed", doc
    assert {w["code"] for w in doc["warnings"]} & {"tracking-store-missing", "tracking-failed"}, doc
    state = json.loads((Path(doc["run_dir"]) / "run.json").read_text())
    assert state["mlflow_run_id"] is None and state["steps"]["train"]["mlflow_run_id"] is None


@pytest.mark.timeout(240)
def test_unusable_store_is_reported_and_the_run_still_succeeds(project: Any) -> None:
    (project.root / "not-a-folder").write_text("a file where the store's folder should be")
    uri = f"sqlite:///{project.root / 'not-a-folder' / 'mlflow.db'}"
    nb = project.write_notebook("plain", ["%load_ext scanflow_jupyter\n%scanflow_app plain",
                                          "%%executor one --outputs x\nx = 1"])
    proc = subprocess.run([*scanflow_command(), "run", str(nb), "--json"], cwd=project.root,
                          env={**project.env(), "MLFLOW_TRACKING_URI": uri}, capture_output=True, text=True,
                          timeout=200, check=False)
    doc = run_json(proc)
    assert proc.returncode == 0 and doc["status"] == "succeeded", doc
    assert doc["mlflow_run_id"] is None and doc["tracking"] == "failed", doc
    [warning] = [w for w in doc["warnings"] if w["code"] == "tracking-failed"]
    assert "not-a-folder/mlflow.db" in warning["message"] and warning["fix"], warning


# ---------------------------------------------------------------------------- finding 6 (MLflow part)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("noticed_by", ["runs", "resume", "server"])
def test_sigkilled_runner_gets_its_mlflow_runs_ended_killed(project: Any, tmp_path: Path, noticed_by: str) -> None:
    tracking = require("mlflow.tracking")
    started, hold = tmp_path / "started", tmp_path / "hold"
    hold.write_text("")
    nb = mlflow_notebook(project, "doomed", extra=hold_code(started, hold))
    proc = subprocess.Popen([*scanflow_command(), "run", str(nb), "--json"], cwd=project.root, env=project.env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(started.exists, "the step to start")
        [run_dir] = project.run_folders()
        state = json.loads((run_dir / "run.json").read_text())
        assert state["pid"] == proc.pid and state["status"] == "running"
        parent_id, step_id = state["mlflow_run_id"], state["steps"]["train"]["mlflow_run_id"]
        assert parent_id and step_id
        client = tracking.MlflowClient(project.tracking_uri())
        assert client.get_run(parent_id).info.status == "RUNNING"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        hold.unlink(missing_ok=True)
        if proc.poll() is None:
            proc.kill()

    if noticed_by == "runs":
        code, runs = project.cli_json("runs", "--json")
        assert code == 0
        [row] = [r for r in runs if r["run_id"] == run_dir.name]
        assert row["status"] == "interrupted", row
        assert "interrupted" in project.cli("runs").stdout
    elif noticed_by == "resume":
        code, doc = project.cli_json("run", str(nb), "--resume", run_dir.name, "--json")
        assert code == 0 and doc["status"] == "succeeded", doc
    else:  # a (re)started server extension: its RunManager looks in the background
        from scanflow_jupyter.server.run_manager import RunManager

        RunManager(project.root, project.home)
        wait_for(lambda: client.get_run(parent_id).info.status == "KILLED", "the server to end the run")
    assert client.get_run(parent_id).info.status == "KILLED"
    assert client.get_run(step_id).info.status == "KILLED"
    state = json.loads((run_dir / "run.json").read_text())
    assert state["status"] == "interrupted" and state["steps"]["train"]["status"] == "killed"
