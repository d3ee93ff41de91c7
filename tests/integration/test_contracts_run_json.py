"""A real local run's run.json (succeeded and failed) validates against the RunRecord contract and
round-trips through it unchanged; its events.jsonl validates against the event models (#13 item 4)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from scanflow_jupyter.contracts import SCHEMA_VERSION, RunRecord
from scanflow_jupyter.contracts.events import validate_event

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.mark.parametrize("notebook", ["linear_chain", "failing_step"])
def test_real_run_json_round_trips_through_the_model(runner, project, notebook):
    from scanflow_jupyter.notebook.application import load_application
    from scanflow_jupyter.runtime.runner import PipelineRun

    app, messages = load_application(project.nb(notebook))
    run = PipelineRun(app, messages, params={}, only=[], resume=None, max_parallel=2, no_cache=True,
                      backend="local", store=None)
    run.plan()
    result = asyncio.run(run.execute())
    data = json.loads((Path(result.run_dir) / "run.json").read_text())

    assert data["schema_version"] == SCHEMA_VERSION
    record = RunRecord.model_validate(data)
    assert record.model_dump(mode="json") == data
    assert set(record.steps) == set(result.steps)
    if notebook == "failing_step":
        assert any(step.error is not None for step in record.steps.values())
    # every event of the run's journal validates against its type's model
    journal = (Path(result.run_dir) / "events.jsonl").read_text().splitlines()
    events = [validate_event(json.loads(line)) for line in journal]
    assert events[0].type == "run_started" and events[-1].type == "run_finished"
