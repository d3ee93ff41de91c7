"""Build the images of an application on a Docker Engine, reuse unchanged ones, push, check imports.

`ImageBuilder(app).build()` makes one image per executor (and per service and agent cell, which
the Kubernetes deploy runs), tagged `scanflow/<app>-<name>:<content hash>` (see `context`). An
image whose tag exists is reused, never rebuilt. Build errors arrive in the engine's log stream,
not as exceptions: they are turned into a `BuildError` naming the Dockerfile step and the failing
lines. After building, a pre-flight check starts each image and imports every module the code
imports; each missing one is reported with the fix, before any pipeline runs.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scanflow_jupyter.build import cache_dir
from scanflow_jupyter.build.context import (
    LABEL_RUNNER,
    BuildContext,
    image_ref,
    make_context,
    read_certs,
    runner_id,
)
from scanflow_jupyter.build.requirements import (
    Layer,
    StepRequirements,
    as_executor,
    distributions_for,
    resolve_step,
    runtime_layer,
)
from scanflow_jupyter.cell_numbers import message_doc, shown
from scanflow_jupyter.data.files import atomic_write_bytes
from scanflow_jupyter.model import Application, Message
from scanflow_jupyter.runtime.constants import STEP_NOTEBOOK

DEFAULT_BASE_IMAGE = "python:3.11-slim"
DEFAULT_CA_CERTS = "/usr/local/share/ca-certificates"
STEP_COMMAND = ["python", "-m", "scanflow_jupyter.runtime.execute_step", "--notebook", STEP_NOTEBOOK]
RUNTIME_MODULES = ("scanflow_jupyter.data.step_io", "scanflow_jupyter.runtime.execute_step",
                   "scanflow_jupyter.runtime.warm_step", "ipykernel",
                   "nbclient", "nbformat", "papermill", "cloudpickle")

Log = Callable[[str], None]


class EngineUnavailable(RuntimeError):
    """No Docker Engine answers."""


class BuildError(RuntimeError):
    """An image could not be built; the message names the step, the Dockerfile step and the failing lines."""

    def __init__(self, message: str, name: str | None = None, instruction: str | None = None,
                 lines: list[str] | None = None) -> None:
        super().__init__(message)
        self.name = name
        self.instruction = instruction
        self.lines = lines or []


def docker_client(timeout: int = 600) -> Any:
    """A Docker SDK client that answers, or EngineUnavailable with the fix."""
    import docker
    from docker.errors import DockerException

    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except DockerException as exc:
        raise EngineUnavailable(
            f"no Docker Engine answers at {where} ({exc}). Fix: start one with `make docker` "
            "(scripts/docker-up.sh installs docker.io and starts dockerd), or point DOCKER_HOST at a running engine."
        ) from exc
    return client


# --- results ------------------------------------------------------------------------------


@dataclass
class ImportProblem:
    """A module the code imports that does not import in its image, and how to fix it."""

    name: str  # step / service / agent
    module: str
    error: str
    fix: str
    cell: int | None = None

    def __str__(self) -> str:
        where = f" (cell {self.cell + 1})" if self.cell is not None else ""  # 1-based
        return f"'{self.name}'{where}: import {self.module} fails in the image: {self.error}. Fix: {self.fix}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "module": self.module, "error": self.error, "fix": self.fix, "cell": shown(self.cell)}  # 1-based


@dataclass
class ImageResult:
    """The image of one step (or service / agent)."""

    name: str
    kind: str
    image: str  # full reference, content-hash tag included
    built: bool
    seconds: float
    requirements: StepRequirements
    pushed: bool = False
    checked: bool = False
    import_problems: list[ImportProblem] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "image": self.image, "built": self.built, "kind": self.kind, "seconds": round(self.seconds, 3),
            "pushed": self.pushed, "requirements": [p.spec for p in self.requirements.direct],
            "import_check": {"checked": self.checked, "problems": [p.to_dict() for p in self.import_problems]},
        }


@dataclass
class BuildReport:
    app: str
    base: str
    images: dict[str, ImageResult] = field(default_factory=dict)
    messages: list[Message] = field(default_factory=list)

    @property
    def import_problems(self) -> list[ImportProblem]:
        return [p for r in self.images.values() for p in r.import_problems]

    def to_dict(self) -> dict[str, Any]:
        return {"app": self.app, "base": self.base, "steps": {n: r.to_dict() for n, r in self.images.items()},
                "ok": not self.import_problems, "messages": [message_doc(m) for m in self.messages]}


# --- small caches keyed by image id -----------------------------------------------------------


def _cache_file(name: str) -> Path:
    return cache_dir() / name


def _cache_read(name: str) -> dict[str, Any]:
    try:
        return json.loads(_cache_file(name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _cache_write(name: str, key: str, value: Any) -> None:
    data = _cache_read(name)
    data[key] = value
    if len(data) > 500:  # keep the file small: drop the oldest entries
        data = dict(list(data.items())[-400:])
    path = _cache_file(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(data, indent=1).encode("utf-8"))


# --- the builder ----------------------------------------------------------------------------


class ImageBuilder:
    """Builds (or reuses) the images of one application."""

    def __init__(self, app: Application, *, base: str | None = None, registry: str | None = None,
                 wheelhouse: str | Path | None = None, ca_certs: str | Path | None = None,
                 network: str | None = None, client: Any = None, log: Log | None = None,
                 cancelled: Callable[[], bool] | None = None) -> None:
        self.app = app
        self.base = base or os.environ.get("SCANFLOW_BASE_IMAGE") or DEFAULT_BASE_IMAGE
        self.registry = registry
        self.wheelhouse = Path(wheelhouse).absolute() if wheelhouse else None
        ca = ca_certs if ca_certs is not None else os.environ.get("SCANFLOW_CA_CERTS", DEFAULT_CA_CERTS)
        self.ca_certs = Path(ca) if ca else None
        self.network = "none" if self.wheelhouse else (network or os.environ.get("SCANFLOW_BUILD_NETWORK") or None)
        self._client = client
        self.log = log or (lambda _line: None)
        self.cancelled = cancelled or (lambda: False)
        self.messages: list[Message] = []
        self._bases: dict[str, tuple[str, str]] = {}

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = docker_client()
        return self._client

    # -- targets and contexts

    def targets(self, names: list[str] | None = None) -> list[tuple[str, str, Any]]:
        """(name, kind, model object) of every image, in pipeline order; unknown names raise KeyError."""
        from scanflow_jupyter.model import Pipeline

        all_targets: list[tuple[str, str, Any]] = []
        try:
            order = list(Pipeline.from_application(self.app).steps)
        except Exception:  # noqa: BLE001 - an invalid DAG is reported by validate()
            order = [ex.name for ex in self.app.executors]
        by_name = {ex.name: ex for ex in self.app.executors}
        all_targets += [(n, "executor", by_name[n]) for n in order if n in by_name]
        all_targets += [(s.name, "service", s) for s in self.app.services]
        all_targets += [(a.name, "agent", a) for a in self.app.agents]
        if names:
            known = {t[0] for t in all_targets}
            unknown = [n for n in names if n not in known]
            if unknown:
                raise KeyError(f"no executor, service or agent named {', '.join(unknown)} (known: {', '.join(sorted(known))})")
            all_targets = [t for t in all_targets if t[0] in names]
        return all_targets

    def resolve_base(self, ref: str) -> tuple[str, str]:
        """(reference, image id) of a base image: local, else pulled, else the offline recipe."""
        import docker.errors

        if ref in self._bases:
            return self._bases[ref]
        from scanflow_jupyter.build.base import OFFLINE_BASE_ALIASES, ensure_base_image

        resolved = ref
        if ref in OFFLINE_BASE_ALIASES:
            resolved, built, seconds = ensure_base_image(self.client, log=self.log)
            if built:
                self.log(f"built offline base image {resolved} in {seconds:.1f}s")
        try:
            image = self.client.images.get(resolved)
        except docker.errors.ImageNotFound:
            self.log(f"pulling base image {resolved}")
            try:
                image = self.client.images.pull(resolved)
            except docker.errors.APIError as exc:
                raise BuildError(
                    f"base image {resolved} is not on this engine and cannot be pulled ({exc.explanation or exc}). "
                    "Fix: on a machine without a registry run `scanflow build-base` and set "
                    "SCANFLOW_BASE_IMAGE=scanflow/base (or pass --base scanflow/base); otherwise check the image name."
                ) from exc
        self._bases[ref] = (resolved, image.id)
        self._check_python(resolved, image.id)
        return self._bases[ref]

    def image_python(self, image_id: str) -> dict[str, Any]:
        """Python version, machine and glibc of an image (cached by image id)."""
        cached = _cache_read("image-python.json").get(image_id)
        if cached:
            return cached
        code = ("import json,platform,sys;print(json.dumps({'version':'%d.%d'%sys.version_info[:2],"
                "'machine':platform.machine(),'glibc':platform.libc_ver()[1] or None}))")
        try:
            out = run_once(self.client, image_id, ["python3", "-c", code])
        except Exception as exc:  # noqa: BLE001
            raise BuildError(f"base image {image_id[:19]} has no working python3 ({exc}). "
                             "Fix: use a base image with Python 3 (python:3.11-slim, or `scanflow build-base`).") from exc
        info = json.loads(out.decode().strip().splitlines()[-1])
        _cache_write("image-python.json", image_id, info)
        return info

    def _check_python(self, ref: str, image_id: str) -> None:
        import sys

        info = self.image_python(image_id)
        here = f"{sys.version_info[0]}.{sys.version_info[1]}"
        if info["version"] != here:
            self.messages.append(Message(
                "warning", "python-mismatch",
                f"base image {ref} has Python {info['version']} but the notebook's environment has Python {here}: "
                "requirements are pinned to the versions installed here, which may not exist for that Python.",
                f"use a base image with Python {here} (SCANFLOW_BASE_IMAGE), or run Scanflow from a Python {info['version']} environment."))

    def contexts(self, names: list[str] | None = None) -> list[BuildContext]:
        """The build context of each image (resolving requirements, base images and wheels)."""
        from scanflow_jupyter.build.wheel import runtime_wheel
        from scanflow_jupyter.notebook.compile import compile_step, dumps

        runtime = runtime_layer()
        wheel = runtime_wheel()
        certs = read_certs(self.ca_certs)
        out = []
        for name, kind, obj in self.targets(names):
            base_ref, base_id = self.resolve_base(getattr(obj, "image", None) or self.base)
            if kind == "executor":
                reqs = resolve_step(self.app, obj, runtime)
                payload = {"step.ipynb": dumps(compile_step(self.app, obj)).encode()}
                command: list[str] | None = STEP_COMMAND
            else:
                reqs = resolve_step(self.app, as_executor(obj), runtime, include_setup=(kind == "service"), kind=kind)
                meta = {"app": self.app.name, "kind": kind, "name": name, "cell": obj.cell,
                        **{k: getattr(obj, k) for k in ("model", "replicas", "template") if hasattr(obj, k)}}
                payload = {f"{kind}.py": (obj.source.rstrip("\n") + "\n").encode(),
                           "target.json": (json.dumps(meta, indent=1, sort_keys=True) + "\n").encode()}
                command = None  # the deploy names the command (agent / service runtime)
            self.messages += [m for m in reqs.messages if m not in self.messages]
            offline = self._offline_wheels(reqs.layers, base_id) if self.wheelhouse else None
            out.append(make_context(app=self.app.name, name=name, kind=kind, base=base_ref, base_id=base_id,
                                    requirements=reqs, payload=payload, command=command, wheel=wheel,
                                    certs=certs, offline_wheels=offline))
        return out

    def _offline_wheels(self, layers: list[Layer], base_id: str) -> dict[str, list[Path]]:
        from scanflow_jupyter.build.wheelhouse import PythonTarget, fetch_layer

        assert self.wheelhouse is not None
        info = self.image_python(base_id)
        target = PythonTarget(info["version"], info["machine"], info.get("glibc"))
        return {layer.name: fetch_layer(self.wheelhouse, layer.name, layer.text(), target, self.log)
                for layer in layers if layer.text()}

    # -- building

    def build(self, names: list[str] | None = None, *, push: bool = False, check_imports: bool = True,
              rebuild: bool = False) -> BuildReport:
        """Build what is missing, reuse what exists, optionally push; then the import check.

        `rebuild` builds every image again from scratch (no tag reuse, no layer cache).
        """
        import docker.errors

        report = BuildReport(self.app.name, self.base)
        for ctx in self.contexts(names):
            if self.cancelled():
                raise BuildError("the build was cancelled.")
            started = time.monotonic()
            local = ctx.ref()
            try:
                if rebuild:
                    raise docker.errors.ImageNotFound(local)
                self.client.images.get(local)
                built = False
                self.log(f"{ctx.name}: reusing {local}")
            except docker.errors.ImageNotFound:
                self.log(f"{ctx.name}: building {local}")
                self._docker_build(ctx, local, nocache=rebuild)
                built = True
            ref = local
            result = ImageResult(ctx.name, ctx.kind, ref, built, 0.0, ctx.requirements)
            if self.registry:
                ref = image_ref(ctx.repository, ctx.tag, self.registry)
                self.client.images.get(local).tag(ref)
                result.image = ref
                if push:
                    self._push(ref)
                    result.pushed = True
            result.seconds = time.monotonic() - started
            if check_imports:
                result.import_problems = self.check_imports(ctx, local)
                result.checked = True
            report.images[ctx.name] = result
        report.messages = list(self.messages)
        return report

    def _docker_build(self, ctx: BuildContext, ref: str, nocache: bool = False) -> None:
        stream = self.client.api.build(fileobj=ctx.tarball(), custom_context=True, tag=ref, rm=True, forcerm=True,
                                       pull=False, decode=True, network_mode=self.network, timeout=3600,
                                       nocache=nocache)
        follow_build(stream, ctx.name, self.log, offline=ctx.offline, cancelled=self.cancelled)

    def _push(self, ref: str) -> None:
        repository, tag = ref.rsplit(":", 1)
        for chunk in self.client.api.push(repository, tag=tag, stream=True, decode=True):
            if "error" in chunk or "errorDetail" in chunk:
                detail = chunk.get("error") or chunk.get("errorDetail", {}).get("message")
                raise BuildError(f"pushing {ref} failed: {detail}. Fix: check that the registry is running and "
                                 "reachable from the engine (an http registry other than localhost must be listed "
                                 "in dockerd's insecure-registries).")
            if "status" in chunk and chunk.get("id") is None:
                self.log(f"push {ref}: {chunk['status']}")

    # -- pre-flight import check

    def check_imports(self, ctx: BuildContext, image: str) -> list[ImportProblem]:
        """Import, in the image, every module the code imports (cached per image id)."""
        modules = sorted(set(ctx.requirements.modules_to_check()) | (set(RUNTIME_MODULES) if ctx.kind == "executor" else set()))
        image_id = self.client.images.get(image).id
        key = f"{image_id} {' '.join(modules)}"
        results = _cache_read("import-checks.json").get(key)
        if results is None:
            results = run_import_check(self.client, image, modules)
            if all(v is None for v in results.values()):  # only successes are cached
                _cache_write("import-checks.json", key, results)
        problems = []
        for module, error in sorted(results.items()):
            if error is None:
                continue
            imported = [m for m in ctx.requirements.imports if m.module == module]
            cell = imported[0].cell if imported else None
            problems.append(ImportProblem(ctx.name, module, error, _import_fix(self.app, ctx, module, error), cell))
        return problems


_CHECK_SCRIPT = """
import importlib, json, sys
results = {}
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
        results[name] = None
    except BaseException as exc:  # noqa
        results[name] = f"{type(exc).__name__}: {exc}"
