"""Trackers clean up after themselves: idle timeout, folder removal, `tracker ls` / `down --all`.

Real trackers (MLflow's app in `scanflow_jupyter.mlflow_server.app`), real `scanflow` subprocesses,
a per-test registry (`SCANFLOW_TRACKER_REGISTRY`) so no test sees or stops another's trackers,
and a short watchdog interval (`SCANFLOW_TRACKER_POLL`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import scanflow_command

pytestmark = pytest.mark.timeout(600)

POLL = "0.5"


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "registry"
    monkeypatch.setenv("SCANFLOW_TRACKER_REGISTRY", str(folder))
    monkeypatch.setenv("SCANFLOW_TRACKER_POLL", POLL)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return folder


def scanflow(folder: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SCANFLOW_HOME": str(folder / ".scanflow"), "PYTHONUNBUFFERED": "1"}
    return subprocess.run([*scanflow_command(), *args], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def scanflow_json(folder: Path, *args: str, timeout: float = 240) -> tuple[int, Any]:
    proc = scanflow(folder, *args, "--json", timeout=timeout)
    try:
        return proc.returncode, json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"`scanflow {' '.join(args)} --json` exited {proc.returncode} without JSON:\n"
                    f"{proc.stdout}\n{proc.stderr}")


def tracker_process(pid: int) -> bool:
    """Is `pid` still a (non-zombie) tracker process?"""
    from scanflow_jupyter.mlflow_server.registry import is_tracker_process

    return is_tracker_process(pid)


def wait_gone(pid: int, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while tracker_process(pid):
        if time.monotonic() > deadline:
            pytest.fail(f"tracker pid {pid} still runs {timeout:.0f}s after {what}")
        time.sleep(0.2)


def project_folder(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir()
    return folder


@pytest.fixture
def cleanup() -> Any:
    """Stops (SIGKILL, by pid) whatever tracker a failed test left behind."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if tracker_process(pid):
            os.killpg(pid, 9)


def test_idle_tracker_stops_unless_a_live_process_holds_a_lease(tmp_path: Path, registry: Path, cleanup: list[int]) -> None:
    from scanflow_jupyter.mlflow_server.registry import take_lease

    folder = project_folder(tmp_path, "idle")
    home = folder / ".scanflow"
    holder = subprocess.Popen(["sleep", "600"])  # a live process that holds a lease, like a docker run
    try:
        take_lease(home, pid=holder.pid)
        code, up = scanflow_json(folder, "tracker", "up", "--idle-timeout", "2")
        assert code == 0, up
        cleanup.append(up["pid"])
        assert up["idle_timeout"] == 2
        # idle for well over the timeout while the lease is held: still serving
        deadline = time.monotonic() + 2 + 6 * float(POLL)
        while time.monotonic() < deadline:
            time.sleep(0.5)
        assert tracker_process(up["pid"]), (home / "tracker.log").read_text()
        code, status = scanflow_json(folder, "tracker", "status")  # a probe: does not count as activity
        assert code == 0 and status["healthy"], status
    finally:
        holder.kill()
        holder.wait()
    wait_gone(up["pid"], "its lease holder died and it went idle")
    log = (home / "tracker.log").read_text()
    assert "stopping: no request for 2s (idle timeout)" in log, log
    assert not (home / "tracker.json").exists()
    assert list(home.glob("tracker-lease.*")) == []  # the dead holder's lease was cleaned up
    assert not registry.exists() or list(registry.glob("*.json")) == []
    code, status = scanflow_json(folder, "tracker", "status")
    assert code == 1 and status["running"] is False


def test_tracker_stops_when_its_folder_is_removed(tmp_path: Path, registry: Path, cleanup: list[int]) -> None:
    folder = project_folder(tmp_path, "doomed")
    code, up = scanflow_json(folder, "tracker", "up")  # no idle timeout: only the folder stops it
    assert code == 0, up
    cleanup.append(up["pid"])
    with urllib.request.urlopen(f"{up['url']}/health", timeout=10) as resp:
        assert resp.status == 200
    shutil.rmtree(folder)
    wait_gone(up["pid"], f"its folder {folder} was removed")
    assert list(registry.glob("*.json")) == []


