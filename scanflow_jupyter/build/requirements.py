"""Requirements of a step image: what its code imports, pinned to this environment's versions.

A step's requirements are the packages its code (setup + body) imports plus `--requirements`
of its magic, resolved to distributions with `importlib.metadata.packages_distributions()` and
pinned (with everything they depend on) to the versions installed in the notebook's
environment. They are split into layers so images share as much as possible:

* ``runtime`` — what every step image needs to run a notebook (the same for every step);
* ``setup`` — what the `%%setup` cells import (the same for every step of a notebook);
* ``step`` — what only this step needs (its body's imports and `--requirements`).

A `--requirements` specifier overrides the pin of the same distribution (``pandas==2.2.3``);
a bare name (``requests``) is pinned like an import. Nothing here talks to Docker.
"""

from __future__ import annotations

import ast
import functools
import re
import sys
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import metadata
from typing import Any

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from scanflow_jupyter.cell_numbers import message_doc
from scanflow_jupyter.model import Application, Executor, Message
from scanflow_jupyter.notebook import ipython_source

#: What every step image needs to execute a notebook (installed before the step's packages).
RUNTIME_DISTRIBUTIONS = ("ipykernel", "nbclient", "nbformat", "cloudpickle", "xxhash", "mlflow-skinny", "papermill")
#: What service and agent images need on top (their HTTP runtime; see scanflow_jupyter.agents).
KIND_RUNTIME = {"service": ("fastapi", "uvicorn", "pyarrow"),  # pyarrow: the inference log
                "agent": ("fastapi", "uvicorn", "httpx", "croniter")}
#: Imported modules that the runtime itself provides: never resolved to another distribution.
PROVIDED_BY_RUNTIME = {"scanflow_jupyter": None, "mlflow": "mlflow-skinny"}
#: Distributions that never go into a requirements file.
NEVER_PIN = {"pip", "scanflow-jupyter"}
#: Packages the output serializers need next to a library (pandas DataFrames go to parquet).
SERIALIZER_EXTRAS = {"pandas": ("pyarrow",)}
#: Distributions whose presence matters for loading a step's inputs (see data/serializers/).
SERIALIZER_LIBRARIES = {"numpy", "pandas", "pyarrow", "scikit-learn", "joblib", "torch", "cloudpickle"}

_IMPORT_LINE = re.compile(r"^\s*(?:from\s+([A-Za-z_][\w.]*)\s+import\b|import\s+([A-Za-z_][\w.]*(?:\s*,\s*[A-Za-z_][\w.]*)*))")


@dataclass(frozen=True)
class ImportedModule:
    """One module a step imports: where (setup or body, notebook cell) and whether optional."""

    module: str  # dotted name, e.g. "sklearn.linear_model"
    where: str  # "setup" | "body"
    cell: int | None
    optional: bool = False  # inside `try: ... except ImportError`

    @property
    def top(self) -> str:
        return self.module.split(".")[0]


@dataclass
class Pin:
    """One requirement line and why it is there."""

    name: str  # canonical distribution name
    spec: str  # the requirements-file line, e.g. "numpy==2.4.6"
    origin: str  # "import numpy", "--requirements", "dependency of pandas", "serializer for pandas", "runtime"
    version: str | None = None  # installed version it is pinned to (None: not pinned)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "spec": self.spec, "origin": self.origin, "version": self.version}


@dataclass
class Layer:
    """The requirement lines installed by one image layer."""

    name: str  # "runtime" | "setup" | "step"
    pins: list[Pin] = field(default_factory=list)

    def lines(self) -> list[str]:
        return sorted(p.spec for p in self.pins)

    def text(self) -> str:
        return "".join(f"{line}\n" for line in self.lines())


@dataclass
class StepRequirements:
    """Everything a step image installs, layer by layer, with the direct requirements shown to users."""

    step: str
    imports: list[ImportedModule]
    direct: list[Pin]  # what the step asks for (imports + --requirements), as shown by `inspect`
    layers: list[Layer]
    messages: list[Message] = field(default_factory=list)

    def layer(self, name: str) -> Layer:
        return next(layer for layer in self.layers if layer.name == name)

    def modules_to_check(self) -> list[str]:
        """Modules the pre-flight check imports in the image (optional imports excluded)."""
        return sorted({m.module for m in self.imports if not m.optional})

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "imports": sorted({m.module for m in self.imports}),
            "requirements": [p.spec for p in self.direct],
            "pinned": {layer.name: layer.lines() for layer in self.layers},
            "messages": [message_doc(m) for m in self.messages],  # cell: 1-based
        }


