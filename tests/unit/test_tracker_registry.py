"""The per-user tracker registry and leases: private files, pruning, leases of live processes only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from scanflow_jupyter import mlflow_server as tracker
from scanflow_jupyter.mlflow_server import registry


@pytest.fixture
def reg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SCANFLOW_TRACKER_REGISTRY", str(tmp_path / "reg"))
    return tmp_path / "reg"


def test_registry_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SCANFLOW_TRACKER_REGISTRY", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert registry.registry_dir() == tmp_path / "cache" / "scanflow" / "trackers"


def test_entries_are_private_and_pruned_when_not_a_tracker(reg: Path, tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "60"])  # alive, but not a tracker process
    try:
        entry = registry.Entry(pid=sleeper.pid, port=1, url="http://127.0.0.1:1", home=str(tmp_path / ".scanflow"),
                               backend_store_uri="sqlite:///x.db", log="l", started_at=1.0, idle_timeout=0)
        path = registry.write(entry)
        assert path.stat().st_mode & 0o777 == 0o600 and reg.stat().st_mode & 0o777 == 0o700
        assert json.loads(path.read_text())["pid"] == sleeper.pid
        assert entry.to_dict()["folder"] == str(tmp_path)
        assert registry.entries(prune=False) == []  # a recycled pid is not a tracker
        assert path.exists()
        assert registry.entries() == [] and not path.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_leases_count_only_while_their_process_lives(tmp_path: Path) -> None:
    home = tmp_path / ".scanflow"
    holder = subprocess.Popen(["sleep", "60"])
    mine = registry.take_lease(home)
    theirs = registry.take_lease(home, pid=holder.pid)
    assert mine.stat().st_mode & 0o777 == 0o600
    assert registry.leases_held(home) == 2
    holder.kill()
    holder.wait()
    assert registry.leases_held(home) == 1 and not theirs.exists()  # the dead holder's lease is removed
    registry.release_lease(mine)
    assert registry.leases_held(home) == 0


def test_leases_name_pid_and_create_time_and_older_tick_leases_still_count(tmp_path: Path) -> None:
    home = tmp_path / ".scanflow"
    holder = subprocess.Popen(["sleep", "60"])
    try:
        doc = json.loads(registry.take_lease(home, pid=holder.pid).read_text())
        assert doc["pid"] == holder.pid and abs(doc["create_time"] - psutil.Process(holder.pid).create_time()) < 0.01
        reused = home / f"{registry.LEASE_PREFIX}{holder.pid}.reused"  # same pid, another process
        reused.write_text(json.dumps({"pid": holder.pid, "create_time": doc["create_time"] - 3600}))
        older = home / f"{registry.LEASE_PREFIX}{holder.pid}.older"
        if sys.platform.startswith("linux"):  # written by earlier versions: start ticks since boot
            ticks = Path(f"/proc/{holder.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
            older.write_text(json.dumps({"pid": holder.pid, "start": ticks}))
        assert registry.leases_held(home) == (2 if sys.platform.startswith("linux") else 1)
        assert not reused.exists()
    finally:
        holder.kill()
        holder.wait()
    assert registry.leases_held(home) == 0 and not older.exists()


def test_idle_timeout_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCANFLOW_TRACKER_IDLE_TIMEOUT", raising=False)
    assert tracker.auto_idle_timeout() == tracker.DEFAULT_IDLE_TIMEOUT == 600
    monkeypatch.setenv("SCANFLOW_TRACKER_IDLE_TIMEOUT", "2.5")
    assert tracker.auto_idle_timeout() == 2.5
    monkeypatch.setenv("SCANFLOW_TRACKER_IDLE_TIMEOUT", "ten minutes")
    with pytest.raises(tracker.TrackerError, match="SCANFLOW_TRACKER_IDLE_TIMEOUT='ten minutes'.*Fix"):
        tracker.auto_idle_timeout()
