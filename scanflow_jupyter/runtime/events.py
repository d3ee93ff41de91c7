"""Runner events: one stream that the CLI, widgets, sidebar, tracking and tests all consume."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

log = logging.getLogger(__name__)

EVENT_TYPES = (
    "run_started",
    "step_queued",
    "step_started",
    "step_cell",
    "step_log",
    "step_succeeded",
    "step_failed",
    "step_cached",
    "step_skipped",
    "step_retrying",
    "step_killed",
    "run_warning",
    "run_finished",
)
STATE_CHANGED = "state_changed"  # internal: state moved without a public moment; only state subscribers see it


@dataclass
class Event:
    """One moment of a run: what happened, to which step, which attempt, when, and details.

    `changes` is the state the event leaves behind: the whole run.json (empty: no change).
    Subscribers derive run state from it; it is not part of the public event (journal, SSE, CLI).
    """

    type: str
    run_id: str
    step: str | None = None
    attempt: int | None = None
    time: float = field(default_factory=time.time)
    data: dict[str, Any] = field(default_factory=dict)
    changes: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        del doc["changes"]
        return doc


Listener = Callable[[Event], None]


class EventBus:
    """Fan events out to listeners in subscription order; a failing listener is logged, never breaks the run.

    Listeners subscribed with `state=True` (run-store writer, MLflow recorder) also get
    `state_changed` events, and their errors stop the run (run.json must not go stale silently);
    the others get public events only.
    """

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._listeners: list[tuple[Listener, bool]] = []

    def subscribe(self, listener: Listener, *, state: bool = False) -> None:
        self._listeners.append((listener, state))

    def emit(self, type_: str, step: str | None = None, attempt: int | None = None, *,
             changes: dict[str, Any] | None = None, **data: Any) -> Event:
        assert type_ in EVENT_TYPES or type_ == STATE_CHANGED, type_
        event = Event(type_, self.run_id, step, attempt, data=data, changes=changes or {})
        for listener, wants_state in list(self._listeners):
            if type_ == STATE_CHANGED and not wants_state:
                continue
            if wants_state:
                listener(event)
                continue
            try:
                listener(event)
            except Exception:  # noqa: BLE001 - a listener must not break the run
                log.exception("event listener failed on %s", type_)
        return event


EVENTS_FILE = "events.jsonl"


class EventJournal:
    """Append every event as one JSON line to `<run_dir>/events.jsonl` (flushed per event).

    The server extension tails this file, so a run started from the UI streams live and its
    history survives a server restart. `step_log` events are not journaled (logs are in log.txt).
    """

    def __init__(self, run_dir: Any) -> None:
        from pathlib import Path

        from scanflow_jupyter.redact import process_secrets

        self.path = Path(run_dir) / EVENTS_FILE
        self._file = self.path.open("a", encoding="utf-8")
        self._secrets = process_secrets()

    def __call__(self, event: Event) -> None:
        from scanflow_jupyter.redact import redact_json

        if event.type == "step_log" or self._file.closed:
            return
        self._file.write(json.dumps(redact_json(event.to_dict(), self._secrets), default=str) + "\n")
        self._file.flush()
        if event.type == "run_finished":
            self._file.close()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


def read_journal(run_dir: Any, after: int = 0) -> list[dict[str, Any]]:
    """Events journaled in `run_dir`, from line `after` on (a partial last line is left out)."""
    from pathlib import Path

    path = Path(run_dir) / EVENTS_FILE
    if not path.exists():
        return []
    events: list[dict[str, Any]] = []
    with path.open("r", encoding="utf-8") as fh:
        for index, line in enumerate(fh):
            if index < after or not line.endswith("\n"):
                continue
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return events
