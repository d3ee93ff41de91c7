"""The public pipeline event contract (events.jsonl, SSE, ``--json`` streams): one model per event
type of :data:`scanflow_jupyter.runtime.events.EVENT_TYPES`, a discriminated union on ``type``."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model

from scanflow_jupyter.runtime.events import EVENT_TYPES


class EventBase(BaseModel):
    """Fields every public event has (``changes`` is internal and never published)."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    step: str | None = None
    attempt: int | None = None
    time: float
    data: dict[str, Any] = Field(default_factory=dict)


def _model_name(event_type: str) -> str:
    return "".join(part.capitalize() for part in event_type.split("_")) + "Event"


EVENT_MODELS: dict[str, type[EventBase]] = {
    t: create_model(_model_name(t), __base__=EventBase, __doc__=f"A `{t}` event.",
                    type=(Literal[t], ...))  # type: ignore[call-overload]
    for t in EVENT_TYPES
}
PipelineEvent = Annotated[Union[tuple(EVENT_MODELS.values())], Field(discriminator="type")]  # noqa: UP007
EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(PipelineEvent)


def validate_event(doc: dict[str, Any]) -> EventBase:
    """Validate one public event (a dict as in events.jsonl) into its type's model."""
    return EVENT_ADAPTER.validate_python(doc)