def test_ls_and_down_all_across_folders(tmp_path: Path, registry: Path, cleanup: list[int]) -> None:
    a, b = project_folder(tmp_path, "a"), project_folder(tmp_path, "b")
    code, up_a = scanflow_json(a, "tracker", "up", "--idle-timeout", "3600")
    assert code == 0, up_a
    cleanup.append(up_a["pid"])
    code, up_b = scanflow_json(b, "tracker", "up")
    assert code == 0, up_b
    cleanup.append(up_b["pid"])
    assert up_a["url"] != up_b["url"]
    # stale entries: a dead pid and a garbage file are pruned by `ls`
    (registry / "999999999.json").write_text(json.dumps({**_entry_of(registry, up_b["pid"]), "pid": 999999999}))
    (registry / "garbage.json").write_text("{not json")

    code, listed = scanflow_json(tmp_path, "tracker", "ls")  # from any folder
    assert code == 0
    rows = {t["pid"]: t for t in listed["trackers"]}
    assert set(rows) == {up_a["pid"], up_b["pid"]}, listed
    assert rows[up_a["pid"]]["folder"] == str(a) and rows[up_b["pid"]]["folder"] == str(b)
    assert rows[up_a["pid"]]["url"] == up_a["url"] and rows[up_a["pid"]]["idle_timeout"] == 3600
    assert rows[up_b["pid"]]["idle_timeout"] == 0
    assert all(r["idle_seconds"] >= 0 and r["started_at"] > 0 for r in rows.values())
    assert sorted(p.name for p in registry.glob("*.json")) == sorted(f"{p}.json" for p in rows)
    assert registry.stat().st_mode & 0o777 == 0o700
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in registry.glob("*.json"))
    table = scanflow(tmp_path, "tracker", "ls")
    assert str(a) in table.stdout and str(b) in table.stdout and "never" in table.stdout, table.stdout

    code, down = scanflow_json(tmp_path, "tracker", "down", "--all")
    assert code == 0
    assert sorted(e["pid"] for e in down["stopped"]) == sorted(rows)
    for pid in rows:
        assert not tracker_process(pid)
    assert not (a / ".scanflow" / "tracker.json").exists() and not (b / ".scanflow" / "tracker.json").exists()
    code, listed = scanflow_json(tmp_path, "tracker", "ls")
    assert code == 0 and listed["trackers"] == []


def _entry_of(registry: Path, pid: int) -> dict[str, Any]:
    return json.loads((registry / f"{pid}.json").read_text())


def test_tracker_is_one_lean_process_that_serves_the_store(tmp_path: Path, registry: Path, cleanup: list[int]) -> None:
    folder = project_folder(tmp_path, "lean")
    code, up = scanflow_json(folder, "tracker", "up")
    assert code == 0, up
    cleanup.append(up["pid"])
    try:
        session = [int(p) for p in subprocess.run(["ps", "-o", "pid=", "--sid", str(up["pid"])], capture_output=True,
                                                  text=True, check=True).stdout.split()]
        assert session == [up["pid"]], "the tracker should be one process (no uvicorn/job-runner/huey children)"
        import mlflow

        client = mlflow.MlflowClient(tracking_uri=up["url"])
        exp = client.create_experiment("lean")
        run = client.create_run(exp)
        client.log_metric(run.info.run_id, "m", 1.5)
        artifact = tmp_path / "note.txt"
        artifact.write_text("hello")
        client.log_artifact(run.info.run_id, str(artifact))
        # the same store on disk, the artifact under <home>/mlartifacts
        local = mlflow.MlflowClient(tracking_uri=up["backend_store_uri"])
        assert local.get_run(run.info.run_id).data.metrics == {"m": 1.5}
        assert list((folder / ".scanflow" / "mlartifacts").rglob("note.txt"))
    finally:
        scanflow(folder, "tracker", "down")
    assert not tracker_process(up["pid"])
