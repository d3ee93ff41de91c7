"""Runner events: one stream that the CLI, widgets, sidebar, tracking and tests all consume."""

from __future__ import annotations

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
    "run_finished",
)


@dataclass
class Event:
    """One moment of a run: what happened, to which step, which attempt, when, and details."""

    type: str
    run_id: str
    step: str | None = None
    attempt: int | None = None
    time: float = field(default_factory=time.time)
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Listener = Callable[[Event], None]


class EventBus:
    """Fan events out to listeners; a failing listener is logged, never breaks the run."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def emit(self, type_: str, step: str | None = None, attempt: int | None = None, **data: Any) -> Event:
        assert type_ in EVENT_TYPES, type_
        event = Event(type_, self.run_id, step, attempt, data=data)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # noqa: BLE001 - a listener must not break the run
                log.exception("event listener failed on %s", type_)
        return event
