"""The application model: what a notebook declares, as plain dataclasses with JSON round-trip.

`notebook.parser` builds an `Application` from a notebook file; `Pipeline` is the DAG of
executors that the runtime schedules. Nothing here reads files or imports heavy libraries.
"""

from __future__ import annotations

import bisect
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["error", "warning"]


@dataclass
class Message:
    """A validation finding: what is wrong, where (notebook cell), and how to fix it."""

    severity: Severity
    code: str
    text: str
    fix: str
    cell: int | None = None

    def __str__(self) -> str:
        where = f"cell {self.cell + 1}" if self.cell is not None else "notebook"  # 1-based, as JupyterLab counts
        return f"{self.severity}: {where}: {self.text} Fix: {self.fix}"


@dataclass
class Resources:
    """Compute requested by a step (Kubernetes quantities as written by the user)."""

    cpu: str | None = None
    memory: str | None = None
    gpu: int | None = None


@dataclass
class CodeBlock:
    """A piece of code taken from one notebook cell (magic line removed)."""

    cell: int
    source: str


@dataclass
class Part:
    """One cell of a multi-cell step: code (magic line removed) or markdown kept between parts."""

    cell: int
    source: str
    kind: Literal["code", "markdown"] = "code"


@dataclass
class Executor:
    """One batch step: a `%%executor` cell, continued by later `%%executor NAME` cells without options.

    `cell` is the first cell; `source` is the code of all parts joined (what the cache key,
    requirement scan and checks read); `parts` lists every cell of the step in notebook order
    (code parts and the markdown cells between them), empty for a one-cell step.
    """

    name: str
    cell: int
    source: str
    requires: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    image: str | None = None
    requirements: list[str] = field(default_factory=list)
    retries: int = 0
    timeout: float | None = None
    resources: Resources = field(default_factory=Resources)
    cache: bool = True
    deps: list[str] = field(default_factory=list)  # --deps: files, folders, globs in the cache key
    metrics: list[str] = field(default_factory=list)  # --metrics: also logged on the pipeline's parent run
    parts: list[Part] = field(default_factory=list)

    def all_parts(self) -> list[Part]:
        """Every part in notebook order (a one-cell step is one code part)."""
        return self.parts or [Part(self.cell, self.source)]

    def code_parts(self) -> list[Part]:
        """The code parts in notebook order."""
        return [p for p in self.all_parts() if p.kind == "code"]


@dataclass
class Service:
    """An online inference service: a `%%service` cell."""

    name: str
    cell: int
    source: str
    model: str | None = None
    replicas: int = 1


@dataclass
class Agent:
    """A supervising agent: a `%%agent` cell with sensors, rules and actuators."""

    name: str
    cell: int
    source: str
    template: str | None = None


class ProducerIndex:
    """Lookups over a list of executors, built in one pass (linear validation and DAG building).

    `by_name`: the first executor of each name; `producers`: variable -> producer names in
    declaration order; `above(ex, var)`: the nearest producer of `var` above `ex` (by cell).
    """

    def __init__(self, executors: list[Executor]) -> None:
        self.executors, self.size = executors, len(executors)
        self.by_name: dict[str, Executor] = {}
        self.producers: dict[str, list[str]] = {}
        self._cells: dict[str, list[tuple[int, int, str]]] = {}  # var -> (cell, position, name), sorted
        for position, ex in enumerate(executors):
            self.by_name.setdefault(ex.name, ex)
            for var in dict.fromkeys(ex.outputs):
                self.producers.setdefault(var, []).append(ex.name)
                self._cells.setdefault(var, []).append((ex.cell, position, ex.name))
        for entries in self._cells.values():
            entries.sort()

    def above(self, ex: Executor, var: str) -> str | None:
        """The producer of `var` with the greatest cell below `ex.cell` (not `ex` itself); ties: declared first."""
        entries = self._cells.get(var)
        if not entries:
            return None
        i = bisect.bisect_left(entries, (ex.cell,)) - 1
        best: tuple[int, int, str] | None = None
        while i >= 0:
            cell, position, name = entries[i]
            if best is not None and cell < best[0]:
                break
            if name != ex.name:
                best = (cell, position, name)  # walking down: a lower position at the same cell wins
            i -= 1
        return best[2] if best else None


