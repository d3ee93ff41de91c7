"""Subscribers of a run's event bus that keep state and tracking: the runner itself only emits.

`RunStoreWriter` derives run.json from the events' `changes` and writes it; `MlflowRecorder`
records a step in MLflow when an event says it reached a final status.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from scanflow_jupyter.data.store import RunState, RunStore
from scanflow_jupyter.runtime.events import Event

FINAL_STEP_STATUSES = ("succeeded", "failed", "killed", "skipped", "cached")
FINAL_RUN_STATUSES = ("succeeded", "failed", "killed")


def apply_event(state: RunState | None, event: Event) -> RunState | None:
    """The run state after `event`: its `changes` (the whole run.json) when it has any, else `state`."""
    return RunState.from_dict(event.changes) if event.changes else state


def step_status(event: Event) -> str | None:
    """The status an event leaves its step in (None: no step, or no change)."""
    if event.step is None or not event.changes:
        return None
    return ((event.changes.get("steps") or {}).get(event.step) or {}).get("status")


class RunStoreWriter:
    """Keep run.json equal to the state the events describe (written after every change)."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self.state: RunState | None = None

    def __call__(self, event: Event) -> None:
        if event.changes:
            self.state = apply_event(self.state, event)
            assert self.state is not None
            # fsync'd when the run is over; the many writes while it runs are atomic (a crash
            # leaves a readable run.json) but not synced each time (≈5 ms per event on ext4)
            self.store.write_state(self.state, durable=self.state.status not in ("pending", "running"))


class MlflowRecorder:
    """Record a step in MLflow once an event leaves it in a final status; finish the run's
    tracking once (the first time) an event leaves the run in a final status.

    `track(step)` queues a step's record (the runner's tracking pool: nested run, artifacts,
    metrics); `finish(status)` ends the parent run, delivers a buffer and sets `tracking`.
    """

    def __init__(self, track: Callable[[str], Any], finish: Callable[[str], Any] | None = None) -> None:
        self._track = track
        self._finish = finish
        self._finished = False

    def __call__(self, event: Event) -> None:
        if step_status(event) in FINAL_STEP_STATUSES:
            self._track(str(event.step))
        elif (event.step is None and self._finish is not None and not self._finished
              and event.changes.get("status") in FINAL_RUN_STATUSES):
            self._finished = True
            self._finish(event.changes["status"])
