"""Only steps whose code uses MLflow wait for a fresh tracking store; the others start at once.

The store is kept "not ready" for real: the test holds the creation lock (`<db>.lock`, the fcntl
lock `tracking_store.ensure_sqlite_store` takes) while the run starts, and releases it when the
non-MLflow step finished. Orderings come from the event stream, never from clocks.
"""

from __future__ import annotations

import fcntl
import os
import threading
from typing import Any

import pytest

from tests.integration.test_runner import mlflow_runs

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

PREP = "%%executor prep --outputs rows\nrows = [1, 2, 3]\n"
TRAIN = ("%%executor train --inputs rows --outputs total\nimport mlflow\n"
         "total = sum(rows)\nmlflow.log_metric('total', total)\n")


def test_plain_step_starts_before_the_store_is_ready_and_mlflow_step_gets_its_run(runner: Any, project: Any) -> None:
    project.write_notebook("storewait", ["import statistics", PREP, TRAIN])
    project.home.mkdir(parents=True, exist_ok=True)
    assert not project.db.exists(), "the store must be fresh for this test"
    fd = os.open(project.db.with_name(project.db.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)  # the recorder cannot create the store until this is released
    held = {"lock": True}
    released = threading.Lock()
    seen_while_held: list[tuple[str, str | None]] = []

    def release() -> None:
        with released:
            if held["lock"]:
                held["lock"] = False
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    def on_event(event: Any) -> None:
        if held["lock"]:
            seen_while_held.append((event.type, event.step))
        if event.type == "step_succeeded" and event.step == "prep":
            release()

    # a safety valve only (no timing is asserted): if prep never starts the run must not hang
    valve = threading.Timer(120, release)
    valve.start()
    try:
        out = runner.run("storewait", on_event=on_event)
    finally:
        valve.cancel()
        release()

    assert out.statuses() == {"prep": "succeeded", "train": "succeeded"}
    assert ("step_started", "prep") in seen_while_held, seen_while_held
    assert ("step_succeeded", "prep") in seen_while_held, seen_while_held
    assert ("step_started", "train") not in seen_while_held, "the MLflow step waits for the store"
    parent, by_step = mlflow_runs(project, "storewait")
    assert set(by_step) == {"prep", "train"}, "both steps are still recorded"
    assert by_step["train"].data.metrics["total"] == 6
    assert by_step["prep"].info.status == "FINISHED"
    assert out.result.mlflow_run_id == parent.info.run_id
