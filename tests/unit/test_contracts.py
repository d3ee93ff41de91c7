"""run.json contract: written with schema_version, old files migrated on read, models round-trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from scanflow_jupyter.contracts import SCHEMA_VERSION, RunRecord, StepRecord, migrate_run_json
from scanflow_jupyter.data.store import (
    RunState,
    RunStore,
    RunUnreadableError,
    StepError,
    StepState,
)


def _store_with_run(tmp_path: Path) -> tuple[RunStore, Path]:
    store = RunStore(tmp_path / ".scanflow")
    step = StepState(name="train", status="failed", attempts=1, started_at=1.0, finished_at=2.5,
                     duration_s=1.5, error=StepError(cell=3, ename="ValueError", evalue="bad",
                                                     traceback=["line"]))
    state = RunState(run_id="r1", app="demo", notebook="nb.ipynb", status="failed",
                     params={"lr": 0.1}, steps={"train": step})
    store.write_state(state)
    return store, store.state_path("r1")


def test_run_json_is_written_with_schema_version_and_validates(tmp_path: Path) -> None:
    _, path = _store_with_run(tmp_path)
    data = json.loads(path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION == 1
    record = RunRecord.model_validate(data)
    assert record.model_dump(mode="json") == data  # same keys, same values: a clean round trip
    assert record.steps["train"].error is not None and record.steps["train"].error.cell == 3


def test_file_without_schema_version_is_migrated_on_read(tmp_path: Path) -> None:
    store, path = _store_with_run(tmp_path)
    data = json.loads(path.read_text())
    del data["schema_version"]
    path.write_text(json.dumps(data))
    assert migrate_run_json(data)["schema_version"] == SCHEMA_VERSION
    state = store.read_state("r1")
    assert state.steps["train"].error is not None and state.status == "failed"
    store.write_state(state)
    assert json.loads(path.read_text())["schema_version"] == SCHEMA_VERSION


@pytest.mark.parametrize(("version", "message"), [
    (99, "newer than this scanflow reads"),
    ("1", "not a positive integer"),
    (0, "not a positive integer"),
])
def test_unreadable_schema_version_is_a_clear_error(tmp_path: Path, version: object,
                                                     message: str) -> None:
    store, path = _store_with_run(tmp_path)
    data = json.loads(path.read_text())
    data["schema_version"] = version
    path.write_text(json.dumps(data))
    with pytest.raises(RunUnreadableError, match=message):
        store.read_state("r1")


def test_run_state_writes_the_contract_keys_in_the_contract_order(tmp_path: Path) -> None:
    """RunState.to_dict is RunRecord's JSON: the same keys, in the model's order (run.json's layout)."""
    _, path = _store_with_run(tmp_path)
    data = json.loads(path.read_text())
    assert list(data) == list(RunRecord.model_fields)
    assert list(data["steps"]["train"]) == list(StepRecord.model_fields)
    assert list(data["steps"]["train"]["error"]) == ["cell", "ename", "evalue", "traceback"]


def test_run_state_reads_through_the_contract() -> None:
    """RunState.from_dict validates with RunRecord: v0 files migrated, keys it does not know ignored,
    non-object warnings dropped, wrong types refused with pydantic's message."""
    doc = {"run_id": "r1", "app": "a", "notebook": "nb.ipynb", "created_at": 1, "later_key": {"x": 1},
           "warnings": [{"code": "w"}, "stray"],
           "steps": {"s": {"name": "s", "attempts": "2", "error": {"cell": 0, "ename": "E"}, "new": 1}}}
    state = RunState.from_dict(doc)
    assert (state.created_at, state.warnings, state.steps["s"].attempts) == (1.0, [{"code": "w"}], 2)
    assert state.steps["s"].error == StepError(cell=0, ename="E", evalue="", traceback=[])
    assert state.to_dict()["schema_version"] == SCHEMA_VERSION and "later_key" not in state.to_dict()
    with pytest.raises(ValidationError, match="attempts"):
        RunState.from_dict({**doc, "steps": {"s": {"name": "s", "attempts": "many"}}})
    with pytest.raises(ValueError, match="newer than this scanflow reads"):
        RunState.from_dict({**doc, "schema_version": SCHEMA_VERSION + 1})
