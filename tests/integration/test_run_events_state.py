"""Events are the single source of truth of a run's state (issue #13 item 1).

A third subscriber, next to the run-store writer and the MLflow recorder, derives the run state
from the events alone; after every event it sees, run.json on disk is that state.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def _run_with_third_subscriber(project: Any, notebook: str) -> tuple[Any, list[Any], list[tuple[dict, dict]]]:
    from scanflow_jupyter.notebook.application import load_application
    from scanflow_jupyter.runtime.run_subscribers import apply_event
    from scanflow_jupyter.runtime.runner import PipelineRun

    app, messages = load_application(project.nb(notebook))
    run = PipelineRun(app, messages, params={}, only=[], resume=None, max_parallel=2, no_cache=True,
                      backend="local", store=None)
    seen: list[Any] = []
    compared: list[tuple[dict, dict]] = []
    derived: dict[str, Any] = {"state": None}

    def third(event: Any) -> None:
        seen.append(event)
        if not event.changes:
            return
        derived["state"] = apply_event(derived["state"], event)
        on_disk = json.loads((run.store.run_dir(event.run_id) / "run.json").read_text())
        compared.append((derived["state"].to_dict(), on_disk))

    run.state_listeners.append(third)
    run.plan()
    result = asyncio.run(run.execute())
    final = json.loads((Path(result.run_dir) / "run.json").read_text())
    compared.append((derived["state"].to_dict(), final))
    return result, seen, compared


@pytest.mark.parametrize("notebook", ["linear_chain", "failing_step"])
def test_run_json_is_the_state_the_events_describe(runner, project, notebook):
    result, seen, compared = _run_with_third_subscriber(project, notebook)

    assert result.status == ("succeeded" if notebook == "linear_chain" else "failed")
    assert len(compared) > len(result.steps) * 2  # several changes per step, each one compared
    for index, (derived, on_disk) in enumerate(compared):
        assert derived == on_disk, f"run.json differs from the state of the events after change {index}"
    # the final state names every step's final status, and those came from step events
    final = compared[-1][0]
    for name, summary in result.steps.items():
        assert final["steps"][name]["status"] == summary.status
        last = [e for e in seen if e.step == name and e.changes][-1]
        assert last.changes["steps"][name]["status"] == summary.status
    # the public stream carries no state payload; state_changed is only for state subscribers
    journal = [json.loads(line) for line in (Path(result.run_dir) / "events.jsonl").read_text().splitlines()]
    assert all("changes" not in e for e in journal)
    assert all(e["type"] != "state_changed" for e in journal)
    assert any(e.type == "state_changed" for e in seen)
