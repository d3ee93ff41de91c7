"""Follow a run's `events.jsonl` (written by the runner subprocess) for SSE and polling."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from scanflow_jupyter.cell_numbers import event_doc
from scanflow_jupyter.runtime.events import EVENTS_FILE

POLL_S = 0.1
LIVENESS_EVERY_S = 1.0
KEEPALIVE_S = 15.0


class JournalTail:
    """Reads complete new lines of a journal; `seq` = line number (1-based)."""

    def __init__(self, run_dir: Path, after: int = 0) -> None:
        self.path = Path(run_dir) / EVENTS_FILE
        self.after = max(0, int(after))
        self.seq = 0  # lines consumed so far
        self.offset = 0  # bytes consumed so far
        self.finished = False

    def read_new(self) -> list[dict[str, Any]]:
        """Events of complete lines appended since the last call (those after `after` only)."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except FileNotFoundError:
            return []
        events: list[dict[str, Any]] = []
        end = chunk.rfind(b"\n")
        if end < 0:
            return events
        for line in chunk[: end + 1].splitlines():
            self.seq += 1
            try:
                event = json.loads(line)
            except (ValueError, RecursionError):  # garbage, invalid UTF-8, absurd nesting
                event = None
            if not isinstance(event, dict):  # a corrupt line is passed on, never fatal
                event = {"type": "unreadable", "data": {"line": line[:2000].decode(errors="replace")}}
            if event.get("type") == "run_finished":
                self.finished = True
            if self.seq > self.after:
                events.append({**event_doc(event), "seq": self.seq})  # data.cell: 1-based
        self.offset += end + 1
        return events


def read_events(run_dir: Path, after: int = 0) -> tuple[list[dict[str, Any]], bool]:
    """Journaled events after `after`, and whether the run has journaled run_finished."""
    tail = JournalTail(run_dir, after)
    events = tail.read_new()
    return events, tail.finished


async def follow(run_dir: Path, after: int, running: Callable[[], bool]) -> AsyncIterator[dict[str, Any] | None]:
    """Yield events as the runner appends them; stop after run_finished, or once the run is no
    longer running and nothing new arrived (an interrupted run never writes run_finished).
    Yields None after KEEPALIVE_S without events (so dead connections are noticed)."""
    tail = JournalTail(run_dir, after)
    checked = time.monotonic()
    last_yield = time.monotonic()
    while True:
        new = tail.read_new()
        for event in new:
            yield event
            last_yield = time.monotonic()
        if tail.finished:
            return
        if time.monotonic() - last_yield >= KEEPALIVE_S:
            yield None  # nothing happened for a while: the caller writes a keep-alive comment
            last_yield = time.monotonic()
        if not new and time.monotonic() - checked >= LIVENESS_EVERY_S:
            checked = time.monotonic()
            if not running():
                for event in tail.read_new():  # the last lines written before it stopped
                    yield event
                return
        await asyncio.sleep(POLL_S)
