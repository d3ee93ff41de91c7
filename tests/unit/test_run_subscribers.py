"""The event bus and the subscribers that derive run state from events (real RunStore on disk)."""

from __future__ import annotations

import json

import pytest

from scanflow_jupyter.data.store import RunState, RunStore, StepState
from scanflow_jupyter.runtime.events import STATE_CHANGED, EventBus
from scanflow_jupyter.runtime.run_subscribers import MlflowRecorder, RunStoreWriter, apply_event


def _state(run_id: str) -> RunState:
    return RunState(run_id=run_id, app="demo", notebook="demo.ipynb", backend="local", status="running",
                    created_at=1.0, started_at=1.0, finished_at=None, params={}, mlflow_run_id=None, pid=1,
                    steps={"a": StepState(name="a"), "b": StepState(name="b")}, resumed_from=None,
                    started_by="python", tracking="recording")


def test_state_changed_reaches_state_subscribers_only():
    bus = EventBus("r1")
    public: list[str] = []
    state: list[str] = []
    bus.subscribe(lambda e: public.append(e.type))
    bus.subscribe(lambda e: state.append(e.type), state=True)
    bus.emit(STATE_CHANGED, changes={"x": 1})
    bus.emit("step_queued", "a")
    assert public == ["step_queued"]
    assert state == [STATE_CHANGED, "step_queued"]


def test_public_listener_errors_are_contained_state_listener_errors_are_not():
    bus = EventBus("r1")

    def broken(_event):
        raise RuntimeError("boom")

    bus.subscribe(broken)
    bus.emit("step_queued", "a")  # logged, the run goes on
    bus.subscribe(broken, state=True)
    with pytest.raises(RuntimeError, match="boom"):
        bus.emit("step_queued", "a")


def test_changes_are_not_part_of_the_public_event():
    event = EventBus("r1").emit("step_queued", "a", changes={"name": "a", "status": "queued"})
    assert event.changes["status"] == "queued"
    assert "changes" not in event.to_dict()


def test_writer_derives_run_json_from_events(tmp_path):
    store = RunStore(tmp_path / "runs")
    store.run_dir("r1").mkdir(parents=True)
    bus = EventBus("r1")
    writer = RunStoreWriter(store)
    bus.subscribe(writer, state=True)
    state = _state("r1")
    bus.emit(STATE_CHANGED, changes=state.to_dict())
    state.steps["a"].status, state.steps["a"].attempts, state.mlflow_run_id = "succeeded", 1, "m1"
    bus.emit("step_succeeded", "a", 1, changes=state.to_dict())
    bus.emit("step_log", "b", 1, text="no state change")
    on_disk = json.loads((store.run_dir("r1") / "run.json").read_text())
    assert on_disk == state.to_dict() == writer.state.to_dict()
    assert on_disk["steps"]["a"]["status"] == "succeeded" and on_disk["steps"]["b"]["status"] == "pending"
    assert on_disk["mlflow_run_id"] == "m1"  # run-level fields move with step events


def test_an_event_without_changes_keeps_the_state():
    state = _state("r1")
    event = EventBus("r1").emit("step_log", "a", 1, text="x")
    assert apply_event(state, event) is state
    assert apply_event(None, event) is None


def test_recorder_records_steps_that_reach_a_final_status():
    bus = EventBus("r1")
    recorded: list[str] = []
    bus.subscribe(MlflowRecorder(recorded.append), state=True)
    state = _state("r1")

    def emit(type_: str, step: str | None, status: str | None = None) -> None:
        if step and status:
            state.steps[step].status = status
        bus.emit(type_, step, changes=state.to_dict())

    emit("step_queued", "a", "queued")
    emit(STATE_CHANGED, "a", "running")
    emit("step_failed", "a", "failed")
    emit(STATE_CHANGED, "b", "skipped")
    emit(STATE_CHANGED, None)  # the run, not a step: b is final in it but nothing new is recorded
    assert recorded == ["a", "b"]


def test_recorder_finishes_the_run_once_when_it_reaches_a_final_status():
    bus = EventBus("r1")
    finished: list[str] = []
    bus.subscribe(MlflowRecorder(lambda _step: None, finished.append), state=True)
    state = _state("r1")
    bus.emit(STATE_CHANGED, changes=state.to_dict())  # running: nothing to finish
    state.status = "failed"
    bus.emit(STATE_CHANGED, changes=state.to_dict())
    bus.emit(STATE_CHANGED, changes=state.to_dict())  # the save after tracking finished
    assert finished == ["failed"]


def test_run_json_is_synced_to_disk_once_the_run_is_over(tmp_path, monkeypatch):
    """Writes while the run runs are atomic but not fsync'd (≈5 ms each, several per step); the
    final state is fsync'd. os.fsync is wrapped (and still called) to count, not replaced."""
    import os

    calls: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    store = RunStore(tmp_path / "runs")
    writer = RunStoreWriter(store)
    bus = EventBus("r9")
    bus.subscribe(writer, state=True)
    state = _state("r9")
    for status in ("queued", "running", "succeeded"):
        state.steps["a"].status = status
        bus.emit(STATE_CHANGED, "a", changes=state.to_dict())
    assert calls == [], "no fsync while the run runs"
    assert json.loads(store.state_path("r9").read_text())["steps"]["a"]["status"] == "succeeded"
    state.status, state.finished_at = "succeeded", 2.0
    bus.emit(STATE_CHANGED, changes=state.to_dict())
    assert calls, "the final run.json is fsync'd"