# --- scanning imports ---------------------------------------------------------------------


def _number(cell: int | None) -> str:
    """A cell index shown as users count cells (1-based)."""
    return "?" if cell is None else str(cell + 1)


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    names: list[str] = []
    kinds = handler.type
    if kinds is None:
        return True
    for node in kinds.elts if isinstance(kinds, ast.Tuple) else [kinds]:
        if isinstance(node, ast.Name):
            names.append(node.id)
        elif isinstance(node, ast.Attribute):
            names.append(node.attr)
    return any(n in ("ImportError", "ModuleNotFoundError", "Exception", "BaseException") for n in names)


def imported_modules(source: str) -> list[tuple[str, bool]]:
    """Absolute modules imported by `source`: (dotted name, optional) in order of appearance.

    `import a.b` gives ``a.b``; `from a.b import c` gives ``a.b``; relative imports are ignored.
    An import inside ``try: ... except ImportError`` is optional. Code that does not parse is
    scanned line by line. Each distinct source is parsed once (the setup cells are part of every
    step, and a producer's imports are read again by each consumer).
    """
    return list(_imported_modules(source))


@functools.lru_cache(maxsize=8192)
def _imported_modules(source: str) -> tuple[tuple[str, bool], ...]:
    return tuple(_scan_imports(source))


def _scan_imports(source: str) -> list[tuple[str, bool]]:
    try:
        tree = ipython_source.parse(source)  # IPython syntax read as the kernel reads it
    except SyntaxError:
        found = []
        for line in source.split("\n"):
            match = _IMPORT_LINE.match(line)
            if match:
                names = [match.group(1)] if match.group(1) else [n.strip() for n in match.group(2).split(",")]
                found += [(n, False) for n in names]
        return found
    optional_nodes: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(_catches_import_error(h) for h in node.handlers):
            for inner in node.body:
                for sub in ast.walk(inner):
                    optional_nodes.add(id(sub))
    found: list[tuple[str, bool]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in optional_nodes) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, id(node) in optional_nodes))
    positions = {}
    for index, (name, optional) in enumerate(found):
        if name not in positions or not optional:
            positions[name] = (index, optional)
    return [(name, optional) for name, (_, optional) in sorted(positions.items(), key=lambda kv: kv[1][0])]


def step_imports(app: Application, ex: Executor, include_setup: bool = True) -> list[ImportedModule]:
    """Third-party modules imported by the setup cells and the body of `ex` (stdlib excluded)."""
    from scanflow_jupyter.notebook.compile import step_source

    out: list[ImportedModule] = []
    seen: set[tuple[str, str]] = set()
    blocks = [("setup", b.cell, b.source) for b in app.setup] if include_setup else []
    blocks += [("body", part.cell, part.source) for part in ex.code_parts()]  # a cell magic starts its part
    for where, cell, source in blocks:
        for module, optional in imported_modules(step_source(source)):
            top = module.split(".")[0]
            if top in sys.stdlib_module_names or top == "__future__" or (module, where) in seen:
                continue
            seen.add((module, where))
            out.append(ImportedModule(module, where, cell, optional))
    return out


# --- the environment -----------------------------------------------------------------------


@lru_cache(maxsize=1)
def _top_level_map() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def clear_caches() -> None:
    """Forget what was read from the environment (after installing or removing packages)."""
    _top_level_map.cache_clear()
    installed_version.cache_clear()
    _requires.cache_clear()