@dataclass
class Application:
    """Everything one notebook declares; the single source of truth for every backend."""

    name: str
    notebook: str
    team: str = "default"
    kernel_name: str | None = None
    kernel_display_name: str | None = None
    language: str | None = None
    setup: list[CodeBlock] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    parameters_cell: int | None = None
    app_cell: int | None = None
    executors: list[Executor] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)
    agents: list[Agent] = field(default_factory=list)
    ignored_cells: list[int] = field(default_factory=list)
    exploration: list[CodeBlock] = field(default_factory=list)  # code cells without a magic
    messages: list[Message] = field(default_factory=list)
    cell_count: int = 0

    def index(self) -> ProducerIndex:
        """The executor lookups (by name, producers of each variable), built once per executor list.

        Rebuilt when `executors` is replaced or grows/shrinks; code that edits an executor's name,
        cell or outputs in place after parsing must call `invalidate_index()`.
        """
        cached = self.__dict__.get("_index")
        if cached is None or cached.executors is not self.executors or cached.size != len(self.executors):
            cached = ProducerIndex(self.executors)
            self.__dict__["_index"] = cached
        return cached

    def invalidate_index(self) -> None:
        """Forget the cached `index()` (after editing executors in place)."""
        self.__dict__.pop("_index", None)

    def executor(self, name: str) -> Executor:
        """The executor called `name` (KeyError if there is none)."""
        return self.index().by_name[name]

    def producers(self) -> dict[str, list[str]]:
        """Variable name -> the executors that declare it in `--outputs`."""
        return {var: list(names) for var, names in self.index().producers.items()}

    def producer_above(self, ex: Executor, var: str) -> str | None:
        """The executor whose output `var` `ex` loads: the nearest producer above `ex`'s first cell.

        As in a top-to-bottom run, a variable refined by several steps is read in the version of
        the last step above the consumer; None when no producer is above it.
        """
        return self.index().above(ex, var)

    def input_producers(self, ex: Executor) -> dict[str, str]:
        """Input variable -> the step it is loaded from (inputs without a producer above left out)."""
        found = {var: self.producer_above(ex, var) for var in dict.fromkeys(ex.inputs)}
        return {var: name for var, name in found.items() if name is not None}

    def dependencies(self, ex: Executor) -> list[str]:
        """`--requires` plus the producer of each `--inputs` variable, in declaration order."""
        deps = list(dict.fromkeys(d for d in ex.requires if d != ex.name))
        for producer in self.input_producers(ex).values():
            if producer not in deps:
                deps.append(producer)
        return deps

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Application:
        data = dict(data)
        data["setup"] = [CodeBlock(**b) for b in data.get("setup", [])]
        data["exploration"] = [CodeBlock(**b) for b in data.get("exploration", [])]
        data["executors"] = [
            Executor(**{**e, "resources": Resources(**e.get("resources", {})),
                        "parts": [Part(**p) for p in e.get("parts", [])]})
            for e in data.get("executors", [])
        ]
        data["services"] = [Service(**s) for s in data.get("services", [])]
        data["agents"] = [Agent(**a) for a in data.get("agents", [])]
        data["messages"] = [Message(**m) for m in data.get("messages", [])]
        return cls(**data)


@dataclass
class Step:
    """An executor placed in the pipeline, with its resolved upstream steps."""

    name: str
    executor: Executor
    depends_on: list[str] = field(default_factory=list)


@dataclass
class Pipeline:
    """The DAG of steps compiled from an application; `steps` is in topological order."""

    app: str
    steps: dict[str, Step] = field(default_factory=dict)

    @classmethod
    def from_application(cls, app: Application) -> Pipeline:
        """Build the DAG (the application must be valid: no cycles, known dependencies)."""
        pending = {ex.name: Step(ex.name, ex, app.dependencies(ex)) for ex in app.executors}
        for step in pending.values():
            unknown = [d for d in step.depends_on if d not in pending]
            if unknown:
                raise ValueError(f"step {step.name} depends on unknown step(s): {', '.join(unknown)}")
        # Level by level (Kahn): a step comes after all its dependencies, ties in declaration order.
        position = {name: i for i, name in enumerate(pending)}
        waiting = {name: len(set(step.depends_on)) for name, step in pending.items()}
        dependents: dict[str, list[str]] = {}
        for step in pending.values():
            for dep in dict.fromkeys(step.depends_on):
                dependents.setdefault(dep, []).append(step.name)
        ordered: dict[str, Step] = {}
        ready = [name for name, count in waiting.items() if count == 0]
        while ready:
            following: list[str] = []
            for name in ready:
                ordered[name] = pending.pop(name)
                for later in dependents.get(name, ()):
                    waiting[later] -= 1
                    if waiting[later] == 0:
                        following.append(later)
            ready = sorted(following, key=position.__getitem__)
        if pending:
            raise ValueError(f"cycle among steps: {', '.join(pending)}")
        return cls(app.name, ordered)

    def dependents(self, name: str) -> list[str]:
        """Steps that list `name` among their direct dependencies."""
        return [s.name for s in self.steps.values() if name in s.depends_on]

    def upstream(self, names: list[str]) -> set[str]:
        """All transitive dependencies of `names` (the names themselves excluded)."""
        seen: set[str] = set()
        stack = [d for n in names for d in self.steps[n].depends_on]
        while stack:
            n = stack.pop()
            if n not in seen:
                seen.add(n)
                stack.extend(self.steps[n].depends_on)
        return seen - set(names)

    def downstream(self, name: str) -> set[str]:
        """All transitive dependents of `name`."""
        seen: set[str] = set()
        stack = self.dependents(name)
        while stack:
            n = stack.pop()
            if n not in seen:
                seen.add(n)
                stack.extend(self.dependents(n))
        return seen
