"""The warm recorder (`runtime/recorder_daemon.py`) against real processes and a real MLflow store.

Each test gets its own daemon: the daemon's key hashes PYTHONPATH, so a unique (empty) folder on
PYTHONPATH gives a unique socket; `SCANFLOW_RECORDER_IDLE` makes it exit soon after the test.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from scanflow_jupyter.runtime import recorder_daemon
from scanflow_jupyter.runtime.recorder_process import RecorderProcess
from scanflow_jupyter.tracking import default_artifact_root, resolve_tracking_uri

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

APP = "warm-demo"
BOUND_S = 120  # a bound against hanging, never a timing assertion


@pytest.fixture
def own_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    unique = tmp_path / "pythonpath"
    unique.mkdir()
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(unique), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv(recorder_daemon.IDLE_ENV, "20")
    monkeypatch.delenv(recorder_daemon.SWITCH_ENV, raising=False)
    monkeypatch.delenv("SCANFLOW_PORTABLE", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    path = recorder_daemon.socket_path()
    assert path is not None
    yield path
    for proc in _daemons(path):
        proc.kill()


def _daemons(path: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if str(path) in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


def _warm_recorder(uri: str, root: str) -> RecorderProcess:
    """A RecorderProcess from the daemon (the first asks start it; bounded wait for it to listen)."""
    deadline = time.monotonic() + BOUND_S
    while True:
        rp = RecorderProcess(uri, root, warm=True)
        if rp.warm:
            return rp
        rp.close()
        assert time.monotonic() < deadline, "the warm recorder never started"
        time.sleep(0.5)


def _store(folder: Path) -> tuple[str, str]:
    home = folder / ".scanflow"
    return resolve_tracking_uri(home), default_artifact_root(home)


def test_warm_children_record_each_run_into_its_own_store(own_daemon: Path, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    first = _warm_recorder(*_store(tmp_path / "a"))
    children = {first.pid}
    parent = first.start_pipeline(APP, "run-1", "local", tmp_path / "p.ipynb", {"alpha": 1})
    step = first.start_step(parent, APP, "run-1", "train", time.time())
    log = tmp_path / "log.txt"
    log.write_text("trained\n", encoding="utf-8")
    first.finish_step(step, "succeeded", 1, False, 0.5, [log])
    first.finish_pipeline(parent, "succeeded", 0.7)
    first.close()
    assert first._proc.returncode == 0 and not first.log_path.exists()

    second = RecorderProcess(*_store(tmp_path / "b"), warm=True)  # the daemon is up now
    assert second.warm and second.pid not in children, "each run gets its own forked child"
    parent_b = second.start_pipeline(APP, "run-2", "local", tmp_path / "p.ipynb", {})
    second.finish_pipeline(parent_b, "failed", 0.1)
    second.close()

    a = MlflowClient(tracking_uri=_store(tmp_path / "a")[0])
    run = a.get_run(parent)
    assert run.info.status == "FINISHED" and run.data.params == {"alpha": "1"}
    nested = a.get_run(step)
    assert nested.info.status == "FINISHED" and nested.data.tags["mlflow.parentRunId"] == parent
    assert [f.path for f in a.list_artifacts(step)] == ["log.txt"]
    b = MlflowClient(tracking_uri=_store(tmp_path / "b")[0])
    assert b.get_run(parent_b).info.status == "FAILED"
    with pytest.raises(Exception):  # noqa: B017,PT011 - run-2 never reached store a
        a.get_run(parent_b)


def test_the_warm_child_takes_the_runs_environment(own_daemon: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The forked child has the run's variables (credentials, MLFLOW_*) and working folder, not
    the daemon's."""
    from mlflow.tracking import MlflowClient

    _warm_recorder(*_store(tmp_path / "warmup")).close()
    monkeypatch.setenv("LOGNAME", "warm-run-user")  # getpass.getuser(): the runs' mlflow.user tag
    rp = RecorderProcess(*_store(tmp_path / "c"), warm=True)
    assert rp.warm
    assert psutil.Process(rp.pid).cwd() == str(tmp_path)
    parent = rp.start_pipeline(APP, "run-3", "local", tmp_path / "p.ipynb", {})
    rp.finish_pipeline(parent, "succeeded", 0.1)
    rp.close()
    run = MlflowClient(tracking_uri=_store(tmp_path / "c")[0]).get_run(parent)
    assert run.data.tags["mlflow.user"] == "warm-run-user"


def test_the_warm_child_exits_when_its_run_dies(own_daemon: Path, tmp_path: Path) -> None:
    _warm_recorder(*_store(tmp_path / "warmup")).close()
    uri, root = _store(tmp_path / "d")
    code = textwrap.dedent(f"""
        import time
        from scanflow_jupyter.runtime.recorder_process import RecorderProcess
        rp = RecorderProcess({uri!r}, {root!r}, warm=True)
        print(rp.pid, rp.warm, flush=True)
        time.sleep(600)
    """)
    run = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        assert run.stdout is not None
        pid, warm = run.stdout.readline().split()
        child = int(pid)
        assert warm == "True" and psutil.pid_exists(child)
    finally:
        run.send_signal(signal.SIGKILL)  # no clean-up code runs in the run
        run.wait()
    deadline = time.monotonic() + BOUND_S
    while psutil.pid_exists(child) and psutil.Process(child).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the warm child outlived its run"
        time.sleep(0.1)


def test_a_folder_that_is_not_private_is_never_used(tmp_path: Path) -> None:
    """Another local user could have made the folder first (or a symlink to theirs): then there is
    no warm recorder here, and no socket of theirs to talk to."""
    mine = tmp_path / "fresh"
    mine.mkdir()
    made = recorder_daemon.private_dir(mine)
    assert made is not None and stat.S_IMODE(os.lstat(made).st_mode) == 0o700
    shared = tmp_path / "shared"
    (shared / f"scanflow-{os.getuid()}").mkdir(parents=True)
    os.chmod(shared / f"scanflow-{os.getuid()}", 0o777)
    assert recorder_daemon.private_dir(shared) is None
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / f"scanflow-{os.getuid()}").symlink_to(made)
    assert recorder_daemon.private_dir(linked) is None


def test_switched_off_means_a_spawned_child(own_daemon: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(recorder_daemon.SWITCH_ENV, "0")
    rp = RecorderProcess(*_store(tmp_path / "e"), warm=True)
    assert not rp.warm and isinstance(rp._proc, subprocess.Popen)
    rp.close()
    assert _daemons(own_daemon) == []


def test_the_warm_up_store_is_gone_before_the_daemon_serves(own_daemon: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon records a throwaway run once (so its children start warm), in its own temp folder:
    nothing of it is left on disk or open in the daemon (nor in the children it forks)."""
    scratch = tmp_path / "daemon-tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))  # the daemon inherits the starting run's environment
    rp = _warm_recorder(*_store(tmp_path / "a"))
    try:
        [daemon] = [p for p in _daemons(own_daemon) if p.pid != rp.pid and p.ppid() == 1]
        assert list(scratch.iterdir()) == [], "the warm-up folder was left behind"
        for proc in (daemon, psutil.Process(rp.pid)):
            held = [f.path for f in proc.open_files() if "scanflow-recorder-warm-" in f.path]
            assert held == [], f"{proc.pid} still holds the warm-up store: {held}"
        parent = rp.start_pipeline(APP, "run-1", "local", tmp_path / "p.ipynb", {})
        rp.finish_pipeline(parent, "succeeded", 0.1)
    finally:
        rp.close()
    assert rp._proc.returncode == 0
