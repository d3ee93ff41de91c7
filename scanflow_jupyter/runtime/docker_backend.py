"""The docker backend: each step attempt runs in a container of its step's image (Docker Engine).

`prepare` builds (or reuses, by content hash) one image per executor, runs the pre-flight import
check and, when the run tracks into a local MLflow store, makes sure `scanflow tracker` serves it
over HTTP. Each attempt then runs ``python -m scanflow_jupyter.runtime.execute_step`` in a
container with:

* the run store bind-mounted at the same absolute path (the ``__scanflow__`` paths just work),
  the notebook's folder mounted and used as working folder, the MLflow artifact root mounted;
* the host's network (the tracker listens on 127.0.0.1), the host user's uid/gid (files in the
  store stay the user's), ``MLFLOW_TRACKING_URI`` pointing at the tracker;
* credentials only as environment (MLFLOW_*, AWS_*, … and the names in ``SCANFLOW_DOCKER_ENV``);
* labels ``scanflow.io/app``, ``scanflow.io/step``, ``scanflow.io/run``.

Container output streams into ``step_log`` / ``step_cell`` events; output.ipynb is written by the
executor inside the container after every cell. Cancellation (Ctrl-C, SIGTERM) and timeouts kill
and remove the container. If the build or the import check fails, every attempt fails at once
with that message, before any container runs.
"""

from __future__ import annotations

import ast
import asyncio
import copy
import getpass
import os
import re
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from scanflow_jupyter import process_liveness
from scanflow_jupyter.build.context import LABEL_APP, LABEL_RUN, LABEL_RUNNER, LABEL_STEP, runner_id
from scanflow_jupyter.quantities import memory_bytes, nano_cpus
from scanflow_jupyter.redact import redact_uri, tracking_environment
from scanflow_jupyter.runtime.backends import Backend, StepJob, StepOutcome
from scanflow_jupyter.runtime.child_protocol import parse_event
from scanflow_jupyter.runtime.docker_warm import ContainerSpec, WarmContainer, WarmPool, warm_size
from scanflow_jupyter.runtime.figures import INLINE_BACKEND

LABEL_ATTEMPT = "scanflow.io/attempt"
FORWARDED_PREFIXES = ("MLFLOW_", "AWS_", "AZURE_", "GOOGLE_", "GCS_", "DATABRICKS_", "HF_", "HUGGING_FACE_")
FORWARDED_NAMES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "TZ")
NOT_FORWARDED = ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID")


def container_limits(cpu: str | None, memory: str | None) -> dict[str, int]:
    """Docker's `nano_cpus` / `mem_limit` for a step's `--cpu` / `--memory` (Kubernetes quantities)."""
    limits = {}
    if cpu:
        limits["nano_cpus"] = nano_cpus(cpu)
    if memory:
        limits["mem_limit"] = memory_bytes(memory)
    return limits


def forwarded_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Host variables a step container receives (credentials, proxies, `SCANFLOW_DOCKER_ENV` names)."""
    environ = dict(os.environ if environ is None else environ)
    extra = [n.strip() for n in environ.get("SCANFLOW_DOCKER_ENV", "").split(",") if n.strip()]
    out = {}
    for name, value in environ.items():
        if name in NOT_FORWARDED:
            continue
        if name.startswith(FORWARDED_PREFIXES) or name in FORWARDED_NAMES or name in extra:
            out[name] = value
    return out


def with_tracking_uri(notebook: dict[str, Any], uri: str | None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The step notebook with the injected context's MLflow URI replaced (by its redacted form:
    the container gets the real one as environment); also that context."""
    nb = copy.deepcopy(notebook)
    for cell in nb.get("cells", []):
        if "injected-parameters" not in (cell.get("metadata") or {}).get("tags", []):
            continue
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        lines = source.split("\n")
        for i, line in enumerate(lines):
            if line.startswith("__scanflow__ = "):
                ctx = ast.literal_eval(line[len("__scanflow__ = "):])
                if uri is not None and isinstance(ctx, dict):
                    ctx.setdefault("mlflow", {})["tracking_uri"] = redact_uri(uri)
                    lines[i] = f"__scanflow__ = {ctx!r}"
                    cell["source"] = "\n".join(lines)
                return nb, ctx
    return nb, None


