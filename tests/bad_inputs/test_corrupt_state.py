"""Corrupt run state through the real `scanflow` CLI: `--resume` of a run whose run.json is
garbage, truncated or of the wrong schema exits 2 with one message (file, problem, fix) and runs
nothing; `scanflow runs` lists such runs as `unreadable`; a run whose runner was SIGKILLed is
`interrupted` in the table and in --json alike."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from scanflow_jupyter.data.store import RunState, RunStore, StepState

from .test_cli_exit import mlflow_runs

pytestmark = pytest.mark.timeout(300)

NOTEBOOK = ["%%executor ok --outputs result\nresult = 1"]
BROKEN = {  # run id -> (content of run.json, what the message says)
    "20260101T000001-garbag": (b"\x00\xffgarbage", "not valid JSON"),
    "20260101T000002-trunca": (b'{"run_id": "20260101T000002-trunca", "app": "a", "not', "truncated"),
    "20260101T000003-schema": (json.dumps({"run_id": "20260101T000003-schema", "app": "a", "notebook": "n",
                                           "created_at": 1.0, "steps": {"s": {"name": "s", "status": 3}}}).encode(),
                               "'status' of step 's' is a whole number"),
}


def cli(cmd: list[str], project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "SCANFLOW_HOME")}
    env["COLUMNS"] = "200"  # the table's run ids unabridged
    return subprocess.run([*cmd, *args], cwd=project, env=env, capture_output=True, text=True, timeout=240,
                          check=False)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    from tests.bad_inputs.cases import write_notebook

    write_notebook(tmp_path, NOTEBOOK, "nb.ipynb")
    store = RunStore(tmp_path / ".scanflow" / "runs")
    for run_id, (content, _) in BROKEN.items():
        store.run_dir(run_id).mkdir(parents=True)
        store.state_path(run_id).write_bytes(content)
    return tmp_path


@pytest.mark.parametrize("run_id", list(BROKEN))
def test_resume_of_an_unreadable_run_exits_2_with_file_problem_and_fix(project: Path, scanflow_cmd: list[str],
                                                                        run_id: str) -> None:
    state_file = project / ".scanflow" / "runs" / run_id / "run.json"
    plain = cli(scanflow_cmd, project, "run", "nb.ipynb", "--resume", run_id)
    detail = f"exit {plain.returncode}\nstdout:\n{plain.stdout}\nstderr:\n{plain.stderr}"
    assert plain.returncode == 2, detail
    assert "Traceback" not in plain.stderr + plain.stdout, detail
    assert str(state_file) in plain.stderr and BROKEN[run_id][1] in plain.stderr, detail
    assert "fix: this run cannot be shown or resumed: start a new run" in plain.stderr, detail

    as_json = cli(scanflow_cmd, project, "run", "nb.ipynb", "--resume", run_id, "--json")
    assert as_json.returncode == 2, as_json.stderr
    doc = json.loads(as_json.stdout)
    assert doc["status"] == "invalid"
    [message] = doc["messages"]
    assert message["code"] == "unreadable-run" and str(state_file) in message["text"] and message["fix"]
    # nothing ran, nothing was tracked
    assert sorted(p.name for p in (project / ".scanflow" / "runs").iterdir()) == sorted(BROKEN)
    assert mlflow_runs(project / ".scanflow") == 0


def test_runs_lists_unreadable_runs_and_dead_runners_alike_in_table_and_json(project: Path,
                                                                            scanflow_cmd: list[str]) -> None:
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    os.kill(victim.pid, signal.SIGKILL)  # the runner dies without writing anything
    victim.wait()
    dead = "20260101T000009-killed"
    RunStore(project / ".scanflow" / "runs").write_state(RunState(
        run_id=dead, app="nb", notebook=str(project / "nb.ipynb"), status="running", created_at=1767225609.0,
        pid=victim.pid, steps={"ok": StepState(name="ok", status="running", attempts=1)}))

    listed = cli(scanflow_cmd, project, "runs", "--json")
    assert listed.returncode == 0, listed.stderr
    by_id = {r["run_id"]: r for r in json.loads(listed.stdout)}
    assert set(by_id) == {*BROKEN, dead}
    assert by_id[dead]["status"] == "interrupted"
    for run_id, (_, problem) in BROKEN.items():
        assert by_id[run_id]["status"] == "unreadable" and problem in by_id[run_id]["reason"], by_id[run_id]
        assert by_id[run_id]["path"].endswith(f"{run_id}/run.json") and by_id[run_id]["fix"]

    table = cli(scanflow_cmd, project, "runs")
    assert table.returncode == 0, table.stderr
    rows = {line.split("│")[1].strip(): line for line in table.stdout.splitlines() if line.count("│") >= 5}
    assert set(rows) == {*BROKEN, dead}, table.stdout
    assert all("unreadable" in rows[run_id] for run_id in BROKEN)
    assert "interrupted" in rows[dead] and "running" not in rows[dead].split("│")[3], rows[dead]
