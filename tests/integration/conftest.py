"""Fixtures for pipeline runs with real kernels, a real run store and a real MLflow store."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _check_kernel(require: Any) -> None:
    """The python3 kernelspec that every example notebook names must exist."""
    require("ipykernel")
    require("nbclient")
    require("papermill")
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel as exc:
        if IN_CI:
            pytest.fail(f"the python3 kernelspec is required in CI: {exc}")
        pytest.skip(f"no python3 kernelspec: {exc}")


@dataclass
class Outcome:
    """A finished run: its RunResult, every event it emitted (in order) and its run.json."""

    result: Any
    events: list[Any]
    project: Any
    state: Any = field(default=None)

    def __post_init__(self) -> None:
        self.state = self.project.store.read_state(self.result.run_id)

    def statuses(self) -> dict[str, str]:
        return {name: s.status for name, s in self.result.steps.items()}

    def of(self, step: str | None = None, type_: str | None = None) -> list[Any]:
        return [e for e in self.events
                if (step is None or e.step == step) and (type_ is None or e.type == type_)]

    def index(self, type_: str, step: str) -> int:
        """Position in the stream of the one `type_` event of `step`."""
        found = [i for i, e in enumerate(self.events) if e.type == type_ and e.step == step]
        assert len(found) == 1, f"expected one {type_} event for {step}, got {len(found)}: {self.types(step)}"
        return found[0]

    def types(self, step: str) -> list[str]:
        return [e.type for e in self.events if e.step == step]

    def output(self, step: str, var: str) -> Any:
        """Load output `var` of `step` from the run store, as a downstream step would."""
        from scanflow_jupyter.data.records import OutputRecord
        from scanflow_jupyter.data.serializers import load_value

        record = dict(self.state.steps[step].outputs[var])
        folder = Path(record.pop("folder"))
        assert folder.is_relative_to(self.project.runs_dir / self.result.run_id), folder
        return load_value(folder, OutputRecord.from_dict(record), verify=True)

    def step_dir(self, step: str) -> Path:
        return self.project.runs_dir / self.result.run_id / step


class Runner:
    """Runs notebooks of a project through the Python API, recording the event stream."""

    def __init__(self, project: Any) -> None:
        self.project = project

    def run(self, notebook: str | Path, *, on_event: Any = None, **kwargs: Any) -> Outcome:
        from scanflow_jupyter.runtime.runner import run_notebook

        events: list[Any] = []

        def listen(event: Any) -> None:
            events.append(event)
            if on_event is not None:
                on_event(event)

        path = notebook if isinstance(notebook, Path) else self.project.nb(notebook)
        result = run_notebook(path, on_event=listen, **kwargs)
        return Outcome(result, events, self.project)


@pytest.fixture
def runner(project: Any, require: Any) -> Runner:
    _check_kernel(require)
    return Runner(project)


@pytest.fixture
def cli_project(project: Any, require: Any) -> Any:
    """A project for subprocess CLI runs (same isolation; the kernel must exist)."""
    _check_kernel(require)
    return project


