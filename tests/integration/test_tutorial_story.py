"""`make run`'s story (scripts/run_tutorial.py), played for real: the pipeline, `scanflow services
up`, `scanflow agents up`, HTTP traffic, the monitor's drift check, the planner's retrain, the
alias move and the hot swap — then nothing of it is left running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def _alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, TypeError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def _processes_of(workdir: Path) -> list[str]:
    """Command lines of live processes that name the story's folder (supervisors, services, agents)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):
            continue
        if entry.name.isdigit() and str(workdir) in cmdline and int(entry.name) != os.getpid():
            found.append(cmdline)
    return found


def test_the_story_retrains_promotes_swaps_and_recovers(tmp_path: Path, require: Any,
                                                         scanflow_cmd: list[str]) -> None:
    for module in ("mlflow", "sklearn", "scipy", "uvicorn", "pyarrow", "matplotlib", "httpx"):
        require(module)
    workdir = tmp_path / "story"
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "SCANFLOW_HOME")}
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "run_tutorial.py"), "--workdir", str(workdir)],
                          cwd=tmp_path, env=env, text=True, capture_output=True, timeout=540)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    for event in ("trained: mnist version 1", "serving: digits", "hot swap: digits now answers with v2",
                  "planner.retrain", "recovered:", "stopped agents (exit 0)", "stopped services (exit 0)"):
        assert event in out, f"{event!r} not narrated:\n{out[-6000:]}"

    summary = json.loads((workdir / "story.json").read_text())
    assert summary["first_champion"] == "1" and summary["final_champion"] == "2", summary["events"]
    assert summary["clean_accuracy"] and min(summary["clean_accuracy"]) > 0.85
    assert summary["shifted_accuracy_before"] < 0.6
    assert summary["shifted_accuracy_after"] > summary["shifted_accuracy_before"] + 0.15, summary
    assert any(d["drift_share"] > 0.25 for d in summary["drift"]), summary["drift"]
    shift_t = next(e["t"] for e in summary["events"] if e["text"].startswith("sending shifted"))
    assert all(d["drift_share"] < 0.25 for d in summary["drift"] if d["t"] < shift_t), summary["drift"]  # clean

    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{workdir / '.scanflow' / 'mlflow.db'}")
    champion = client.get_model_version_by_alias("mnist", "champion")
    assert str(champion.version) == "2"
    assert client.get_run(champion.run_id).data.params["shifted"] == "0.5"  # the planner's retrain
    assert client.get_model_version("mnist", "2").run_id == champion.run_id
    png = Path(summary["png"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {"story.png", "story.json"} <= {a.path for a in client.list_artifacts(summary["mlflow_run_id"])}
    agents = client.get_experiment_by_name("mnist-agents")
    calls = client.search_runs([agents.experiment_id], max_results=1000)
    names = {r.info.run_name for r in calls}
    assert {"monitor.inference_drift", "planner.retrain"} <= names
    retrains = [r for r in calls if r.info.run_name == "planner.retrain"
                and '"retrained": true' in r.data.tags.get("scanflow.result", "")]
    assert len(retrains) == 1, [r.data.tags.get("scanflow.result") for r in calls]

    # everything the story started is stopped
    home_env = {**env, "SCANFLOW_HOME": str(workdir / ".scanflow")}
    for kind in ("services", "agents"):
        ls = subprocess.run([*scanflow_cmd, kind, "ls", "--json"], cwd=workdir, env=home_env, text=True,
                            capture_output=True, timeout=60)
        rows = json.loads(ls.stdout or "[]")
        rows = rows.get(kind, rows) if isinstance(rows, dict) else rows
        running = [r for r in rows if r.get("state") in ("running", "starting") or _alive(r.get("pid"))]
        assert running == [], (kind, rows)
    assert _processes_of(workdir) == []


def test_ctrl_c_during_the_story_stops_every_service_and_agent(tmp_path: Path, require: Any,
                                                               scanflow_cmd: list[str]) -> None:
    import signal
    import time

    for module in ("mlflow", "sklearn", "scipy", "uvicorn", "pyarrow", "httpx"):
        require(module)
    workdir = tmp_path / "story"
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "SCANFLOW_HOME")}
    log = tmp_path / "story.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, str(REPO / "scripts" / "run_tutorial.py"), "--workdir", str(workdir)],
                                cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 400
        while "sending shifted digits" not in log.read_text() and proc.poll() is None:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        assert proc.poll() is None, log.read_text()
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole foreground group, twice
        time.sleep(0.3)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=300) == 130, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "interrupted: stopping everything" in text and "stopped services (exit 0)" in text, text
    home_env = {**env, "SCANFLOW_HOME": str(workdir / ".scanflow")}
    for kind in ("services", "agents"):
        ls = subprocess.run([*scanflow_cmd, kind, "ls", "--json"], cwd=workdir, env=home_env, text=True,
                            capture_output=True, timeout=60)
        rows = json.loads(ls.stdout or "[]")
        rows = rows.get(kind, rows) if isinstance(rows, dict) else rows
        assert [r for r in rows if r.get("state") in ("running", "starting")] == [], (kind, rows)
    assert _processes_of(workdir) == []
