"""The backend plug-in interface: how one attempt of one step is executed somewhere.

Backends register in the entry-point group `scanflow_jupyter.backends` (name -> class), so a
new platform is a new package, not an edit of the runner. The scheduler, caching, retries,
events, run store and MLflow tracking are shared; a backend only launches attempts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

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


class Backend(ABC):
    """Executes step attempts; one instance per pipeline run."""

    name: str = "abstract"

    def __init__(self, app: Application, options: dict[str, Any] | None = None) -> None:
        self.app = app
        self.options = options or {}

    async def prepare(self, steps_to_run: int) -> None:
        """Called once before the first attempt (start pools, check availability)."""

    def expect(self, steps_left: int) -> None:
        """Hint: how many attempts may still be launched (lets backends pre-start resources)."""

    @abstractmethod
    async def run_step(self, job: StepJob) -> StepOutcome:
        """Run one attempt; must honour job.timeout and asyncio cancellation."""

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
