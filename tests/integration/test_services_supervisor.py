"""`scanflow services up|down|ls`: background services supervised like agents (restart on crash)."""

from __future__ import annotations

import os
import signal
import stat
from typing import Any

import pytest

from tests.services_support import CUSTOM_SERVICE, Http, pid_gone, wait_for

BROKEN = "%%service broken\ndef predict(inputs):\n    return inputs\nraise RuntimeError('cannot start')\n"


@pytest.fixture
def notebook(project: Any, require: Any) -> Any:
    require("uvicorn")
    require("pyarrow")
    nb = project.write_notebook("svc", ["%%setup\nWEIGHT = 1.0", CUSTOM_SERVICE, BROKEN])
    yield nb
    project.cli("services", "down", "--all", timeout=60)


def _row(rows: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(r for r in rows if r["name"] == name)


def test_up_ls_restart_on_crash_down(project: Any, notebook: Any) -> None:
    code, doc = project.cli_json("services", "up", str(notebook), "--json", timeout=180)
    assert code == 1, doc  # one service failed to load, the other runs
    scorer, broken = _row(doc["services"], "scorer"), _row(doc["services"], "broken")
    assert scorer["state"] == "running" and scorer["url"].startswith("http://127.0.0.1:")
    assert broken["state"] == "failed" and "cannot start" in broken["error"] and "cell 3" in broken["error"]
    state_file = project.home / "services.json"
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600

    http = Http(scorer["url"])
    assert http.post("/predict", {"inputs": [{"age": 1, "income": 2}]}) == (
        200, {"predictions": [{"score": 3.0, "loads": 1}]})

    # crash: the supervisor restarts it on the same port (the socket outlives the process)
    os.kill(scorer["pid"], signal.SIGKILL)
    wait_for(lambda: pid_gone(scorer["pid"]), 30, "the service process to die")

    def restarted() -> Any:
        code, rows = project.cli_json("services", "ls", "--json")
        row = _row(rows, "scorer")
        return row if row["state"] == "running" and row["restarts"] == 1 and row["pid"] != scorer["pid"] else None

    again = wait_for(restarted, 90, "the restarted service")
    assert again["url"] == scorer["url"]
    assert http.post("/predict", {"inputs": [{"age": 1, "income": 2}]})[0] == 200
    rows = project.cli_json("services", "ls", "--json")[1]
    assert _row(rows, "broken")["state"] == "failed" and _row(rows, "broken")["restarts"] == 0  # not restarted

    proc = project.cli("services", "ls")
    assert "svc/scorer" in proc.stdout and "running ×1" in proc.stdout

    code, doc = project.cli_json("services", "down", str(notebook), "--json", timeout=60)
    assert code == 0 and sorted(doc["stopped"]) == ["svc/broken", "svc/scorer"]
    wait_for(lambda: pid_gone(again["pid"]), 30, "the service to stop")
    assert project.cli_json("services", "ls", "--json")[1] == []


def test_up_with_a_port_and_bad_names(project: Any, notebook: Any) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, doc = project.cli_json("services", "up", str(notebook), "scorer", "--port", str(port), "--json", timeout=180)
    assert code == 0, doc
    assert [r["url"] for r in doc["services"]] == [f"http://127.0.0.1:{port}"]
    proc = project.cli("services", "up", str(notebook), "--port", str(port))
    assert proc.returncode == 2 and "--port needs one service" in proc.stderr
    proc = project.cli("services", "up", str(notebook), "nosuch")
    assert proc.returncode == 2 and "no service 'nosuch'" in proc.stderr

    with socket.socket() as taken:  # a port someone else holds
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        code, doc = project.cli_json("services", "up", str(notebook), "scorer", "--port", str(taken.getsockname()[1]),
                                     "--json", timeout=120)
    assert code == 1 and doc["services"][0]["state"] == "failed"
    assert "cannot listen on port" in doc["services"][0]["error"]
