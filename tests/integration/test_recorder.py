"""Integration tests for Recorder and RecorderProcess against a real MLflow sqlite store."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from scanflow_jupyter.runtime.recorder_process import RecorderProcess
from scanflow_jupyter.tracking import (
    Recorder,
    Tracker,
    TrackingError,
    default_artifact_root,
    resolve_tracking_uri,
)

pytestmark = pytest.mark.integration

APP = "iris-demo"


class Store:
    """A fresh project folder with the default tracking store."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / ".scanflow"
        self.uri = resolve_tracking_uri(self.home)
        self.artifact_root = default_artifact_root(self.home)

    def client(self):  # noqa: ANN201 - MlflowClient, imported lazily
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.uri)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("SCANFLOW_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    tmp = tmp_path / "tmp"  # recorder logs kept after failures land here, not in /tmp
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return Store(tmp_path)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A notebook in a git repository, plus a step's output files."""
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "pipeline.ipynb").write_text("{}", encoding="utf-8")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-C", str(proj)]
    try:
        subprocess.run(["git", "init", "-q", str(proj)], check=True)
        subprocess.run([*git, "add", "."], check=True)
        subprocess.run([*git, "commit", "-q", "-m", "init"], check=True)
    except (OSError, subprocess.CalledProcessError):
        pass  # no git: the commit tag is simply absent
    for step in ("prepare", "train"):
        (proj / step).mkdir()
        (proj / step / "output.ipynb").write_text('{"cells": []}', encoding="utf-8")
        (proj / step / "log.txt").write_text(f"{step} log\n", encoding="utf-8")
    return proj


def _make_recorder(store: Store) -> Tracker:
    return Recorder(store.uri, store.artifact_root)


def _make_process(store: Store) -> Tracker:
    return RecorderProcess(store.uri, store.artifact_root)


FACTORIES: dict[str, Callable[[Store], Tracker]] = {
    "in-process": _make_recorder,
    "child-process": _make_process,
}


@pytest.fixture(params=sorted(FACTORIES))
def tracker(request: pytest.FixtureRequest, store: Store) -> Iterator[Tracker]:
    t = FACTORIES[request.param](store)
    yield t
    with contextlib.suppress(TrackingError):  # tests expecting failures check close() themselves
        t.close()