print("\\n" + json.dumps(results))
"""


def run_once(client: Any, image: str, argv: list[str], timeout: float = 300) -> bytes:
    """Run `argv` in a throw-away container of `image` (no network); return its stdout.

    The container carries the runner label, so one left behind by a killed process is removed
    by the docker backend's next run; it is always removed here, whatever happens.
    """
    container = client.containers.create(image, argv[1:], entrypoint=argv[:1], network_mode="none",
                                          environment={"MPLBACKEND": "Agg"},
                                          labels={LABEL_RUNNER: runner_id(), "scanflow.io/purpose": "check"})
    try:
        container.start()
        status = container.wait(timeout=timeout)
        out = container.logs(stdout=True, stderr=False)
        if status.get("StatusCode") != 0:
            err = container.logs(stdout=False, stderr=True).decode(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(f"`{' '.join(argv[:2])} …` exited with {status.get('StatusCode')}: {' | '.join(err)}")
        return out
    finally:
        try:
            container.remove(force=True)
        except Exception:  # noqa: BLE001 - already gone
            pass


def run_import_check(client: Any, image: str, modules: list[str]) -> dict[str, str | None]:
    """{module: None if it imports in `image`, else the error}; the container runs with no network."""
    out = run_once(client, image, ["python", "-c", _CHECK_SCRIPT, *modules])
    return json.loads(out.decode(errors="replace").strip().splitlines()[-1])


def _import_fix(app: Application, ctx: BuildContext, module: str, error: str) -> str:
    top = module.split(".")[0]
    where = f"`%%{ctx.kind} {ctx.name}`"
    if not error.startswith("ModuleNotFoundError") or f"'{top}'" not in error:
        return ("the package is installed but fails to import (a system library or a dependency missing?): "
                f"build on a base image that has it (--image on {where}, or SCANFLOW_BASE_IMAGE), "
                "or add the missing dependency with --requirements.")
    dists = distributions_for(module)
    if dists:
        return (f"add `--requirements {dists[0]}` to {where} (it is installed here, so it will be pinned to the "
                "same version).")
    return (f"no package installed in the notebook's environment provides '{top}': install it there (then "
            f"Scanflow pins it), or add `--requirements PACKAGE` naming its distribution to {where}.")


# --- reading the build stream -----------------------------------------------------------------

_STEP_LINE = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_NETWORK_HINTS = ("Temporary failure in name resolution", "Could not fetch URL", "CERTIFICATE_VERIFY_FAILED",
                  "SSLError", "Network is unreachable", "ConnectionError", "No route to host", "NewConnectionError")


def follow_build(stream: Any, name: str, log: Log, *, offline: bool = False,
                 cancelled: Callable[[], bool] | None = None) -> str | None:
    """Consume a classic-builder stream; return the image id or raise BuildError with the failing lines.

    If `cancelled()` turns true the stream is dropped (the engine stops a build whose client left).
    """
    instruction: str | None = None
    since_step: deque[str] = deque(maxlen=400)
    image_id = None
    for chunk in stream:
        if cancelled is not None and cancelled():
            close = getattr(stream, "close", None)
            if close is not None:
                close()
            raise BuildError(f"the build of '{name}' was cancelled.", name, instruction)
        if "stream" in chunk:
            for line in chunk["stream"].splitlines():
                line = line.rstrip()
                if not line:
                    continue
                match = _STEP_LINE.match(line)
                if match:
                    instruction = match.group(3)
                    since_step.clear()
                    log(f"{name}: {line}")
                else:
                    since_step.append(line)
                    log(f"{name}:   {line}")
        if "aux" in chunk and isinstance(chunk["aux"], dict) and "ID" in chunk["aux"]:
            image_id = chunk["aux"]["ID"]
        if "error" in chunk or "errorDetail" in chunk:
            detail = chunk.get("error") or (chunk.get("errorDetail") or {}).get("message") or "unknown error"
            raise _build_error(name, instruction, list(since_step), detail.strip(), offline)
    return image_id


def _build_error(name: str, instruction: str | None, lines: list[str], detail: str, offline: bool) -> BuildError:
    failing = [line for line in lines if line.startswith(("ERROR", "E: ", "error:")) or "Error" in line[:40]]
    failing = failing[-6:] or lines[-6:]
    text = " ".join(lines)
    if instruction and "pip install" in instruction:
        if any(hint in text for hint in _NETWORK_HINTS):
            fix = ("the build cannot reach the package index: check the proxy CA certificates (--ca-certs / "
                   "SCANFLOW_CA_CERTS), try SCANFLOW_BUILD_NETWORK=host, or build offline with --wheelhouse DIR.")
        elif offline:
            fix = "a wheel is missing from the wheelhouse: delete its layer folder so it is fetched again."
        else:
            fix = ("check the requirement pins (`scanflow inspect --json` shows them): the version must exist on the "
                   "package index for the image's Python; override one with --requirements NAME==VERSION.")
    elif instruction and "update-ca-certificates" in instruction:
        fix = "the base image lacks the ca-certificates package: use a base image that has it."
    elif instruction and instruction.startswith("FROM"):
        fix = "the base image is not available: run `scanflow build-base` or set SCANFLOW_BASE_IMAGE."
    else:
        fix = "see the failing lines above; `scanflow build --verbose` prints the whole build log."
    where = f" at `{instruction}`" if instruction else ""
    shown = "\n    ".join(failing)
    message = f"building the image of '{name}' failed{where}: {detail}\n    {shown}\n  Fix: {fix}"
    return BuildError(message, name, instruction, failing)