def in_thread(fn: Any, *args: Any) -> asyncio.Future[Any]:
    """Run a blocking call in a thread of its own; await its result.

    Not the loop's shared executor: a step blocked in `container.wait()` must never keep the
    removal of another container (cancellation) waiting for a free worker, and a pending call
    must never delay the interpreter's exit.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def target() -> None:
        try:
            result = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            outcome: tuple[Any, BaseException | None] = (None, exc)
        else:
            outcome = (result, None)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:  # the loop is closed: nobody waits for this any more
            pass

    threading.Thread(target=target, daemon=True, name=f"scanflow-docker-{getattr(fn, '__name__', 'call')}").start()
    return future


def _container_name(run_id: str, step: str, attempt: int) -> str:
    return re.sub(r"[^a-zA-Z0-9_.-]", "-", f"scanflow-{run_id}-{step}-{attempt}")



def _user_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001
        return "scanflow"


def _progress(line: str) -> None:
    """Image-build progress on stderr (the live view keeps stdout)."""
    sys.stderr.write(f"scanflow build: {line}\n")
    sys.stderr.flush()


def _mounts(paths: list[Path]) -> dict[str, dict[str, str]]:
    """Same-path read-write bind mounts; a folder inside another mounted one is not mounted twice."""
    chosen: list[Path] = []
    # not resolve(): the paths in `__scanflow__` are absolute but may go through symlinks
    for path in sorted({Path(os.path.abspath(p)) for p in paths}, key=lambda p: len(p.parts)):
        if not any(path == c or path.is_relative_to(c) for c in chosen):
            chosen.append(path)
    return {str(p): {"bind": str(p), "mode": "rw"} for p in chosen}


class DockerBackend(Backend):
    """Run step attempts in containers on the local (or `DOCKER_HOST`) Docker Engine."""

    name = "docker"

    def __init__(self, app: Any, options: dict[str, Any] | None = None) -> None:
        super().__init__(app, options)
        self.client: Any = None
        self.images: dict[str, str] = {}
        self.preflight_error: dict[str, Any] | None = None
        self.container_tracking: dict[str, str] = {}
        self._containers: dict[tuple[str, int], Any] = {}
        self._lock = threading.Lock()
        self.build_report: Any = None
        self._preparation: asyncio.Future[None] | None = None
        self._closing = threading.Event()
        self._tracker_lease: Path | None = None  # this run's lease on the project's tracker
        self._warm: WarmPool | None = None  # containers started ahead of their steps (docker_warm)
        self._pipes: dict[tuple[str, int], WarmContainer] = {}  # warm containers handed to a step
        self._removals: set[asyncio.Future[Any]] = set()  # containers of finished steps being removed
        self._expected: int | None = None  # attempts the runner may still launch (expect())
        self._warm_size = 0  # SCANFLOW_DOCKER_WARM, read in prepare
        self._begun: set[str] = set()  # steps whose first attempt began (never warmed after that)
        self._handovers: dict[tuple[str, int], Any] = {}  # key -> writes the step's request to its warm container

    # ------------------------------------------------------------------ preparation
    async def prepare(self, steps_to_run: int) -> None:
        await self._prepared()

    def _prepared(self) -> asyncio.Future[None]:
        """The preparation (started once); the scheduler may ask for a step before it is done."""
        if self._preparation is None:
            self._preparation = in_thread(self._prepare)
        return self._preparation

    def _prepare(self) -> None:
        try:
            self._prepare_engine_images_tracker()
        except Exception as exc:  # noqa: BLE001 - any surprise fails the steps, never the runner
            if self.preflight_error is None:
                self._fail_all("DockerBackendError", f"{type(exc).__name__}: {exc}")

    def _prepare_engine_images_tracker(self) -> None:
        from scanflow_jupyter.build.builder import EngineUnavailable, docker_client

        try:
            self._warm_size = warm_size()
        except ValueError as exc:
            self._fail_all("ValueError", str(exc))
            return
        try:
            self.client = docker_client()
        except EngineUnavailable as exc:
            self._fail_all("DockerEngineUnavailable", str(exc))
            return
        self._reap_orphans()
        tracker_error: list[str] = []
        tracker_thread = None
        if self._uses_mlflow():
            tracker_thread = threading.Thread(target=self._start_tracker, args=(tracker_error,), daemon=True)
            tracker_thread.start()
        self._build_images()
        if tracker_thread is not None:
            tracker_thread.join()
            if tracker_error and self.preflight_error is None:
                self._fail_all("TrackerError", tracker_error[0])

    def _uses_mlflow(self) -> bool:
        return any("mlflow" in ex.source for ex in self.app.executors) or any("mlflow" in b.source for b in self.app.setup)

    def _start_tracker(self, errors: list[str]) -> None:
        from scanflow_jupyter.mlflow_server import (
            TrackerError,
            ensure_tracker,
            is_local_store,
            status,
            wait_for_experiment,
        )
        from scanflow_jupyter.mlflow_server.registry import take_lease
        from scanflow_jupyter.tracking import resolve_tracking_uri, scanflow_home

        uri = resolve_tracking_uri(scanflow_home())
        if status() is None:  # let the run's own recorder create (migrate) a fresh store first
            wait_for_experiment(uri, self.app.name, stop=self._closing.is_set)
        if self._closing.is_set():
            return
        try:
            if is_local_store(uri):  # the tracker does not idle out while this run lives (see close())
                self._tracker_lease = take_lease(scanflow_home())
            # keyed by the redacted URI: that is what the step notebooks' context names
            self.container_tracking[redact_uri(uri) or uri] = ensure_tracker(uri)
        except TrackerError as exc:
            errors.append(str(exc))
        except Exception as exc:  # noqa: BLE001
            errors.append(f"could not start the tracking server: {type(exc).__name__}: {exc}")

    def _build_images(self) -> None:
        from scanflow_jupyter.build.base import BaseImageError
        from scanflow_jupyter.build.builder import BuildError, ImageBuilder
        from scanflow_jupyter.build.wheelhouse import WheelhouseError

        verbose = os.environ.get("SCANFLOW_BUILD_VERBOSE", "") not in ("", "0")

        def log(line: str) -> None:
            if verbose or ": building " in line or line.startswith("built offline base"):
                _progress(line)

        builder = ImageBuilder(self.app, client=self.client, wheelhouse=os.environ.get("SCANFLOW_WHEELHOUSE") or None,
                               log=log, cancelled=self._closing.is_set)
        try:
            report = builder.build([ex.name for ex in self.app.executors])
        except (BuildError, BaseImageError, WheelhouseError) as exc:
            self._fail_all("ImageBuildError", str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - engine errors: report, do not crash the runner
            self._fail_all("ImageBuildError", f"{type(exc).__name__}: {exc}")
            return
        self.build_report = report
        self.images = {name: result.image for name, result in report.images.items()}
        problems = report.import_problems
        if problems:
            listed = "\n".join(f"  - {p}" for p in problems)
            self._fail_all("ImportCheckError",
                           f"the pre-flight import check failed, so no step was started:\n{listed}")

    def _fail_all(self, ename: str, evalue: str) -> None:
        self.preflight_error = {"cell": None, "ename": ename, "evalue": evalue, "traceback": []}

    def _reap_orphans(self) -> None:
        """Remove step containers whose runner process on this host is gone (e.g. killed -9)."""
        host = socket.gethostname()
        try:
            containers = self.client.containers.list(all=True, filters={"label": LABEL_RUNNER}, ignore_removed=True)
        except Exception:  # noqa: BLE001
            return
        for container in containers:
            owner = container.labels.get(LABEL_RUNNER, "")
            owner_host, _, pid = owner.rpartition(":")
            if owner_host == host and pid.isdigit() and not process_liveness.alive(int(pid)):
                try:
                    container.remove(force=True)
                except Exception:  # noqa: BLE001
                    pass

    # ------------------------------------------------------------------ attempts
    async def run_step(self, job: StepJob) -> StepOutcome:
        await asyncio.shield(self._prepared())
        if self.preflight_error is not None:
            return StepOutcome("failed", dict(self.preflight_error))
        image = self.images.get(job.step)
        if image is None:
            return StepOutcome("failed", {"cell": None, "ename": "ImageBuildError",
                                          "evalue": f"no image was built for step '{job.step}'.", "traceback": []})
        key = (job.step, job.attempt)
        self._begun.add(job.step)
        starting = in_thread(self._start_container, job, image, key)
        try:
            container = await asyncio.shield(starting)
        except asyncio.CancelledError:  # wait for the container to exist, then remove it
            await asyncio.shield(asyncio.wait({starting}))
            await asyncio.shield(in_thread(self._discard, key))
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. the image was removed, a mount was refused
            await asyncio.shield(in_thread(self._discard, key))
            return StepOutcome("failed", {"cell": None, "ename": "DockerError",
                                          "evalue": f"could not start the container of step '{job.step}': {exc}",
                                          "traceback": []})
        started = time.monotonic()
        job.emit("step_started", container=container.short_id, image=image, warm=key in self._pipes)
        if job.attempt == 1:
            self._warm_next(job)  # after this step's own container: it comes first
        loop = asyncio.get_running_loop()
        state: dict[str, Any] = {"outcome": None, "tail": [], "reported": loop.create_future(),
                                 "attached": loop.create_future()}
        pump = in_thread(self._pump_logs, container, job, loop, state)
        handover = self._handovers.pop(key, None)
        if handover is not None:  # a warm container: tell it the step once its output is followed
            try:
                await asyncio.wait({state["attached"], pump}, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                await asyncio.shield(in_thread(self._discard, key))
                raise
            handover()
        waiter = in_thread(container.wait)
        try:
            done, _ = await asyncio.wait({waiter, state["reported"]}, timeout=job.timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            await asyncio.shield(in_thread(self._discard, key))
            raise
        if waiter not in done and state["reported"] in done and state["outcome"].get("status") == "succeeded":
            # output.ipynb, the outputs and the log are written before the outcome line: the step is
            # done; the container's end and removal are off its path (close() waits for them)
            state["finished"] = True
            self._remove_later(key, waiter, pump)
            return self._outcome(job, {"StatusCode": 0}, state, False)
        if waiter not in done:
            done, _ = await asyncio.wait({waiter}, timeout=self._time_left(job, started))
        if waiter not in done:
            await asyncio.shield(in_thread(self._discard, key))
            await asyncio.wait({pump}, timeout=10)
            return StepOutcome("failed", {
                "cell": None, "ename": "TimeoutError",
                "evalue": f"step '{job.step}' did not finish within --timeout {job.timeout:g} s; its container was removed.",
                "traceback": []})
        try:
            exit_status = waiter.result()
        except Exception as exc:  # noqa: BLE001 - the engine went away mid-step
            await asyncio.shield(in_thread(self._discard, key))
            return StepOutcome("failed", {"cell": None, "ename": "DockerError",
                                          "evalue": f"lost the step's container: {exc}", "traceback": []})
        try:
            await asyncio.wait({pump}, timeout=30)
            oom = await in_thread(self._oom_killed, container)
        finally:  # the container has ended: its removal is off the step's path (close() waits for it)
            self._remove_later(key, waiter, pump)
        return self._outcome(job, exit_status, state, oom)

    def _remove_later(self, key: tuple[str, int], *after: asyncio.Future[Any]) -> None:
        """Remove a finished step's container once `after` (its end, its log pump) are done."""
        async def remove() -> None:
            await asyncio.wait(after, timeout=30)
            await in_thread(self._discard, key)

        removal = asyncio.ensure_future(remove())
        self._removals.add(removal)
        removal.add_done_callback(self._removals.discard)

    @staticmethod
    def _time_left(job: StepJob, started: float) -> float | None:
        return None if job.timeout is None else max(0.0, job.timeout - (time.monotonic() - started))

    def _start_container(self, job: StepJob, image: str, key: tuple[str, int]) -> Any:
        from scanflow_jupyter.notebook.compile import dumps

        _, ctx = with_tracking_uri(job.notebook, None)
        container_uri = self.container_tracking.get(((ctx or {}).get("mlflow") or {}).get("tracking_uri") or "", None)
        notebook, ctx = with_tracking_uri(job.notebook, container_uri)
        input_path = job.step_dir / "input.ipynb"
        input_path.write_text(dumps(notebook), encoding="utf-8")
        folders = [Path(entry["folder"]) for entry in ((ctx or {}).get("inputs") or {}).values()]
        spec = self._spec(job.step, job.attempt, job.step_dir, job.outputs_dir, folders, container_uri, image)
        request = {"notebook": str(input_path), "output": str(job.step_dir / "output.ipynb"),
                   "log": str(job.step_dir / "log.txt"), "attempt": job.attempt}
        warm = self._warm.take(job.step) if self._warm is not None and job.attempt == 1 else None
        if warm is not None:
            container = self._hand_over(warm, spec, request, key)
            if container is not None:
                return container
        command = ["python", "-m", "scanflow_jupyter.runtime.execute_step", "--notebook", request["notebook"],
                   "--output", request["output"], "--log", request["log"],
                   "--cwd", spec.working_dir, "--attempt", str(job.attempt)]
        self._remove_by_name(spec.name)
        container = spec.create(self.client, command)
        with self._lock:
            self._containers[key] = container
        if self._closing.is_set():  # the run is being stopped: never start it
            raise RuntimeError("the run is being stopped")
        container.start()
        return container

    def _spec(self, step: str, attempt: int, step_dir: Path, outputs_dir: Path, input_folders: list[Path],
              container_uri: str | None, image: str) -> ContainerSpec:
        """How the container of one step attempt is created (the same for a cold and a warm start)."""
        from scanflow_jupyter.tracking import default_artifact_root, scanflow_home

        run_id = step_dir.parent.name
        workdir = Path(self.app.notebook).absolute().parent
        artifact_root = Path(default_artifact_root(scanflow_home()))
        artifact_root.mkdir(parents=True, exist_ok=True)
        paths = [workdir, step_dir.parent.parent, outputs_dir, artifact_root, *input_folders]
        env = forwarded_environment()
        env.update({
            "HOME": "/tmp", "USER": _user_name(), "LOGNAME": _user_name(), "PYTHONUNBUFFERED": "1",
            "MPLBACKEND": INLINE_BACKEND, "SCANFLOW_STEP": "1", "SCANFLOW_RUN_ID": run_id, "SCANFLOW_STEP_NAME": step,
        })
        if container_uri:  # credentials only as run-time environment (split out of the URI)
            env.update(tracking_environment(container_uri, env))
        labels = {LABEL_APP: self.app.name, LABEL_STEP: step, LABEL_RUN: run_id,
                  LABEL_ATTEMPT: str(attempt), LABEL_RUNNER: runner_id()}
        res = self._executor(step).resources
        limits: dict[str, Any] = container_limits(res.cpu, res.memory)
        if res.gpu:
            import docker.types

            limits["device_requests"] = [docker.types.DeviceRequest(count=int(res.gpu), capabilities=[["gpu"]])]
        return ContainerSpec(image, _container_name(run_id, step, attempt), labels, env, _mounts(paths), str(workdir),
                             f"{os.getuid()}:{os.getgid()}", limits)

    def _executor(self, step: str) -> Any:
        return next(ex for ex in self.app.executors if ex.name == step)

    # ------------------------------------------------------------------ warm containers
    def _warm_next(self, job: StepJob) -> None:
        """A step starts: warm the containers of the steps that may follow it (see docker_warm)."""
        if self._warm is None and self._warm_size and not self._closing.is_set():
            from scanflow_jupyter.model import Pipeline

            deps = {name: list(step.depends_on) for name, step in Pipeline.from_application(self.app).steps.items()}
            loop = asyncio.get_running_loop()
            self._warm = WarmPool(self.client, self._warm_size, deps, lambda step: self._warm_spec(step, job.step_dir.parent),
                                  started=self._begun, on_ready=lambda: self._refill_soon(loop))
            self._warm.expected = self._expected
        if self._warm is not None:
            self._warm.started(job.step)

    def _refill_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        """From a worker thread: refill the warm pool on the event loop (its only thread)."""
        try:
            loop.call_soon_threadsafe(lambda: self._warm is not None and self._warm.refill())
        except RuntimeError:  # the loop is closed: the run is over
            pass

    def expect(self, steps_left: int) -> None:
        self._expected = steps_left
        if self._warm is not None:
            self._warm.expected = steps_left
            self._warm.refill()

    def _warm_spec(self, step: str, run_dir: Path) -> ContainerSpec | None:
        """The container spec of a step's first attempt in this run, as `_start_container` will compute it."""
        image = self.images.get(step)
        if image is None or self.preflight_error is not None:
            return None
        uri = redact_uri(self.options.get("tracking_uri"))
        step_dir = run_dir / step
        return self._spec(step, 1, step_dir, step_dir / "outputs", [], self.container_tracking.get(uri or ""), image)

    def _hand_over(self, warm: WarmContainer, spec: ContainerSpec, request: dict[str, Any],
                   key: tuple[str, int]) -> Any | None:
        """Claim the warm container for this attempt (the request is written once its logs are followed);
        None (container removed) if it cannot serve this attempt."""
        try:
            container = warm.ready.result()
        except Exception:  # noqa: BLE001 - it never started: start cold
            warm.release()
            return None
        with self._lock:
            self._containers[key] = container
            self._pipes[key] = warm
        if self._closing.is_set():
            raise RuntimeError("the run is being stopped")
        try:
            container.reload()
            usable = warm.spec == spec and container.status == "running"
        except Exception:  # noqa: BLE001 - e.g. the engine restarted: start cold
            usable = False
        if not usable:
            self._discard(key)
            return None
        # written once the log pump is attached: output between attach's replay and its stream may be lost
        self._handovers[key] = lambda: warm.hand_over(request)
        return container

    def _remove_by_name(self, name: str) -> None:
        import docker.errors

        try:
            self.client.containers.get(name).remove(force=True)
        except docker.errors.NotFound:
            pass

    def _pump_logs(self, container: Any, job: StepJob, loop: asyncio.AbstractEventLoop, state: dict[str, Any]) -> None:
        """Turn the container's output into events (on the event loop, in order)."""
        buffers = {"stdout": "", "stderr": ""}
        log_path = job.step_dir / "log.txt"

        def handle(stream: str, line: str) -> None:
            event = parse_event(line) if stream == "stdout" else None
            if event is not None:
                self._on_event(job, loop, state, event)
                return
            try:
                with log_path.open("a", encoding="utf-8") as fh:
                    fh.write(line + "\n")
            except OSError:
                pass
            if state.get("finished"):  # the step has ended (its container is stopping): the log file only
                return
            state["tail"] = (state["tail"] + [line])[-30:]
            loop.call_soon_threadsafe(lambda: job.emit("step_log", text=line + "\n", cell=None, stream=stream))

        try:
            stream = container.attach(stdout=True, stderr=True, stream=True, logs=True, demux=True)
            attached = state.get("attached")
            if attached is not None:
                loop.call_soon_threadsafe(lambda: attached.done() or attached.set_result(True))
            for out, err in stream:
                for stream, data in (("stdout", out), ("stderr", err)):
                    if not data:
                        continue
                    buffers[stream] += data.decode("utf-8", errors="replace")
                    *lines, buffers[stream] = buffers[stream].split("\n")
                    for line in lines:
                        handle(stream, line)
        except Exception:  # noqa: BLE001 - the container was removed (cancellation) or the engine left
            pass
        for stream, rest in buffers.items():
            if rest:
                handle(stream, rest)

    @staticmethod
    def _on_event(job: StepJob, loop: asyncio.AbstractEventLoop, state: dict[str, Any], event: dict[str, Any]) -> None:
        kind = event.get("t")
        if kind == "cell":
            text = event.get("text") or ""

            def emit_cell() -> None:
                if text:
                    job.emit("step_log", text=text, cell=event.get("cell"))
                job.emit("step_cell", index=event.get("index"), cell=event.get("cell"), role=event.get("role"))

            loop.call_soon_threadsafe(emit_cell)
        elif kind == "outcome":
            state["outcome"] = event
            reported = state.get("reported")
            if reported is not None:
                loop.call_soon_threadsafe(lambda: reported.done() or reported.set_result(True))

    def _oom_killed(self, container: Any) -> bool:
        try:
            container.reload()
            return bool(container.attrs.get("State", {}).get("OOMKilled"))
        except Exception:  # noqa: BLE001
            return False

    def _outcome(self, job: StepJob, exit_status: dict[str, Any], state: dict[str, Any], oom: bool) -> StepOutcome:
        code = int(exit_status.get("StatusCode", -1))
        reported = state.get("outcome")
        if reported and reported.get("status") in ("succeeded", "failed") and not oom:
            return StepOutcome(reported["status"], reported.get("error"), {"exit_code": code})
        tail = list(state.get("tail") or [])
        if oom:
            evalue = (f"the container of step '{job.step}' ran out of memory"
                      f"{f' (--memory {job.executor.resources.memory})' if job.executor.resources.memory else ''}"
                      " and was killed.")
            ename = "OutOfMemory"
        else:
            evalue = f"the container of step '{job.step}' exited with code {code} before reporting a result."
            ename = "ContainerExited"
        return StepOutcome("failed", {"cell": None, "ename": ename, "evalue": evalue, "traceback": tail[-20:]},
                           {"exit_code": code})

    def _discard(self, key: tuple[str, int]) -> None:
        """Kill and remove one step container (idempotent)."""
        with self._lock:
            container = self._containers.pop(key, None)
            warm = self._pipes.pop(key, None)
            self._handovers.pop(key, None)
        try:
            if container is not None:
                self._remove(container)
        finally:
            if warm is not None:
                warm.release()  # its pipe, once nothing can read it any more

    @staticmethod
    def _remove(container: Any) -> None:
        for _ in range(3):
            try:
                container.remove(force=True)
                return
            except Exception as exc:  # noqa: BLE001
                if "No such container" in str(exc) or "is already in progress" in str(exc):
                    return
                time.sleep(0.5)

    async def close(self) -> None:
        self._closing.set()  # an image build still running in `prepare` stops at its next log line
        if self._tracker_lease is not None:
            from scanflow_jupyter.mlflow_server.registry import release_lease

            release_lease(self._tracker_lease)  # the tracker may now stop when idle
        with self._lock:
            keys = list(self._containers)
        pending = [in_thread(self._discard, k) for k in keys] + list(self._removals)
        if self._warm is not None:
            pending.append(in_thread(self._warm.close))
        await asyncio.gather(*pending, return_exceptions=True)
        if self.client is not None:
            try:
                self.client.close()
            except Exception:  # noqa: BLE001
                pass