def test_pipeline_with_two_steps(tracker: Tracker, store: Store, project: Path) -> None:
    params = {"lr": 0.1, "epochs": 3, "notes": "x" * 7000}
    parent = tracker.start_pipeline(APP, "run-1", "local", project / "pipeline.ipynb", params)
    prepare = tracker.start_step(parent, APP, "run-1", "prepare")
    train = tracker.start_step(parent, APP, "run-1", "train")

    client = store.client()
    assert client.get_run(prepare).info.status == "RUNNING"  # exists before the step executes

    tracker.finish_step(
        prepare,
        "succeeded",
        attempts=1,
        cache_hit=False,
        duration_s=1.25,
        artifacts=[project / "prepare" / "output.ipynb", project / "prepare" / "log.txt"],
    )
    tracker.finish_step(
        train,
        "failed",
        attempts=2,
        cache_hit=False,
        duration_s=0.5,
        artifacts=[str(project / "train" / "output.ipynb"), str(project / "train" / "log.txt")],
        error={"cell": 4, "ename": "ValueError", "evalue": "bad input"},
    )
    tracker.finish_pipeline(parent, "killed", duration_s=2.0)
    tracker.close()

    exp = client.get_experiment_by_name(APP)
    assert exp is not None
    assert exp.artifact_location.startswith(Path(store.artifact_root).as_uri())

    p = client.get_run(parent)
    assert p.info.experiment_id == exp.experiment_id
    assert p.info.run_name == "run-1"
    assert p.info.status == "KILLED"
    tags = p.data.tags
    assert tags["scanflow.app"] == APP
    assert tags["scanflow.run_id"] == "run-1"
    assert tags["scanflow.backend"] == "local"
    assert tags["scanflow.kind"] == "pipeline"
    assert tags["scanflow.status"] == "killed"
    assert tags["mlflow.source.name"] == str(project / "pipeline.ipynb")
    if (project / ".git").is_dir():
        head = subprocess.run(
            ["git", "-C", str(project), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        assert tags["mlflow.source.git.commit"] == head
    assert p.data.params["lr"] == "0.1"
    assert p.data.params["epochs"] == "3"
    assert len(p.data.params["notes"]) == 6000
    assert p.data.metrics["scanflow.duration_s"] == 2.0

    runs = client.search_runs(
        [exp.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent}'"
    )
    assert {r.info.run_id for r in runs} == {prepare, train}

    a = client.get_run(prepare)
    assert a.info.run_name == "prepare"
    assert a.info.status == "FINISHED"
    assert a.data.tags["mlflow.parentRunId"] == parent
    assert a.data.tags["scanflow.kind"] == "step"
    assert a.data.tags["scanflow.step"] == "prepare"
    assert a.data.tags["scanflow.run_id"] == "run-1"
    assert a.data.tags["scanflow.status"] == "succeeded"
    assert a.data.tags["scanflow.attempt"] == "1"
    assert a.data.tags["scanflow.cache_hit"] == "false"
    assert a.data.metrics["scanflow.duration_s"] == 1.25
    assert sorted(f.path for f in client.list_artifacts(prepare)) == ["log.txt", "output.ipynb"]

    b = client.get_run(train)
    assert b.info.status == "FAILED"
    assert b.data.tags["scanflow.attempt"] == "2"
    assert b.data.tags["scanflow.error.cell"] == "5"  # index 4, shown 1-based
    assert b.data.tags["scanflow.error.ename"] == "ValueError"
    assert b.data.tags["scanflow.error.evalue"] == "bad input"
    assert sorted(f.path for f in client.list_artifacts(train)) == ["log.txt", "output.ipynb"]


def test_cached_step_records_its_origin(tracker: Tracker, store: Store, project: Path) -> None:
    parent = tracker.start_pipeline(APP, "run-2", "local", project / "pipeline.ipynb", {})
    step = tracker.start_step(parent, APP, "run-2", "prepare")
    tracker.finish_step(step, "cached", 1, True, None, [], None, "run-1")
    tracker.finish_pipeline(parent, "succeeded", None)
    tracker.close()

    run = store.client().get_run(step)
    assert run.info.status == "FINISHED"
    assert run.data.tags["scanflow.cache_hit"] == "true"
    assert run.data.tags["scanflow.cached_from"] == "run-1"
    assert run.data.tags["scanflow.status"] == "cached"
    assert "scanflow.duration_s" not in run.data.metrics
    assert store.client().get_run(parent).info.status == "FINISHED"


def test_missing_artifact_still_terminates_the_run(
    tracker: Tracker, store: Store, project: Path
) -> None:
    parent = tracker.start_pipeline(APP, "run-3", "local", project / "pipeline.ipynb", {})
    step = tracker.start_step(parent, APP, "run-3", "prepare")
    missing = project / "prepare" / "nope.txt"
    with pytest.raises(TrackingError, match="nope.txt"):
        tracker.finish_step(
            step, "succeeded", 1, False, 0.1, [project / "prepare" / "log.txt", missing]
        )
        tracker.close()  # RecorderProcess reports child-side failures here

    run = store.client().get_run(step)
    assert run.info.status == "FINISHED"
    assert run.data.tags["scanflow.status"] == "succeeded"
    assert [f.path for f in store.client().list_artifacts(step)] == ["log.txt"]


def test_step_code_logs_into_the_step_run(
    store: Store, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """User code inside a step resumes the nested run through MLFLOW_RUN_ID; our status wins."""
    recorder = Recorder(store.uri, store.artifact_root)
    parent = recorder.start_pipeline(APP, "run-4", "local", project / "pipeline.ipynb", {})
    step = recorder.start_step(parent, APP, "run-4", "train")
    code = textwrap.dedent(
        """
        import mlflow
        with mlflow.start_run():
            mlflow.log_metric("accuracy", 0.9)
        """
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": store.uri, "MLFLOW_RUN_ID": step}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    recorder.finish_step(step, "failed", 1, False, 0.3, [], {"cell": 2, "ename": "E", "evalue": ""})
    recorder.finish_pipeline(parent, "failed", 0.4)

    run = store.client().get_run(step)
    assert run.data.metrics["accuracy"] == 0.9
    assert run.info.status == "FAILED"
    assert run.data.tags["mlflow.parentRunId"] == parent


def test_experiment_is_reused_across_recorders(store: Store, project: Path) -> None:
    first = Recorder(store.uri, store.artifact_root)
    second = Recorder(store.uri, store.artifact_root)
    assert first.experiment_id(APP) == second.experiment_id(APP)
    assert first.experiment_id(APP) == first.experiment_id(APP)


def test_recorder_process_reports_readiness(store: Store) -> None:
    rp = RecorderProcess(store.uri, store.artifact_root)
    seconds = rp.wait_ready()
    assert seconds is not None and seconds > 0
    rp.close()
    assert rp._proc.returncode == 0
    assert not rp.log_path.exists()  # a clean close removes the child's log


def test_child_exits_when_its_parent_dies(store: Store, tmp_path: Path) -> None:
    parent_code = textwrap.dedent(
        f"""
        import sys, time
        from scanflow_jupyter.runtime.recorder_process import RecorderProcess
        rp = RecorderProcess({store.uri!r}, {store.artifact_root!r})
        print(rp.pid, flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        assert _alive(child_pid)
    finally:
        parent.kill()  # SIGKILL: no cleanup code runs in the parent
        parent.wait()
    deadline = time.monotonic() + 120  # a bound against hanging, not a timing assertion
    while _alive(child_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    still_alive = _alive(child_pid)
    if still_alive:
        os.kill(child_pid, signal.SIGKILL)
    assert not still_alive, "the recorder child outlived its parent"
    assert list((tmp_path / "tmp").iterdir()) == []  # the orphaned child removed its log


def _alive(pid: int) -> bool:
    """Is `pid` a live process (zombies count as gone)?"""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return state not in ("Z", "X")


def test_child_death_is_reported(store: Store, project: Path) -> None:
    rp = RecorderProcess(store.uri, store.artifact_root)
    parent = rp.start_pipeline(APP, "run-5", "local", project / "pipeline.ipynb", {})
    os.kill(rp.pid, signal.SIGKILL)
    rp._proc.wait()
    with pytest.raises(TrackingError, match="recorder process exited with code -9"):
        rp.start_step(parent, APP, "run-5", "prepare")
    with pytest.raises(TrackingError):
        rp.close()


@pytest.mark.parametrize("kind", ["child-process", "in-process"])
@pytest.mark.parametrize(
    "uri", ["nosuchscheme://somewhere", "sqlite:///{tmp}/a-file/mlflow.db"], ids=["scheme", "path"]
)
def test_bad_tracking_uri_is_a_helpful_error(
    kind: str, uri: str, store: Store, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (store.root / "a-file").write_text("not a folder", encoding="utf-8")
    uri = uri.format(tmp=store.root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    t: Tracker = Recorder(uri) if kind == "in-process" else RecorderProcess(uri)
    with pytest.raises(TrackingError) as info:
        t.start_pipeline(APP, "run-6", "local", project / "pipeline.ipynb", {})
    message = str(info.value)
    assert uri in message
    assert "MLFLOW_TRACKING_URI" in message  # says where the URI came from and what to do
    t.close()  # blocking calls raise directly; nothing queued failed


def test_unknown_status_is_rejected_before_recording(store: Store) -> None:
    rp = RecorderProcess(store.uri, store.artifact_root)
    try:
        with pytest.raises(ValueError, match="unknown step/pipeline status"):
            rp.finish_pipeline("0" * 32, "done")
    finally:
        rp.close()


def test_recorder_process_is_thread_safe(store: Store, project: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    rp = RecorderProcess(store.uri, store.artifact_root)
    parent = rp.start_pipeline(APP, "run-7", "local", project / "pipeline.ipynb", {})
    steps = [f"s{i}" for i in range(8)]
    with ThreadPoolExecutor(4) as pool:
        ids = dict(
            zip(
                steps,
                pool.map(lambda s: rp.start_step(parent, APP, "run-7", s), steps),
                strict=True,
            )
        )
        list(pool.map(lambda s: rp.finish_step(ids[s], "skipped", 0, False), steps))
    rp.finish_pipeline(parent, "failed")
    rp.close()

    client = store.client()
    for step, run_id in ids.items():
        run = client.get_run(run_id)
        assert run.info.run_name == step
        assert run.info.status == "KILLED"
    assert client.get_run(parent).info.status == "FAILED"


def test_bad_explicit_uri_says_what_to_check(store: Store, project: Path) -> None:
    with pytest.raises(TrackingError, match="Check the URI"):
        Recorder("nosuchscheme://x").start_pipeline(APP, "r", "local", project / "p.ipynb", {})
