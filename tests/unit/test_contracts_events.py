"""Pipeline event contract: one model per event type, discriminated on `type`."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from scanflow_jupyter.contracts.events import EVENT_MODELS, validate_event
from scanflow_jupyter.runtime.events import EVENT_TYPES, Event


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_event_type_validates_into_its_model(event_type: str) -> None:
    doc = Event(type=event_type, run_id="r1", step="a", attempt=1, data={"k": 1},
                changes={"run_id": "r1"}).to_dict()
    model = validate_event(doc)
    assert type(model) is EVENT_MODELS[event_type]
    assert model.model_dump(mode="json") == doc


@pytest.mark.parametrize("doc", [
    {"type": "no_such_event", "run_id": "r1", "time": 1.0},
    {"type": "step_started", "time": 1.0},  # no run_id
    {"type": "step_started", "run_id": "r1", "time": 1.0, "changes": {}},  # internal key published
])
def test_invalid_events_are_rejected(doc: dict) -> None:
    with pytest.raises(ValidationError):
        validate_event(doc)