@cache
def installed_version(name: str) -> str | None:
    """Installed version of distribution `name` in this environment (None if absent)."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _owns(dist: str, module: str) -> bool:
    """Does distribution `dist` contain the file of `module` (a/b/__init__.py or a/b.py)?"""
    try:
        files = metadata.files(dist) or []
    except metadata.PackageNotFoundError:
        return False
    path = module.replace(".", "/")
    wanted = {f"{path}/__init__.py", f"{path}.py"}
    return any(str(f) in wanted for f in files)


def distributions_for(module: str) -> list[str]:
    """Installed distributions that provide `module` (empty if none does)."""
    top = module.split(".")[0]
    candidates = list(dict.fromkeys(_top_level_map().get(top, [])))
    if len(candidates) <= 1:
        return candidates
    parts = module.split(".")
    for depth in range(len(parts), 0, -1):  # the most specific module file decides
        owners = [d for d in candidates if _owns(d, ".".join(parts[:depth]))]
        if owners:
            return [_preferred_owner(owners, top)]
    return candidates


def _preferred_owner(owners: list[str], top: str) -> str:
    """One owner of a module file that several distributions ship (mlflow, mlflow-skinny, mlflow-tracing).

    Independent of the order the environment lists them in: meta-distributions that require another
    owner are passed over, then the one shipping most of package `top` wins (ties: by name).
    """
    if len(owners) == 1:
        return owners[0]
    names = {canonicalize_name(o) for o in owners}

    def requires_another(dist: str) -> bool:
        return any(canonicalize_name(Requirement(r).name) in names - {canonicalize_name(dist)}
                   for r in _requires(dist) if _parses(r))

    def files_in_package(dist: str) -> int:
        try:
            return sum(1 for f in metadata.files(dist) or [] if str(f).startswith(f"{top}/"))
        except metadata.PackageNotFoundError:
            return 0

    base = [o for o in owners if not requires_another(o)] or owners
    return sorted(base, key=lambda d: (-files_in_package(d), d))[0]


def _parses(requirement: str) -> bool:
    try:
        Requirement(requirement)
    except InvalidRequirement:
        return False
    return True


@cache
def _requires(name: str) -> tuple[str, ...]:
    try:
        return tuple(metadata.requires(name) or ())
    except metadata.PackageNotFoundError:
        return ()


def dependency_closure(roots: dict[str, set[str]]) -> dict[str, str]:
    """Installed distributions needed by `roots` (name -> extras), with who pulled each one in.

    Markers are evaluated for this interpreter (the image runs the same Python minor version);
    a dependency that is not installed here is left to pip.
    """
    pulled_by: dict[str, str] = {}
    queue = [(canonicalize_name(n), set(extras), None) for n, extras in roots.items()]
    done_extras: dict[str, set[str]] = {}
    while queue:
        name, extras, parent = queue.pop(0)
        if installed_version(name) is None:
            continue
        wanted = {""} | extras
        seen = done_extras.setdefault(name, set())
        if name in pulled_by and wanted <= seen:
            continue
        seen |= wanted
        pulled_by.setdefault(name, parent or name)
        for line in _requires(name):
            try:
                req = Requirement(line)
            except InvalidRequirement:
                continue
            if req.marker is not None and not any(_marker_true(req.marker, e) for e in wanted):
                continue
            queue.append((canonicalize_name(req.name), set(req.extras), name))
    return pulled_by


def _marker_true(marker: Marker, extra: str) -> bool:
    try:
        return marker.evaluate({"extra": extra})
    except Exception:  # noqa: BLE001 - an unknown marker variable: not for us
        return False


# --- resolving a step -----------------------------------------------------------------------


def _pin(name: str, origin: str) -> Pin:
    version = installed_version(name)
    spec = f"{name}=={version}" if version else name
    return Pin(name, spec, origin, version)


def _closure_pins(direct: list[Pin], taken: set[str]) -> list[Pin]:
    """The direct pins plus every installed dependency they pull in (skipping `taken` names)."""
    out = {p.name: p for p in direct if p.name not in taken}
    roots: dict[str, set[str]] = {p.name: set() for p in direct if p.version is not None}
    for dep, parent in dependency_closure(roots).items():
        if dep in out or dep in taken or dep in NEVER_PIN:
            continue
        out[dep] = _pin(dep, f"dependency of {parent}")
    return sorted(out.values(), key=lambda p: p.name)


def runtime_layer() -> Layer:
    """Pinned closure of the runtime set: the same layer in every step image."""
    direct = [_pin(canonicalize_name(d), "runtime") for d in RUNTIME_DISTRIBUTIONS]
    return Layer("runtime", _closure_pins(direct, set(NEVER_PIN)))


def _resolve_modules(modules: list[ImportedModule], ex: Executor, origin_prefix: str) -> tuple[list[Pin], list[Message]]:
    pins: dict[str, Pin] = {}
    messages: list[Message] = []
    for m in modules:
        if m.top in PROVIDED_BY_RUNTIME:
            continue
        dists = distributions_for(m.module)
        if not dists:
            if not m.optional:
                messages.append(Message(
                    "warning", "unresolved-import",
                    f"executor '{ex.name}': `import {m.module}` ({m.where}, cell {_number(m.cell)}) is not provided by any "
                    "package installed in this environment, so it cannot be pinned into the step image.",
                    f"install the package that provides '{m.top}' in the notebook's environment, or name it with "
                    f"`--requirements PACKAGE` on `%%executor {ex.name}`.", m.cell))
            continue
        for dist in dists:
            name = canonicalize_name(dist)
            if name not in NEVER_PIN and name not in pins:
                pins[name] = _pin(name, f"{origin_prefix}{m.top}")
    return list(pins.values()), messages


def _user_pins(ex: Executor) -> tuple[list[Pin], list[Message]]:
    pins: list[Pin] = []
    messages: list[Message] = []
    for text in ex.requirements:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue  # validate() reports it
        name = canonicalize_name(req.name)
        extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
        marker = f"; {req.marker}" if req.marker else ""
        if req.specifier or req.url:
            pins.append(Pin(name, str(req), "--requirements", None))
            continue
        version = installed_version(name)
        if version is None:
            messages.append(Message(
                "warning", "unpinned-requirement",
                f"executor '{ex.name}': --requirements {text} is not installed in this environment, so its version "
                "is not pinned (pip picks the newest).",
                f"pin it (--requirements '{req.name}==VERSION') or install it here.", ex.cell))
            pins.append(Pin(name, f"{req.name}{extras}{marker}", "--requirements", None))
        else:
            pins.append(Pin(name, f"{name}{extras}=={version}{marker}", "--requirements", version))
    return pins, messages


def _with_serializer_extras(pins: list[Pin]) -> list[Pin]:
    names = {p.name for p in pins}
    extra = []
    for lib, needs in SERIALIZER_EXTRAS.items():
        if lib in names:
            extra += [_pin(n, f"serializer for {lib}") for n in needs if n not in names]
    return pins + extra


def resolve_step(app: Application, ex: Executor, runtime: Layer | None = None,
                 include_setup: bool = True, kind: str = "executor") -> StepRequirements:
    """The pinned, layered requirements of the image of step `ex` (or of a service / agent cell)."""
    runtime = runtime or runtime_layer()
    imports = step_imports(app, ex, include_setup)
    messages: list[Message] = []
    setup_direct, msgs = _resolve_modules([m for m in imports if m.where == "setup"], ex, "import ")
    messages += msgs
    body_direct, msgs = _resolve_modules([m for m in imports if m.where == "body"], ex, "import ")
    messages += msgs
    user, msgs = _user_pins(ex)
    messages += msgs
    body_direct += [_pin(canonicalize_name(d), f"{kind} runtime") for d in KIND_RUNTIME.get(kind, ())]
    body_direct += _inherited_serializer_libs(app, ex, {p.name for p in setup_direct + body_direct + user})
    overridden = {p.name for p in user}
    setup_direct = _with_serializer_extras([p for p in setup_direct if p.name not in overridden])
    body_direct = [p for p in body_direct if p.name not in overridden and p.name not in {s.name for s in setup_direct}]
    body_direct = _with_serializer_extras(body_direct + user)

    runtime_names = {p.name for p in runtime.pins}
    taken = set(NEVER_PIN) | runtime_names
    setup_layer = Layer("setup", _closure_pins(setup_direct, taken - overridden))
    taken |= {p.name for p in setup_layer.pins}
    step_layer = Layer("step", _closure_pins(body_direct, (taken - overridden)))
    direct = {p.name: p for p in setup_direct + body_direct}
    return StepRequirements(ex.name, imports, sorted(direct.values(), key=lambda p: p.name),
                            [runtime, setup_layer, step_layer], messages)


def _inherited_serializer_libs(app: Application, ex: Executor, have: set[str]) -> list[Pin]:
    """Libraries the producers of this step's inputs use to save them (needed to load them)."""
    if not ex.inputs:
        return []
    producers = app.index().producers  # built once per application (read-only)
    wanted: dict[str, str] = {}
    for var in ex.inputs:
        for producer_name in producers.get(var, []):
            producer = app.executor(producer_name)
            for m in step_imports(app, producer):
                for dist in distributions_for(m.module):
                    name = canonicalize_name(dist)
                    if name in SERIALIZER_LIBRARIES and name not in have:
                        wanted.setdefault(name, f"input {var} from {producer_name}")
    return [_pin(name, origin) for name, origin in wanted.items()]


def resolve_application(app: Application, steps: list[str] | None = None) -> dict[str, StepRequirements]:
    """Requirements of each executor (or of `steps`), sharing one runtime layer."""
    runtime = runtime_layer()
    return {ex.name: resolve_step(app, ex, runtime) for ex in app.executors if steps is None or ex.name in steps}


def as_executor(target: Any) -> Executor:
    """A service or agent cell seen as an executor without inputs (for import resolution)."""
    return Executor(name=target.name, cell=target.cell, source=target.source)
