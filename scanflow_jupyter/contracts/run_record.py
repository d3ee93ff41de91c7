"""The ``run.json`` contract: :class:`RunRecord` (with ``schema_version``) and its migration.

Version history: files without ``schema_version`` (version 0, written before it existed) have the
layout of version 1 and are migrated on read by :func:`migrate_run_json`. ``RunState.to_dict`` /
``from_dict`` (scanflow_jupyter.data.store) write and read run.json through :class:`RunRecord`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

SCHEMA_VERSION = 1
"""The ``schema_version`` written into every ``run.json``."""

class StepErrorRecord(BaseModel):
    """Why a step failed: the failing cell (index in the source notebook) and its traceback."""

    model_config = ConfigDict(extra="allow")

    cell: int | None = None
    ename: str = ""
    evalue: str = ""
    traceback: list[str] = Field(default_factory=list)


class StepRecord(BaseModel):
    """One step's entry in ``run.json``'s ``steps``."""

    model_config = ConfigDict(extra="allow")

    name: str
    status: str = "pending"
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    duration_s: float | None = None
    cache_key: str | None = None
    outputs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    error: StepErrorRecord | None = None
    mlflow_run_id: str | None = None
    cached_from: str | None = None


class RunRecord(BaseModel):
    """The content of ``.scanflow/runs/<run_id>/run.json``; ``steps`` keeps DAG order."""

    model_config = ConfigDict(extra="allow")

    schema_version: int = SCHEMA_VERSION
    run_id: str
    app: str
    notebook: str
    backend: str = "local"
    status: str = "queued"
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    mlflow_run_id: str | None = None
    pid: int | None = None
    steps: dict[str, StepRecord] = Field(default_factory=dict)
    resumed_from: str | None = None
    started_by: str | None = None
    tracking: str | None = None
    warnings: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("warnings", mode="before")
    @classmethod
    def _only_object_warnings(cls, value: Any) -> Any:
        """Warnings that are not objects (a hand edit) are dropped, not a reason to refuse the run."""
        return [w for w in value if isinstance(w, dict)] if isinstance(value, list) else value


class SchemaVersionError(ValueError):
    """A run.json of a schema_version this scanflow cannot read."""


def migrate_run_json(data: dict[str, Any]) -> dict[str, Any]:
    """Return ``data`` in the current layout (a new dict); raise :class:`SchemaVersionError`
    for a ``schema_version`` that is not an integer or newer than :data:`SCHEMA_VERSION`."""
    version = data.get("schema_version")
    if version is None:  # written before schema_version existed: the layout of version 1
        return {"schema_version": SCHEMA_VERSION, **data}
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise SchemaVersionError(
            f"its schema_version is {version!r}, not a positive integer; "
            "the file was edited or written by another tool"
        )
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"its schema_version {version} is newer than this scanflow reads ({SCHEMA_VERSION}); "
            "upgrade scanflow-jupyter to read it"
        )
    return dict(data)
