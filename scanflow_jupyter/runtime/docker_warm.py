"""Warm step containers for the docker backend: a step's container and kernel start before the step.

Most of a docker step's overhead is paid before its first cell: creating and starting the
container, Python's imports in it and the kernel's start. While earlier steps run, the backend
starts the containers of the steps that may run next (those whose dependencies have all started
or are warmed themselves), each running `warm_step`: it starts the step's kernel, pays its
first-use costs and waits on a named pipe. When the step starts, the backend writes the
input/output paths to the pipe and the step runs at once.

Isolation is that of a cold start: one container per step attempt, one fresh kernel, the same
image, environment, mounts, labels, user and limits — a warm container is used only when it was
created exactly as the step's container would be created now, else it is removed and the step
starts cold. The only extra is a private folder holding the pipe, mounted read-only. Warm
containers carry the run's labels, so cancellation, timeouts and the orphan reaping of a killed
runner treat them like any step container; those never used are removed when the run ends.

`SCANFLOW_DOCKER_WARM` = how many containers are kept started ahead (default 2; 0 = off); at most
two boot (start their kernel) at a time. Measured on a loaded 2-core machine, booting one at a
time made the chain's later steps wait for their kernels; two at a time did not.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scanflow_jupyter.runtime.child_protocol import event_line

WARM_ENV = "SCANFLOW_DOCKER_WARM"
DEFAULT_WARM = 2
LAUNCHER = ["python", "-m", "scanflow_jupyter.runtime.warm_step"]
READY = event_line("warm_ready").encode("utf-8")  # what the launcher prints once its kernel is ready


def warm_size(environ: dict[str, str] | None = None) -> int:
    """How many step containers to keep started ahead (`SCANFLOW_DOCKER_WARM`, default 2, 0 = off)."""
    raw = (os.environ if environ is None else environ).get(WARM_ENV, "").strip()
    if not raw:
        return DEFAULT_WARM
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{WARM_ENV}={raw!r} is not a whole number: set it to how many step containers to "
                         f"start ahead (0 turns warm containers off, default {DEFAULT_WARM}).") from None
    if value < 0:
        raise ValueError(f"{WARM_ENV}={raw!r} is negative: use 0 to turn warm containers off.")
    return value


@dataclass
class ContainerSpec:
    """Everything a step container is created with, except its command (equal specs = same isolation)."""

    image: str
    name: str
    labels: dict[str, str]
    environment: dict[str, str]
    volumes: dict[str, dict[str, str]]
    working_dir: str
    user: str
    limits: dict[str, Any] = field(default_factory=dict)  # nano_cpus, mem_limit, device_requests

    def create(self, client: Any, command: list[str], extra_volumes: dict[str, dict[str, str]] | None = None) -> Any:
        return client.containers.create(
            self.image, command, name=self.name, labels=self.labels, environment=self.environment,
            network_mode="host", init=True, user=self.user, working_dir=self.working_dir,
            volumes={**self.volumes, **(extra_volumes or {})}, **self.limits)


@dataclass(eq=False)
class WarmContainer:
    """A started step container whose launcher waits for its request on `folder/request`."""

    step: str
    folder: Path
    fd: int  # our end of the pipe (read-write: opening never blocks, and the pipe outlives a slow reader)
    spec: ContainerSpec | None = None  # set once computed (in the starting thread)
    container: Any = None  # set once created
    ready: Future[Any] = field(default_factory=Future)  # -> the container, once its kernel is ready

    def hand_over(self, request: dict[str, Any]) -> None:
        """Write the step's request (one JSON line, far below the pipe's atomic size)."""
        os.write(self.fd, (json.dumps(request) + "\n").encode("utf-8"))

    def release(self) -> None:
        """Close our end of the pipe and remove its folder (after the container is gone)."""
        try:
            os.close(self.fd)
        except OSError:
            pass
        shutil.rmtree(self.folder, ignore_errors=True)


def reap_folders(tmp: str | None = None) -> None:
    """Remove the pipe folders of runners that are gone (killed with -9: `close` never ran)."""
    from scanflow_jupyter import process_liveness

    for folder in Path(tmp or tempfile.gettempdir()).glob("scanflow-warm-*-*"):
        pid = folder.name.split("-")[2]
        if pid.isdigit() and not process_liveness.alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


class WarmPool:
    """Starts the containers of the steps likely to run next, at most `size` unused at a time.

    A step is warmed once each of its dependencies has started or is warmed itself, in pipeline order.

    `spec_of(step)` is the step's first-attempt container spec (None: do not warm it); `deps`
    maps each step to its dependencies, in pipeline order; `started` is the caller's set of steps
    whose first attempt began (never warmed), changed on one thread only (the event loop's, which
    is also the only one calling `refill`).
    """

    def __init__(self, client: Any, size: int, deps: dict[str, list[str]],
                 spec_of: Callable[[str], ContainerSpec | None], started: set[str] | None = None,
                 booting: int = 2, on_ready: Callable[[], None] | None = None) -> None:
        self.client = client
        self.size = size
        self.booting = booting  # containers booting at once (a boot is CPU-bound; pipeline order first)
        self.on_ready = on_ready  # called (from a worker thread) when one is ready or failed: refill then
        self.deps = deps
        self.spec_of = spec_of
        self.expected: int | None = None  # attempts the runner may still launch (Backend.expect)
        reap_folders()
        self.root = Path(tempfile.mkdtemp(prefix=f"scanflow-warm-{os.getpid()}-"))
        self._started = started if started is not None else set()  # steps whose first attempt began
        self._unused: dict[str, WarmContainer] = {}
        self._lock = threading.Lock()
        self._closed = False

    def started(self, step: str) -> None:
        """A step's first attempt begins: its dependents may now be warmed."""
        with self._lock:
            self._started.add(step)
        self.refill()

    def take(self, step: str) -> WarmContainer | None:
        """The step's warm container (still starting, perhaps), now owned by the caller."""
        with self._lock:
            return self._unused.pop(step, None)

    def refill(self) -> None:
        """Start containers for the next steps, up to `size` unused (and no more than may still run)."""
        with self._lock:
            if self._closed:
                return
            room = self.size if self.expected is None else min(self.size, self.expected)
            room -= len(self._unused)
            room = min(room, self.booting - sum(1 for e in self._unused.values() if not e.ready.done()))
            chosen = []
            for step, deps in self.deps.items():
                if room <= 0:
                    break
                ahead = self._started | self._unused.keys()  # a chain is warmed `size` steps ahead
                if step in ahead or not all(d in ahead for d in deps):
                    continue
                folder = Path(tempfile.mkdtemp(prefix="c", dir=self.root))
                os.mkfifo(folder / "request", 0o600)
                fd = os.open(folder / "request", os.O_RDWR)
                entry = WarmContainer(step, folder, fd)
                self._unused[step] = entry
                chosen.append(entry)
                room -= 1
        for entry in chosen:
            threading.Thread(target=self._start, args=(entry,), daemon=True, name=f"scanflow-warm-{entry.step}").start()

    def _start(self, entry: WarmContainer) -> None:
        try:
            spec = self.spec_of(entry.step)
            if spec is None:
                raise LookupError(f"step '{entry.step}' is not warmed")
            entry.spec = spec
            with self._lock:
                if self._closed:
                    raise RuntimeError("the run is ending")
            folder = str(entry.folder)
            container = spec.create(self.client, [*LAUNCHER, "--request", f"{folder}/request", "--cwd", spec.working_dir],
                                    extra_volumes={folder: {"bind": folder, "mode": "ro"}})
            with self._lock:
                entry.container = container
                closed = self._closed
            try:
                if closed:
                    raise RuntimeError("the run is ending")
                container.start()
                if not self._kernel_ready(container):
                    raise RuntimeError(f"the warm container of step '{entry.step}' ended before its kernel was ready")
            except BaseException:
                _remove(container)
                raise
        except BaseException as exc:  # noqa: BLE001 - the step then starts cold
            entry.ready.set_exception(exc)
        else:
            entry.ready.set_result(container)
        if self.on_ready is not None:
            self.on_ready()

    @staticmethod
    def _kernel_ready(container: Any) -> bool:
        """Follow the launcher's stdout until it says its kernel is ready (False: it ended first)."""
        stream = container.logs(stdout=True, stderr=False, stream=True, follow=True)
        seen = b""
        try:
            for chunk in stream:
                seen = seen[-len(READY):] + chunk
                if READY in seen:
                    return True
        finally:
            stream.close()
        return False

    def close(self) -> None:
        """Remove every unused warm container (waits for those still being created)."""
        with self._lock:
            self._closed = True
            left = list(self._unused.values())
            self._unused.clear()
        for entry in left:
            with self._lock:
                container = entry.container
            if container is None:  # being created: it sees `_closed` and removes itself
                try:
                    container = entry.ready.result()
                except Exception:  # noqa: BLE001
                    container = None
            if container is not None:
                _remove(container)  # a booting one too: its start then fails and ends
            entry.release()
        shutil.rmtree(self.root, ignore_errors=True)


def _remove(container: Any) -> None:
    try:
        container.remove(force=True)
    except Exception:  # noqa: BLE001 - already gone
        pass
