"""The backend plug-in interface: how steps are executed somewhere.

Backends register in the entry-point group `scanflow_jupyter.backends` (name -> class), so a
new platform is a new package, not an edit of the runner. The runner owns the state machine:
caching, retries (per-step backends), events, the run store and MLflow tracking. A backend is
one of two kinds (`execution`):

* `"per_step"`: the runner's scheduler calls `run_step(job)` for each attempt (local, docker);
* `"whole_pipeline"`: the runner settles cached and reused steps, then calls
  `run_pipeline(job)` once with the steps left to execute (kubernetes: one Argo Workflow); the
  backend reports through `job.report` (a `StepReporter`) and never writes state itself.

A backend also declares `capabilities` (what the CLI and the sidebar may offer), a JSON
`settings_schema`, `available()` (is it usable here, and if not why and how to fix it) and may
name the tracker its steps log to (`tracking_target`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar, Protocol

from scanflow_jupyter.model import Application, Executor

ENTRY_POINT_GROUP = "scanflow_jupyter.backends"


@dataclass
class StepJob:
    """One attempt of one step, fully prepared by the runner."""

    step: str
    attempt: int
    executor: Executor
    notebook: dict[str, Any]  # the compiled step notebook, parameters already injected
    step_dir: Path
    outputs_dir: Path
    timeout: float | None
    emit: Callable[..., Any]  # emit(event_type, **data) for step_cell / step_log


@dataclass
class StepOutcome:
    """What an attempt produced: status, error (mapped to the source notebook cell), outputs."""

    status: str  # "succeeded" | "failed" | "killed"
    error: dict[str, Any] | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Availability:
    """Can this backend run here? If not: why, and how to fix it."""

    ok: bool
    reason: str = ""
    fix: str = ""


@dataclass(frozen=True)
class TrackingTarget:
    """The MLflow tracker of a run when the backend decides it (its team environment's tracker).

    `uri` is how this process reaches it; `steps_uri` how the steps do (e.g. a Service name).
    """

    uri: str
    steps_uri: str
    close: Callable[[], None] | None = None  # called once the run's tracking is finished


class StepReporter(Protocol):
    """How a whole-pipeline backend tells the runner what happened; the runner keeps the state.

    `finished` is called once the step's folder (input/output notebook, log, outputs) is in the
    local run store when `fetched` is true; the runner then collects the outputs and records the
    cache; after a failure the runner skips the step's dependents itself. Steps the backend never
    starts need no report.
    """

    def started(self, step: str, attempt: int) -> None: ...

    def retrying(self, step: str, attempt: int, error: dict[str, Any]) -> None: ...

    def progress(self, step: str, attempt: int | None, type_: str, **data: Any) -> None:
        """A `step_log` (text, cell, stream) or `step_cell` (index, cell, role) event, passed on as is."""

    def finished(self, step: str, attempt: int, status: str, error: dict[str, Any] | None = None,
                 fetched: bool = True) -> None: ...


@dataclass
class PipelineJob:
    """What a whole-pipeline backend executes: `steps` (pipeline order) of run `run_id`.

    `inputs[step][var]` names the producer step whose outputs folder (in this run's store) holds
    `var`; `reused` lists settled steps (cached or reused) whose local outputs the backend must
    make readable to the steps it runs. `mlflow_run_ids[step]` is the step's MLflow run, created
    by the runner in the run's tracker (None: untracked).
    """

    run_id: str
    steps: list[str]
    depends_on: dict[str, list[str]]
    params: dict[str, Any]
    inputs: dict[str, dict[str, str]]
    reused: dict[str, Path]  # settled step -> its local outputs folder
    mlflow_run_ids: dict[str, str | None]
    tracking_uri: str | None
    run_dir: Path
    report: StepReporter


class Backend(ABC):
    """Executes steps; one instance per pipeline run."""

    name: str = "abstract"
    execution: ClassVar[str] = "per_step"  # or "whole_pipeline"
    capabilities: ClassVar[frozenset[str]] = frozenset({"cache", "resume", "only", "logs", "cancel", "retries"})
    settings_schema: ClassVar[dict[str, Any]] = {"type": "object", "properties": {}}

    @classmethod
    def available(cls) -> Availability:
        """Whether the backend can run here (cheap: no network round trip needed)."""
        return Availability(True)

    def __init__(self, app: Application, options: dict[str, Any] | None = None) -> None:
        self.app = app
        self.options = options or {}

    async def prepare(self, steps_to_run: int) -> None:
        """Called once before the first attempt (start pools, check availability)."""

    def expect(self, steps_left: int) -> None:
        """Hint: how many attempts may still be launched (lets backends pre-start resources)."""

    def tracking_target(self) -> TrackingTarget | None:
        """The tracker this run must use (called before tracking starts); None: the configured one."""
        return None

    @abstractmethod
    async def run_step(self, job: StepJob) -> StepOutcome:
        """Run one attempt (per-step backends); must honour job.timeout and asyncio cancellation."""

    async def run_pipeline(self, job: PipelineJob) -> None:
        """Run `job.steps` as one unit (whole-pipeline backends); report through `job.report`."""
        raise NotImplementedError(f"the {self.name} backend runs steps one by one (run_step)")

    async def close(self) -> None:
        """Release everything (called on success, failure and cancellation)."""


class UnknownBackendError(LookupError):
    """No backend registered under that name."""


def available_backends() -> dict[str, Any]:
    """Registered backends: name -> entry point."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load_backend(name: str) -> type[Backend]:
    """The backend class registered as `name`."""
    eps = available_backends()
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none (is scanflow-jupyter installed?)"
        raise UnknownBackendError(f"unknown backend '{name}'; available: {known}.")
    return eps[name].load()
