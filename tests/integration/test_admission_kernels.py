"""Adaptive admission with real kernels: beyond the CPU count only while the running steps wait.

Steps block until a file appears, so the test (not a clock) decides when they finish; the
orderings are read from the run's event stream. A release deadline only unblocks a broken run.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from scanflow_jupyter.runtime.runner import run_notebook

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

CORES = os.cpu_count() or 1
ENDS = ("step_succeeded", "step_failed", "step_killed", "step_retrying")


def _notebook(project: Any, name: str, count: int, body: str, release: Path) -> Path:
    cells: list[str | dict[str, Any]] = []
    for i in range(count):
        cells.append(f"%%executor s{i} --outputs v{i}\nimport os, time\n{body.format(release=str(release))}\nv{i} = {i}\n")
    return project.write_notebook(name, cells)


def _run(notebook: Path, release: Path, release_when: Any, **kwargs: Any) -> list[Any]:
    """Run `notebook`; create `release` once `release_when(events)` holds (or after 90 s)."""
    events: list[Any] = []
    lock = threading.Lock()
    ready = threading.Event()

    def on_event(event: Any) -> None:
        with lock:
            events.append(event)
            if release_when(events):
                ready.set()

    def releaser() -> None:
        ready.wait(90)  # bound for a broken run; the assertions are on event order
        release.write_text("go")

    thread = threading.Thread(target=releaser, daemon=True)
    thread.start()
    result = run_notebook(notebook, on_event=on_event, handle_signals=False, **kwargs)
    thread.join()
    assert result.status == "succeeded", [e.data for e in events if e.type == "step_failed"][:1]
    return events


def _started(events: list[Any]) -> int:
    return sum(e.type == "step_started" for e in events)


def _most_running(events: list[Any]) -> int:
    running: set[str] = set()
    most = 0
    for e in events:
        if e.type == "step_started":
            running.add(e.step)
            most = max(most, len(running))
        elif e.type in ENDS:
            running.discard(e.step)
    return most


def test_waiting_steps_are_admitted_beyond_the_cpu_count(project):
    release = project.root / "release"
    count = CORES + 2
    nb = _notebook(project, "waiting", count, "while not os.path.exists({release!r}):\n    time.sleep(0.05)", release)
    events = _run(nb, release, lambda ev: _started(ev) >= count)
    first_end = min(i for i, e in enumerate(events) if e.type in ENDS)
    started_before = [e.step for e in events[:first_end] if e.type == "step_started"]
    assert len(started_before) == count, started_before
    assert sum(e.type == "step_succeeded" for e in events) == count


def test_busy_steps_never_exceed_the_cpu_count(project):
    release = project.root / "release"
    count = CORES + 2
    nb = _notebook(project, "busy", count, "while not os.path.exists({release!r}):\n    pass", release)
    seen: dict[str, float] = {}

    def after_cores_started(ev: list[Any]) -> bool:  # then give admission several sample windows
        if _started(ev) >= CORES:
            seen.setdefault("at", time.monotonic())
            return time.monotonic() - seen["at"] > 3
        return False

    events = _run(nb, release, after_cores_started)
    assert _most_running(events) <= CORES
    assert sum(e.type == "step_succeeded" for e in events) == count


def test_explicit_max_parallel_one_is_sequential(project):
    release = project.root / "release"
    release.write_text("go")  # nothing blocks: only the order is checked
    nb = _notebook(project, "sequential", 3, "while not os.path.exists({release!r}):\n    time.sleep(0.05)", release)
    events = _run(nb, release, lambda ev: True, max_parallel=1)
    assert _most_running(events) == 1
    assert sum(e.type == "step_succeeded" for e in events) == 3
