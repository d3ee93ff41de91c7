"""Data contracts as pydantic v2 models: run.json (:mod:`.run_record`), pipeline events
(:mod:`.events`) and the generator of the
labextension's TypeScript types from their JSON Schema (:mod:`.ts`; ``make contracts``)."""

from scanflow_jupyter.contracts.run_record import (
    SCHEMA_VERSION,
    RunRecord,
    StepErrorRecord,
    StepRecord,
    migrate_run_json,
)

__all__ = ["SCHEMA_VERSION", "RunRecord", "StepErrorRecord", "StepRecord", "migrate_run_json"]
