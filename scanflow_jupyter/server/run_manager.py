"""Runs started from the UI: one `scanflow run ... --json` subprocess each, state from the store.

The server never runs a pipeline in its own process: each run is a child process
`python -m scanflow_jupyter.cli run NB --json ...` with cwd = server root, so a run survives
nothing it should not (the runner writes `run.json` and `events.jsonl` itself) and the event
loop is never blocked. Everything shown comes from the run store, so a server restart keeps
the history; a run left `running` by a process that no longer exists is `interrupted`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import re
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scanflow_jupyter.cell_numbers import error_doc, message_doc, shown
from scanflow_jupyter.data.store import (
    RunNotFoundError,
    RunState,
    RunStore,
    RunUnreadableError,
    StoreError,
    UnreadableRun,
    pid_running,
    shown_status,
)
from scanflow_jupyter.process_liveness import command_text
from scanflow_jupyter.server.paths import relative_to_root

log = logging.getLogger(__name__)

START_TIMEOUT_S = 120.0  # the child must write run.json within this time
LOG_LIMIT = 2_000_000  # characters of a step log returned by `logs`


class RunRequestError(Exception):
    """The run request is invalid (→ 400); `messages` are validation messages (dicts)."""

    def __init__(self, message: str, messages: list[dict[str, Any]] | None = None, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.messages = messages or []
        self.fix = fix


class RunConflict(Exception):
    """The run is not in a state that allows the action (→ 409)."""


class RunStartError(Exception):
    """The runner process died before it created its run (→ 500 with its stderr)."""


@dataclass
class ManagedRun:
    """A runner subprocess started by this server."""

    proc: asyncio.subprocess.Process
    started: float
    run_id: str | None = None
    stdout: str = ""
    stderr: str = ""
    waiter: asyncio.Task[Any] | None = field(default=None, repr=False)

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None


def close_transport(proc: asyncio.subprocess.Process) -> None:
    """Close an exited child's transport now (else it is closed at garbage collection, possibly
    after its event loop has closed)."""
    transport = getattr(proc, "_transport", None)
    if transport is not None:
        transport.close()


def check_param(name: Any, value: Any) -> None:
    """RunRequestError unless `name` is an identifier and `value` a number, string, bool or null."""
    if not isinstance(name, str) or not name.isidentifier():
        raise RunRequestError(f"parameter name {name!r} is not a Python identifier",
                              fix="use the names of the notebook's parameters cell")
    if not (value is None or isinstance(value, bool | int | float | str)):
        raise RunRequestError(f"parameter {name}: {type(value).__name__} values cannot be passed",
                              fix="give a number, a string, true/false or null")
    if isinstance(value, float) and not math.isfinite(value):
        raise RunRequestError(f"parameter {name}: {value} is not a finite number", fix="give a finite number")


# characters JSON leaves raw that a YAML reader refuses or reads as line breaks: escaped as \uXXXX
# (the same text in both), so the file reads back identically as JSON and as YAML
_RAW_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff]")


def write_params_file(params: dict[str, Any]) -> str | None:
    """The parameters as a 0600 JSON file for `scanflow run --params-file` (None if there are none):
    values of any size stay out of the subprocess argv (whose strings are limited to 128 KiB)."""
    for name, value in params.items():
        check_param(name, value)
    if not params:
        return None
    text = _RAW_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(params, ensure_ascii=False))
    fd, path = tempfile.mkstemp(prefix="scanflow-params-", suffix=".json")  # mode 0600
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path


class RunManager:
    """Start, list, follow and cancel the pipeline runs of one server root."""

    def __init__(self, root: Path, home: Path, env: dict[str, str] | None = None, warm: bool = False) -> None:
        self.root = Path(root).resolve()
        self.home = Path(home)
        self.store = RunStore(self.home / "runs")
        self.extra_env = dict(env or {})
        self.managed: dict[str, ManagedRun] = {}
        self.warm = None  # a WarmWorker: runs start in a process that has imported the runner
        if warm:
            from scanflow_jupyter.server.warm_worker import WarmWorker

            self.warm = WarmWorker(self.root, self._child_env())
        self._cells: dict[str, tuple[float, dict[str, int]]] = {}
        # runs whose runner died: their MLflow runs end KILLED (in the background: may import mlflow)
        threading.Thread(target=self._end_dead_runs, name="scanflow-dead-runs", daemon=True).start()

    def _end_dead_runs(self) -> None:
        from scanflow_jupyter.tracking_sync import end_dead_project_runs

        end_dead_project_runs(self.home, self.extra_env.get("MLFLOW_TRACKING_URI"))

    # ------------------------------------------------------------------ validation
    def validate(self, notebook: Path, params: dict[str, Any], only: list[str], resume: str | None) -> None:
        """Raise RunRequestError with every validation message if the run cannot start."""
        from scanflow_jupyter.notebook.application import InvalidApplication, load_application

        try:
            app, _warnings = load_application(notebook)
        except InvalidApplication as exc:
            raise RunRequestError(f"{notebook.name} cannot run: fix the errors below; nothing was started",
                                  [message_doc(m) for m in exc.messages]) from None
        problems: list[dict[str, Any]] = []
        for name in params:
            if name not in app.parameters:
                known = ", ".join(app.parameters) or "none (the notebook has no parameters cell)"
                problems.append({"severity": "error", "code": "unknown-parameter", "cell": shown(app.parameters_cell),
                                 "text": f"the notebook has no parameter '{name}'.", "fix": f"use one of: {known}."})
        from scanflow_jupyter.params import check_param_types

        for _name, text, fix in check_param_types(app.parameters, params):
            problems.append({"severity": "error", "code": "bad-parameter-type", "cell": shown(app.parameters_cell),
                             "text": text, "fix": fix})
        names = [e.name for e in app.executors]
        for name in only:
            if name not in names:
                problems.append({"severity": "error", "code": "unknown-step", "cell": None,
                                 "text": f"only: no executor is named '{name}'.", "fix": f"use one of: {', '.join(names)}."})
        if resume:
            try:
                self.store.read_state(resume)
            except RunUnreadableError:
                raise  # not a bad request: the run's state on disk is broken (→ 422)
            except StoreError as exc:
                problems.append({"severity": "error", "code": "unknown-run", "cell": None, "text": str(exc),
                                 "fix": "resume a run listed by GET runs."})
        if problems:
            raise RunRequestError(f"{notebook.name}: the run request is invalid; nothing was started", problems)

    # ------------------------------------------------------------------ start
    async def start(self, notebook: Path, *, backend: str, params: dict[str, Any], only: list[str],
                    resume: str | None, env: dict[str, str] | None = None) -> dict[str, Any]:
        """Validate (in a thread), start the runner subprocess, wait for its run.json; a summary.
        `env` is added to the child's environment (over the server's and the manager's)."""
        for name, value in params.items():
            check_param(name, value)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.validate, notebook, params, only, resume)
        params_file = write_params_file(params)
        try:
            cmd = [sys.executable, "-m", "scanflow_jupyter.cli", "run", str(notebook), "--json", "--backend", backend,
                   *(["--params-file", params_file] if params_file else []),
                   *[a for name in only for a in ("--only", name)], *(["--resume", resume] if resume else [])]
            child_env = self._child_env(env)
            started = time.time()
            warm = False
            try:
                if self.warm is not None:  # `scanflow run ...` in the warm worker (or a fresh one)
                    proc, warm = await self.warm.launch(cmd[3:], child_env)
                else:
                    proc = await asyncio.create_subprocess_exec(*cmd, cwd=str(self.root), env=child_env,
                                                                stdin=asyncio.subprocess.DEVNULL,
                                                                stdout=asyncio.subprocess.PIPE,
                                                                stderr=asyncio.subprocess.PIPE)
            except OSError as exc:
                raise RunStartError(f"cannot start the runner ({cmd[0]}): {exc}") from None
            managed = ManagedRun(proc, started)
            managed.waiter = asyncio.ensure_future(self._collect(managed))
            state = await self._find_state(managed)  # the runner has read the file once run.json exists
        finally:
            if params_file:
                with contextlib.suppress(OSError):
                    os.unlink(params_file)
        managed.run_id = state.run_id
        self.managed[state.run_id] = managed
        log.info("scanflow run %s started (pid %s, %s worker, run.json after %.2f s) for %s", state.run_id, proc.pid,
                 "warm" if warm else "cold", time.time() - started, notebook)
        return self.summary(state)

    def _child_env(self, env: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of a runner process: the server's, the manager's, then `env`."""
        child_env = {**os.environ, **self.extra_env, **(env or {})}
        child_env["SCANFLOW_HOME"] = str(self.home)
        child_env["PYTHONUNBUFFERED"] = "1"
        child_env["SCANFLOW_STARTED_BY"] = "sidebar"
        return child_env

    def warm_up(self) -> None:
        """Start the warm worker in the background unless one is ready (call from the event loop)."""
        if self.warm is not None and self.warm.idle is None:
            asyncio.ensure_future(self.warm.start())

    def stop_warm(self) -> None:
        """Stop the idle warm worker (the server is stopping; started runs go on)."""
        if self.warm is not None:
            self.warm.stop()

    async def _collect(self, managed: ManagedRun) -> None:
        out, err = await managed.proc.communicate()
        close_transport(managed.proc)
        managed.stdout = out.decode(errors="replace")
        managed.stderr = err.decode(errors="replace")
        if managed.proc.returncode not in (0, 1, 130):
            log.warning("scanflow run (pid %s) exited %s: %s", managed.proc.pid, managed.proc.returncode,
                        managed.stderr[-2000:])

    async def _find_state(self, managed: ManagedRun) -> RunState:
        """The run whose run.json names the child's pid; errors if the child exits first."""
        pid = managed.proc.pid
        floor = time.strftime("%Y%m%dT%H%M%S", time.gmtime(managed.started - 2))
        deadline = time.monotonic() + START_TIMEOUT_S
        seen: set[str] = set()
        while True:
            for name in self._new_run_dirs(floor, seen):
                with contextlib.suppress(StoreError):
                    state = self.store.read_state(name)
                    seen.add(name)
                    if state.pid == pid:
                        return state
                    # another writer's run: never look at it again
            if not managed.alive:
                assert managed.waiter is not None
                await managed.waiter
                raise self._start_failure(managed)
            if time.monotonic() > deadline:
                managed.proc.terminate()
                raise RunStartError(f"the runner (pid {pid}) did not create its run within {START_TIMEOUT_S:.0f} s")
            await asyncio.sleep(0.05)

    def _new_run_dirs(self, floor: str, seen: set[str]) -> list[str]:
        try:
            names = [e.name for e in os.scandir(self.store.root) if e.is_dir() and e.name >= floor]
        except FileNotFoundError:
            return []
        return [n for n in names if n not in seen and n != "cache"]

    def _start_failure(self, managed: ManagedRun) -> Exception:
        """Exit 2 with a JSON document = invalid request (400); anything else = 500."""
        code = managed.proc.returncode
        doc: Any = None
        with contextlib.suppress(json.JSONDecodeError):
            doc = json.loads(managed.stdout)
        if code == 2:
            if isinstance(doc, dict) and doc.get("messages"):
                return RunRequestError("the run request is invalid; nothing was started", doc["messages"])
            return RunRequestError(managed.stderr.strip()[-2000:] or "the run request is invalid")
        return RunStartError(f"the runner exited {code} before it started the run: {managed.stderr.strip()[-2000:]}")

    # ------------------------------------------------------------------ state
    def is_managed_alive(self, run_id: str) -> bool:
        managed = self.managed.get(run_id)
        return managed is not None and managed.alive

    def process_alive(self, state: RunState) -> bool:
        """True while the run's runner process exists (it journals run_finished last)."""
        managed = self.managed.get(state.run_id)
        return managed.alive if managed is not None else pid_running(state.pid)

    def shown_status(self, state: RunState) -> str:
        """`interrupted` for a run left `running` by a process that is gone (data.store.shown_status)."""
        return shown_status(state, self.process_alive(state) if state.status == "running" else None)

    def read(self, run_id: str) -> RunState:
        return self.store.read_state(run_id)

    def get(self, run_id: str) -> dict[str, Any]:
        return self.summary(self.read(run_id))

    def list(self, notebook: Path | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Newest first; with `notebook`, only its runs. Without, runs whose run.json is broken are
        listed too, with status `unreadable` and the `message` and `fix` of RunUnreadableError."""
        if notebook is None:
            entries = self.store.list_entries(limit=limit)
        else:
            wanted = str(notebook)
            entries = [s for s in self.store.list_runs() if _same_path(s.notebook, wanted)][:limit]
        return [unreadable_summary(e) if isinstance(e, UnreadableRun) else self.summary(e) for e in entries]

    def summary(self, state: RunState) -> dict[str, Any]:
        """The RunSummary of REST_API.md."""
        now = time.time()
        status = self.shown_status(state)
        end = state.finished_at if state.finished_at else (now if status == "running" else None)
        cells = self._executor_cells(state.notebook)
        steps = {}
        for name, step in state.steps.items():
            duration = step.duration_s
            if duration is None and step.status == "running" and step.started_at:
                duration = now - step.started_at
            steps[name] = {"status": step.status, "attempts": step.attempts, "duration_s": duration,
                           "cell": shown(cells.get(name)), "error": error_doc(step.error.to_dict()) if step.error else None,
                           "started_at": step.started_at, "finished_at": step.finished_at}
        return {
            "run_id": state.run_id, "app": state.app,
            "notebook": relative_to_root(self.root, state.notebook) or state.notebook,
            "backend": state.backend, "status": status, "created_at": state.created_at,
            "started_at": state.started_at, "finished_at": state.finished_at,
            "duration_s": (end - state.started_at) if (end and state.started_at) else None,
            "params": state.params, "mlflow_run_id": state.mlflow_run_id, "resumed_from": state.resumed_from,
            "started_by": state.started_by, "tracking": state.tracking, "warnings": state.warnings,
            "steps": steps, "managed": state.run_id in self.managed,
            "workflow": self._workflow(state),
        }

    def _workflow(self, state: RunState) -> dict[str, Any] | None:
        """A kubernetes run's Argo Workflow (name, namespace, kubectl command, Argo UI link), or None."""
        if state.backend != "kubernetes":
            return None
        from scanflow_jupyter.kubernetes import workflow_ref

        try:
            return workflow_ref.summary(self.store.run_dir(state.run_id))
        except StoreError:
            return None

    def _executor_cells(self, notebook: str) -> dict[str, int]:
        """Executor name → cell index of the notebook as it is now (cached by mtime)."""
        try:
            mtime = Path(notebook).stat().st_mtime
        except OSError:
            return {}
        cached = self._cells.get(notebook)
        if cached and cached[0] == mtime:
            return cached[1]
        from scanflow_jupyter.notebook.parser import NotebookReadError, parse_notebook

        try:
            cells = {e.name: e.cell for e in parse_notebook(notebook).executors}
        except (NotebookReadError, OSError, ValueError):
            cells = {}
        self._cells[notebook] = (mtime, cells)
        return cells

    # ------------------------------------------------------------------ cancel
    async def cancel(self, run_id: str) -> str:
        """SIGTERM the runner (it stops its steps and exits 130); the status after that."""
        state = self.read(run_id)
        status = self.shown_status(state)
        if status != "running":
            raise RunConflict(f"run {run_id} is {status}, not running: there is nothing to cancel")
        managed = self.managed.get(run_id)
        if managed is not None:
            managed.proc.send_signal(signal.SIGTERM)
        elif state.pid and "scanflow" in command_text(state.pid):
            os.kill(state.pid, signal.SIGTERM)
        else:
            raise RunConflict(f"run {run_id} runs in process {state.pid}, which is not a scanflow runner "
                              "(a kernel?): stop it there")
        return "cancelling"

    # ------------------------------------------------------------------ logs
    def logs(self, run_id: str, step: str) -> dict[str, Any]:
        state = self.read(run_id)
        if step not in state.steps:
            raise LookupError(f"run {run_id} has no step '{step}'; its steps: {', '.join(state.steps) or 'none'}")
        step_dir = self.store.step_dir(run_id, step)
        text = ""
        with contextlib.suppress(FileNotFoundError):
            text = (step_dir / "log.txt").read_text(encoding="utf-8", errors="replace")
        if len(text) > LOG_LIMIT:
            text = f"[… first {len(text) - LOG_LIMIT} characters left out; see {step_dir / 'log.txt'}]\n" + text[-LOG_LIMIT:]
        output = step_dir / "output.ipynb"
        return {"run_id": run_id, "step": step, "log": text,
                "output_notebook": relative_to_root(self.root, output) if output.exists() else None}

    def run_dir(self, run_id: str) -> Path:
        return self.store.run_dir(run_id)

    def exists(self, run_id: str) -> bool:
        try:
            self.read(run_id)
        except (RunNotFoundError, StoreError):
            return False
        return True


def unreadable_summary(entry: UnreadableRun) -> dict[str, Any]:
    """A RunSummary-shaped entry for a run whose run.json cannot be read."""
    return {"run_id": entry.run_id, "app": None, "notebook": None, "backend": None, "status": "unreadable",
            "created_at": entry.created_at, "started_at": None, "finished_at": None, "duration_s": None,
            "params": {}, "mlflow_run_id": None, "resumed_from": None, "started_by": None, "tracking": None,
            "warnings": [],
            "steps": {}, "managed": False, "workflow": None,
            "message": entry.message, "reason": entry.reason, "fix": entry.fix}


def _same_path(a: str, b: str) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return a == b
