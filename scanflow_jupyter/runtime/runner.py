"""Run a notebook as a pipeline: the one Python API behind the CLI, the magics and the server.

notebook -> Application (validated) -> Pipeline -> plan (what runs, what is reused) ->
scheduler + backend -> run store, events and MLflow.
"""

from __future__ import annotations

import asyncio
import copy
import os
import signal
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scanflow_jupyter.model import Application, Message, Pipeline
from scanflow_jupyter.notebook.application import InvalidApplication, load_application
from scanflow_jupyter.runtime.events import STATE_CHANGED, EventBus, EventJournal, Listener
from scanflow_jupyter.runtime.figures import FIGURES_DIR, extract_figures

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_KILLED = 0, 1, 2, 130
__all__ = ["InvalidApplication", "RunResult", "load_application", "run_notebook"]  # the first two live in notebook/


@dataclass
class StepSummary:
    status: str
    attempts: int
    duration_s: float | None
    error: dict[str, Any] | None = None  # failed steps: {type, message, cell (1-based), log}

    def to_dict(self) -> dict[str, Any]:
        doc = {"status": self.status, "attempts": self.attempts, "duration_s": self.duration_s}
        if self.status == "failed":
            doc["error"] = self.error
        return doc


def step_error_doc(error: Any, log: Path) -> dict[str, Any]:
    """Why a step failed, for `--json`: exception type and message, the 1-based cell of the
    user's notebook (None: not in a cell, e.g. a dead kernel) and the step's log file."""
    from scanflow_jupyter.cell_numbers import shown

    if error is None:
        return {"type": None, "message": "the step failed without an error record (see its log)",
                "cell": None, "log": str(log)}
    return {"type": error.ename, "message": error.evalue, "cell": shown(error.cell), "log": str(log)}


@dataclass
class RunResult:
    """What a run ended with; `to_dict()` is the `scanflow run --json` document."""

    run_id: str
    status: str
    mlflow_run_id: str | None
    steps: dict[str, StepSummary]
    run_dir: str
    messages: list[Message] = field(default_factory=list)
    explain: dict[str, str] = field(default_factory=dict)  # step -> why it ran or was cached
    tracking: str | None = None  # synced | pending | failed (scanflow_jupyter.tracking_sync)

    @property
    def warnings(self) -> list[dict[str, Any]]:
        """Every warning of the run (validation, tracking) as {"code", "message", "fix"}."""
        return [{"code": m.code, "message": m.text, "fix": m.fix} for m in self.messages if m.severity == "warning"]

    @property
    def exit_code(self) -> int:
        return {"succeeded": EXIT_OK, "killed": EXIT_KILLED}.get(self.status, EXIT_FAILED)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "mlflow_run_id": self.mlflow_run_id,
            "tracking": self.tracking,
            "warnings": self.warnings,
            "run_dir": self.run_dir,
            "steps": {name: s.to_dict() for name, s in self.steps.items()},
        }


def run_notebook(
    notebook: str | Path,
    *,
    params: dict[str, Any] | None = None,
    only: list[str] | None = None,
    resume: str | None = None,
    max_parallel: int | None = None,
    no_cache: bool = False,
    backend: str = "local",
    on_event: Listener | None = None,
    store: str | Path | None = None,
    handle_signals: bool | None = None,
    started_by: str | None = None,
) -> RunResult:
    """Run `notebook` as a pipeline and wait for it; see `scanflow run --help` for the options.

    Raises InvalidApplication (nothing executed, no MLflow run) for bad input. `started_by` is
    recorded in run.json (default: $SCANFLOW_STARTED_BY, set by the server and the agents, else
    "python").
    """
    from scanflow_jupyter._ast_guard import install as guard_ast

    guard_ast()  # the run parses code on worker threads (cache keys, backends, tracking)
    if backend == "local":
        from scanflow_jupyter.runtime.fork_provisioner import start_shared_zygote

        start_shared_zygote()  # its imports overlap the parsing, validation and imports below
    app, messages = load_application(notebook)
    run = PipelineRun(app, messages, params=params or {}, only=only or [], resume=resume,
                      max_parallel=max_parallel or os.cpu_count() or 1, no_cache=no_cache,
                      backend=backend, store=store)
    run.adaptive = max_parallel is None and backend == "local"  # admission beyond cores while steps wait
    run.started_by = started_by or os.environ.get("SCANFLOW_STARTED_BY") or "python"
    if on_event:
        run.bus_listeners.append(on_event)
    run.plan()  # raises InvalidApplication before anything runs
    in_loop = _loop_running()
    if handle_signals is None:
        handle_signals = threading.current_thread() is threading.main_thread() and not in_loop
    if in_loop:  # e.g. inside a Jupyter kernel: run on a thread with its own loop
        result: Future[RunResult] = Future()

        def target() -> None:
            try:
                result.set_result(asyncio.run(run.execute(handle_signals=False)))
            except BaseException as exc:  # noqa: BLE001
                result.set_exception(exc)

        thread = threading.Thread(target=target, name="scanflow-run")
        thread.start()
        thread.join()
        return result.result()
    return asyncio.run(run.execute(handle_signals=handle_signals))


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False


class PipelineRun:
    """One pipeline run: plans, executes through the scheduler and a backend, records."""

    def __init__(self, app: Application, messages: list[Message], *, params: dict[str, Any], only: list[str],
                 resume: str | None, max_parallel: int, no_cache: bool, backend: str, store: str | Path | None) -> None:
        from scanflow_jupyter.data.store import RunStore
        from scanflow_jupyter.tracking import scanflow_home

        self.app = app
        self.messages = messages
        self.pipeline = Pipeline.from_application(app)
        self.home = scanflow_home()
        self.store = RunStore(store or self.home / "runs")
        self.cli_params = params
        self.only = only
        self.resume = resume
        self.max_parallel = max(1, max_parallel)
        self.adaptive = False  # set by run_notebook when --max-parallel was not given (admission.py)
        self.no_cache = no_cache
        self.backend_name = backend
        self.bus_listeners: list[Listener] = []
        self.state_listeners: list[Listener] = []  # also hear `state_changed` (after the run-store writer)
        self.params: dict[str, Any] = {}
        self.selected: list[str] = []
        self.reuse: dict[str, dict[str, Any]] = {}  # step -> {"outputs": ..., "cached_from": ...}
        self.state: Any = None
        self._cancelling = False
        self._will_run: set[str] = set()
        self.recorder: Any = None
        self._parent_future: Future[str] | None = None
        self._tracking_futures: list[Future[Any]] = []
        self._tracking_problems: list[str] = []
        self._buffered = False  # steps log into the run's local buffer (remote tracker)
        self._buffer_steps: dict[str, str] = {}  # step -> its run id in the buffer
        self._reused_step: dict[str, str] = {}  # cached step -> the step of `cached_from` it reuses
        self._store_wait: Any = None  # asyncio task: the tracking store is being created
        self._store_pending = False
        self._remote_target: Any = None  # backends.TrackingTarget when the backend names the tracker
        self.started_by: str | None = None
        self.keys: Any = None  # runtime.cache.StepKeys, set by plan()
        self.explain: dict[str, str] = {}  # step -> why it ran or was cached (--explain)
        self._ingredients: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ planning
    def plan(self) -> None:
        """Decide parameters, which steps run and which outputs are reused; validate the request."""
        from scanflow_jupyter.data.store import RunNotFoundError

        errors: list[Message] = []
        previous = None
        if self.resume:
            from scanflow_jupyter.tracking_sync import end_dead_project_runs

            end_dead_project_runs(self.home, store=self.store)  # a dead runner's MLflow runs end KILLED before it is resumed
            try:
                previous = self.store.read_state(self.resume)
            except RunNotFoundError as exc:
                raise InvalidApplication([Message("error", "unknown-run", str(exc), "pass a run id shown by `scanflow runs`.")], self.app) from exc
        base = dict(previous.params) if previous else dict(self.app.parameters)
        for name, value in self.cli_params.items():
            if name not in self.app.parameters:
                known = ", ".join(self.app.parameters) or "none (the notebook has no parameters cell)"
                errors.append(Message("error", "unknown-parameter", f"-p {name}: the notebook has no parameter '{name}'.",
                                      f"use one of: {known}.", self.app.parameters_cell))
            else:
                base[name] = value
        from scanflow_jupyter.params import check_param_types

        for name, text, fix in check_param_types(self.app.parameters, self.cli_params):
            errors.append(Message("error", "bad-parameter-type", f"-p {name}: {text}", fix, self.app.parameters_cell))
        self.params = base
        for name in self.only:
            if name not in self.pipeline.steps:
                errors.append(Message("error", "unknown-step", f"--only {name}: no executor has that name.",
                                      f"use one of: {', '.join(self.pipeline.steps)}."))
        if errors:
            raise InvalidApplication(errors, self.app)
        from scanflow_jupyter.runtime.cache import StepKeys

        self.keys = StepKeys(self.app, self.params, self.store.root)
        if self.only:
            needed = self.pipeline.upstream(self.only)
            self.selected = [s for s in self.pipeline.steps if s in self.only]
            for name in self.pipeline.steps:
                if name in needed:
                    self.reuse[name] = self._find_reusable(name)
            missing = [n for n, r in self.reuse.items() if r is None]
            if missing:
                raise InvalidApplication([Message("error", "no-upstream-outputs",
                    f"--only {' '.join(self.only)} needs the outputs of {', '.join(missing)}, which never ran successfully with this code and these parameters.",
                    f"run the whole pipeline once, or add --only {' --only '.join(missing)}.")], self.app)
        else:
            self.selected = list(self.pipeline.steps)
        if previous:
            for name, step in previous.steps.items():
                if name in self.pipeline.steps and step.status in ("succeeded", "cached") and _outputs_exist(step.outputs):
                    self.reuse[name] = {"outputs": step.outputs, "cached_from": previous.run_id, "cache_key": step.cache_key}

    def _find_reusable(self, name: str) -> dict[str, Any] | None:
        """Outputs of `name` from the cache (same key) or else its latest successful run."""
        ex = self.pipeline.steps[name].executor
        upstream = self._upstream_digests(name, {n: r["outputs"] for n, r in self.reuse.items() if r})
        if upstream is not None:
            key = self.keys.key(ex, upstream)
            entry = self.store.cache_lookup(key)
            if entry is not None:
                return {"outputs": entry.outputs, "cached_from": entry.run_id, "cache_key": key}
        for state in self.store.list_runs():
            step = state.steps.get(name)
            if state.app == self.app.name and step and step.status in ("succeeded", "cached") and _outputs_exist(step.outputs):
                return {"outputs": step.outputs, "cached_from": state.run_id, "cache_key": step.cache_key}
        return None

    def _upstream_digests(self, name: str, outputs_by_step: dict[str, dict[str, Any]]) -> dict[str, str] | None:
        """Content digest of each input of `name`, from its producers' outputs (None if unknown)."""
        ex = self.pipeline.steps[name].executor
        producers = self.app.input_producers(ex)  # the nearest producer above (refined variables)
        digests: dict[str, str] = {}
        for var in ex.inputs:
            producer = producers[var]
            record = (outputs_by_step.get(producer) or {}).get(var)
            if record is None:
                return None
            digests[var] = _digest(record)
        for dep in self.pipeline.steps[name].depends_on:  # --requires without data: order only
            digests.setdefault(f"@{dep}", "")
        return digests

    # ------------------------------------------------------------------ execution
    async def execute(self, handle_signals: bool = False) -> RunResult:
        from scanflow_jupyter.data.store import RunState, StepState
        from scanflow_jupyter.runtime.backends import load_backend
        from scanflow_jupyter.runtime.run_subscribers import MlflowRecorder, RunStoreWriter
        from scanflow_jupyter.runtime.scheduler import Scheduler

        run_id = self.store.new_run_id()
        self.bus = EventBus(run_id)
        self.writer = RunStoreWriter(self.store)  # first: run.json is current when the others hear of a change
        self.bus.subscribe(self.writer, state=True)
        for listener in self.state_listeners:
            self.bus.subscribe(listener, state=True)
        for listener in self.bus_listeners:
            self.bus.subscribe(listener)
        steps = {name: StepState(name=name) for name in self.pipeline.steps if name in self.selected or name in self.reuse}
        now = time.time()
        self.state = RunState(run_id=run_id, app=self.app.name, notebook=self.app.notebook, backend=self.backend_name,
                              status="running", created_at=now, started_at=now, finished_at=None, params=self.params,
                              mlflow_run_id=None, pid=os.getpid(), steps=steps, resumed_from=self.resume,
                              started_by=self.started_by, tracking="recording")
        self.store.run_dir(run_id).mkdir(parents=True, exist_ok=True)
        journal = EventJournal(self.store.run_dir(run_id))
        self.bus.subscribe(journal)
        self.bus.subscribe(MlflowRecorder(self._track_final, self._finish_tracking), state=True)  # last: after everyone heard
        self._save()
        backend_cls = load_backend(self.backend_name)
        self.backend = backend_cls(self.app, {"max_parallel": self.max_parallel})
        target = None
        try:
            target = await asyncio.to_thread(self.backend.tracking_target)
        except Exception as exc:  # noqa: BLE001 - the configured tracker then; said at the end
            self._tracking_problem(f"the {self.backend_name} backend's tracker: {exc}")
        self._start_tracking(target)
        self.backend.options["tracking_uri"] = self.tracking_uri
        if self._store_pending:
            self._store_wait = asyncio.ensure_future(asyncio.to_thread(self._wait_store))
        self.bus.emit("run_started", app=self.app.name, notebook=self.app.notebook, backend=self.backend_name,
                      steps=list(steps), params=self.params, run_dir=str(self.store.run_dir(run_id)))
        settled: dict[str, str] = {}
        for name, reuse in self.reuse.items():
            if reuse and name in steps:
                settled[name] = self._settle_reused(name, reuse)
        self._will_run = self._predict_executions(settled)
        self._prepared = asyncio.Event()  # set once backend.prepare() returned
        if self.backend.execution == "whole_pipeline":
            # the backend schedules the DAG itself (kubernetes: one Argo Workflow); it reports
            # through PipelineReporter, which drives the same state machine as the scheduler
            task = asyncio.ensure_future(self._run_whole_pipeline(settled))
        else:
            scheduler = Scheduler(self.pipeline, list(steps), settled, self._run_step, self.max_parallel,
                                  on_queued=self._queued, on_skipped=self._skipped, adaptive=self.adaptive,
                                  on_progress=lambda _left: self.backend.expect(self._executions_left()))
            self.bus.subscribe(lambda e: scheduler.started(e.step) if e.type == "step_started" else None)
            task = asyncio.ensure_future(scheduler.run())
        loop = asyncio.get_running_loop()
        self._cancelling = False

        def cancel() -> None:
            self._cancelling = True
            task.cancel()

        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, cancel)
        killed = False
        try:
            if self._store_wait is not None and self.backend_name != "local":
                # other backends start services on the store (the docker backend's tracker):
                # it gets its schema, under its lock, first
                await asyncio.shield(self._store_wait)
            try:
                await self.backend.prepare(self._executions_left())
            finally:
                self._prepared.set()  # steps scheduled meanwhile (cache checks done) now reach the backend
            await task
        except asyncio.CancelledError:
            killed = True
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        finally:
            await self.backend.close()
            if handle_signals:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
        for name, step in self.state.steps.items():
            if step.status in ("pending", "queued", "running"):
                step.status = "killed" if killed else "skipped"
                self.bus.emit("step_killed" if killed else STATE_CHANGED, name, changes=self._run_doc())
        statuses = [s.status for s in self.state.steps.values()]
        if killed or "killed" in statuses:
            status = "killed"
        elif any(s in ("failed", "skipped") for s in statuses):
            status = "failed"
        else:
            status = "succeeded"
        self.state.status = status
        self.state.finished_at = time.time()
        fut = self._parent_future
        if (fut is not None and fut.done() and fut.exception() is None and self.state.mlflow_run_id is None
                and not self._buffered):
            self.state.mlflow_run_id = fut.result()  # readers of the first final save see the MLflow run too
        # final status on disk before tracking finishes (a crash there loses nothing); the
        # MlflowRecorder then finishes tracking (parent run, buffer delivery, `tracking` and warnings)
        self._save()
        if self._remote_target is not None and self._remote_target.close is not None:
            self._remote_target.close()
        self._save()
        self.bus.emit("run_finished", status=status, mlflow_run_id=self.state.mlflow_run_id,
                      duration_s=self.state.finished_at - (self.state.started_at or now))
        journal.close()
        self.keys.save()
        result = RunResult(run_id, status, self.state.mlflow_run_id,
                           {n: StepSummary(s.status, s.attempts, s.duration_s,
                                           step_error_doc(s.error, self.store.step_dir(run_id, n) / "log.txt")
                                           if s.status == "failed" else None)
                            for n, s in self.state.steps.items()},
                           str(self.store.run_dir(run_id)), self.messages, tracking=self.state.tracking)
        result.explain = {n: self.explain.get(n) or _status_reason(s.status) for n, s in self.state.steps.items()}
        return result

    def _save(self) -> None:
        """Say the run's state changed (the run-store writer writes run.json from the event)."""
        self.bus.emit(STATE_CHANGED, changes=self._run_doc())

    def _run_doc(self) -> dict[str, Any]:
        """The `changes` of an event: the whole run.json (run-level fields such as the MLflow
        parent id move with step events too)."""
        return self.state.to_dict()

    def _track_final(self, name: str) -> None:
        """MlflowRecorder's callback: record step `name`, in its nested run if one was started."""
        self._track_step(name, self._buffer_steps.get(name) or self.state.steps[name].mlflow_run_id)

    def _queued(self, name: str) -> None:
        self.state.steps[name].status = "queued"
        self.bus.emit("step_queued", name, changes=self._run_doc())

    def _skipped(self, name: str, because: str) -> None:
        step = self.state.steps[name]
        step.status = "skipped"
        self.bus.emit("step_skipped", name, reason=f"upstream step '{because}' did not succeed", upstream=because,
                      changes=self._run_doc())

    def _settle_reused(self, name: str, reuse: dict[str, Any]) -> str:
        step = self.state.steps[name]
        step.outputs = self.store.link_outputs(reuse["outputs"], self.store.outputs_dir(self.state.run_id, name))
        step.status, step.cached_from, step.cache_key = "cached", reuse["cached_from"], reuse.get("cache_key")
        self._reused_step[name] = reuse.get("step") or name  # its MLflow metrics are copied (tracking_metrics)
        step.duration_s = 0.0
        self.explain.setdefault(name, f"reused the outputs of run {reuse['cached_from']} ("
                                + ("--resume)" if self.resume else "upstream of --only)"))
        self.bus.emit("step_cached", name, cached_from=reuse["cached_from"], changes=self._run_doc())
        return "cached"

    async def _run_step(self, name: str) -> str:
        from scanflow_jupyter.data.store import StepError
        from scanflow_jupyter.runtime.backends import StepJob
        from scanflow_jupyter.runtime.cache import key_of

        ex = self.pipeline.steps[name].executor
        step = self.state.steps[name]
        outputs_by_step = {n: s.outputs for n, s in self.state.steps.items()}
        upstream = self._upstream_digests(name, outputs_by_step) or {}
        # computed now, after upstream steps ran: files they wrote take part in the key
        ingredients = self._ingredients[name] = await asyncio.to_thread(self.keys.ingredients, ex, upstream)
        step.cache_key = key_of(ingredients)
        if ex.cache and not self.no_cache and name not in self.only:  # --only STEP re-executes STEP
            entry = self.store.cache_lookup(step.cache_key)
            if entry is not None:
                self.explain[name] = f"cached: nothing it depends on changed since run {entry.run_id}"
                return self._settle_reused(name, {"outputs": entry.outputs, "cached_from": entry.run_id, "cache_key": step.cache_key,
                                                   "step": entry.step})
            self.explain[name] = self.keys.why_not_cached(name, ingredients)
        else:
            self.explain[name] = ("--no-cache" if self.no_cache else "--no-cache on its %%executor line" if not ex.cache
                                  else "--only re-executes the steps it names")
        step_dir = self.store.step_dir(self.state.run_id, name)
        outputs_dir = self.store.outputs_dir(self.state.run_id, name)
        outputs_dir.mkdir(parents=True, exist_ok=True)
        mlflow_id = None
        await self._prepared.wait()  # a step that needs no store may get here before prepare() ended
        if _uses_mlflow(self.app, ex):
            if self._store_wait is not None:  # its code opens the store: a fresh one gets its schema first
                await asyncio.shield(self._store_wait)  # (other steps start at once; recorded after they end)
            try:
                mlflow_id = await asyncio.to_thread(self._start_step_run, name)
            except Exception as exc:  # noqa: BLE001 - tracking trouble must not stop the pipeline
                self._tracking_problem(f"step {name}: {exc}")
            if self._buffered:
                if mlflow_id:
                    self._buffer_steps[name] = mlflow_id
            else:
                step.mlflow_run_id = mlflow_id
        started = time.time()
        step.started_at = started
        step.status = "running"
        outcome = None
        try:
            for attempt in range(1, ex.retries + 2):
                step.attempts = attempt
                step.error = None
                self.bus.emit(STATE_CHANGED, name, changes=self._run_doc())
                notebook = self._step_notebook(name, upstream_outputs=outputs_by_step, mlflow_id=mlflow_id)
                (step_dir / "input.ipynb").write_text(_dumps(notebook), encoding="utf-8")

                def emit(type_: str, _attempt: int = attempt, **data: Any) -> None:
                    self.bus.emit(type_, name, _attempt, **data)

                job = StepJob(name, attempt, ex, notebook, step_dir, outputs_dir, ex.timeout, emit)
                outcome = await self.backend.run_step(job)
                if self._cancelling and outcome.status != "succeeded":
                    raise asyncio.CancelledError  # the kernel died because the run is being stopped
                if outcome.status == "succeeded":
                    break
                step.error = StepError(**{k: outcome.error.get(k) for k in ("cell", "ename", "evalue", "traceback")}) if outcome.error else None
                if attempt <= ex.retries:
                    self.bus.emit("step_retrying", name, attempt, **(outcome.error or {}), next_attempt=attempt + 1,
                                  changes=self._run_doc())
        except asyncio.CancelledError:
            step.status = "killed"
            step.finished_at = time.time()
            step.duration_s = step.finished_at - started
            self.bus.emit("step_killed", name, step.attempts, changes=self._run_doc())
            raise
        step.finished_at = time.time()
        step.duration_s = round(step.finished_at - started, 3)
        if outcome is not None and outcome.status == "succeeded":
            try:
                step.outputs = self._collect_outputs(ex, outputs_dir)
            except (FileNotFoundError, KeyError) as exc:
                step.status = "failed"
                step.error = StepError(cell=ex.cell, ename="MissingOutput", evalue=f"output was not saved: {exc}", traceback=[])
            else:
                step.status = "succeeded"
                self._record_cache(name)
        else:
            step.status = "failed"
        if step.status == "succeeded":
            self.bus.emit("step_succeeded", name, step.attempts, duration_s=step.duration_s, outputs=list(step.outputs),
                          changes=self._run_doc())
        else:
            err = step.error.to_dict() if step.error else {}
            self.bus.emit("step_failed", name, step.attempts, duration_s=step.duration_s, **err,
                          changes=self._run_doc())
        return step.status

    # ------------------------------------------------------------------ whole-pipeline backends
    async def _run_whole_pipeline(self, settled: dict[str, str]) -> None:
        """Settle what the cache serves, hand the rest to the backend as one job, skip what it never ran.

        A step whose key is known before submission (its inputs come from settled steps) is
        looked up in the cache like on the local backend; a step below one that executes always
        executes (its inputs' digests exist only after the backend ran its upstream).
        """
        from scanflow_jupyter.runtime.backends import PipelineJob
        from scanflow_jupyter.runtime.cache import key_of

        if self._store_wait is not None:
            await asyncio.shield(self._store_wait)
        for name in self.selected:
            if name in settled:
                continue
            ex = self.pipeline.steps[name].executor
            cacheable = ex.cache and not self.no_cache and name not in self.only
            upstream = self._upstream_digests(name, {n: self.state.steps[n].outputs for n in settled})
            if upstream is None or any(d not in settled for d in self.pipeline.steps[name].depends_on):
                self.explain[name] = "an upstream step executes (steps below it execute too on this backend)"
                continue
            ingredients = self._ingredients[name] = await asyncio.to_thread(self.keys.ingredients, ex, upstream)
            key = key_of(ingredients)
            entry = self.store.cache_lookup(key) if cacheable else None
            if entry is not None:
                self.explain[name] = f"cached: nothing it depends on changed since run {entry.run_id}"
                settled[name] = self._settle_reused(name, {"outputs": entry.outputs, "cached_from": entry.run_id,
                                                           "cache_key": key, "step": entry.step})
            elif cacheable:
                self.explain[name] = self.keys.why_not_cached(name, ingredients)
            else:
                self.explain[name] = ("--no-cache" if self.no_cache else "--no-cache on its %%executor line"
                                      if not ex.cache else "--only re-executes the steps it names")
        to_run = [n for n in self.selected if n not in settled and self.state.steps[n].status == "pending"]
        if not to_run:
            return
        for name in to_run:
            self._queued(name)
            if _uses_mlflow(self.app, self.pipeline.steps[name].executor) or self._remote_target is not None:
                try:  # created now: the backend passes the id to the step, so its mlflow.log_* land there
                    self.state.steps[name].mlflow_run_id = await asyncio.to_thread(self._start_step_run, name)
                except Exception as exc:  # noqa: BLE001 - tracking trouble must not stop the pipeline
                    self._tracking_problem(f"step {name}: {exc}")
        self._save()
        job = PipelineJob(
            run_id=self.state.run_id, steps=to_run,
            depends_on={n: list(self.pipeline.steps[n].depends_on) for n in to_run}, params=dict(self.params),
            inputs={n: dict(self.app.input_producers(self.pipeline.steps[n].executor)) for n in to_run},
            reused={n: self.store.outputs_dir(self.state.run_id, n) for n in settled},
            mlflow_run_ids={n: self.state.steps[n].mlflow_run_id for n in to_run},
            tracking_uri=self.tracking_uri, run_dir=self.store.run_dir(self.state.run_id), report=_Reporter(self))
        await self.backend.run_pipeline(job)
        for name in to_run:  # dependents of a failed step: the backend never started them
            if self.state.steps[name].status in ("pending", "queued"):
                blocked = next((d for d in self.pipeline.steps[name].depends_on
                                if self.state.steps[d].status in ("failed", "skipped", "killed")), None)
                if blocked:
                    self._skipped(name, blocked)

    def _whole_started(self, name: str, attempt: int) -> None:
        step = self.state.steps[name]
        step.status, step.attempts, step.error = "running", attempt, None
        step.started_at = step.started_at or time.time()
        self.bus.emit("step_started", name, attempt, changes=self._run_doc())

    def _whole_retrying(self, name: str, attempt: int, error: dict[str, Any]) -> None:
        from scanflow_jupyter.data.store import StepError

        step = self.state.steps[name]
        step.error = StepError(**{k: error.get(k) for k in ("cell", "ename", "evalue", "traceback")})
        self.bus.emit("step_retrying", name, attempt, **error, next_attempt=attempt + 1, changes=self._run_doc())

    def _whole_finished(self, name: str, attempt: int, status: str, error: dict[str, Any] | None,
                        fetched: bool) -> None:
        from scanflow_jupyter.data.store import StepError
        from scanflow_jupyter.runtime.cache import key_of

        ex = self.pipeline.steps[name].executor
        step = self.state.steps[name]
        now = time.time()
        step.attempts = attempt or step.attempts
        step.finished_at = now
        step.duration_s = round(now - (step.started_at or now), 3)
        step.status = status
        if status == "succeeded" and fetched:
            try:
                step.outputs = self._collect_outputs(ex, self.store.outputs_dir(self.state.run_id, name))
            except (FileNotFoundError, KeyError) as exc:
                step.status = "failed"
                step.error = StepError(cell=ex.cell, ename="MissingOutput", evalue=f"output was not saved: {exc}", traceback=[])
            else:
                upstream = self._upstream_digests(name, {n: s.outputs for n, s in self.state.steps.items()}) or {}
                ingredients = self._ingredients[name] = self.keys.ingredients(ex, upstream)
                step.cache_key = key_of(ingredients)
                self._record_cache(name)
        elif status == "failed":
            step.error = StepError(**{k: (error or {}).get(k) for k in ("cell", "ename", "evalue", "traceback")})
        doc = self._run_doc()
        if step.status == "succeeded":
            self.bus.emit("step_succeeded", name, step.attempts, duration_s=step.duration_s, outputs=list(step.outputs),
                          changes=doc)
        elif step.status == "failed":
            self.bus.emit("step_failed", name, step.attempts, duration_s=step.duration_s,
                          **(step.error.to_dict() if step.error else {}), changes=doc)
        else:
            self.bus.emit("step_killed", name, step.attempts, changes=doc)
        if step.status == "failed":  # as the scheduler does: nothing below a failed step runs
            for child in self.pipeline.steps:
                if (child in self.pipeline.downstream(name) and child in self.state.steps
                        and self.state.steps[child].status in ("pending", "queued")):
                    self._skipped(child, name)

    def _predict_executions(self, settled: dict[str, str]) -> set[str]:
        """Steps expected to execute (not served by the cache), so backends start no idle kernels.

        A step is predicted cached when its key, computed from cached or reused upstream
        outputs, has a cache entry; a step below one that executes is predicted to execute.
        """
        outputs = {n: s.outputs for n, s in self.state.steps.items() if n in settled}
        will_run: set[str] = set()
        for name in self.selected:
            if name in settled:
                continue
            ex = self.pipeline.steps[name].executor
            upstream = None
            cacheable = ex.cache and not self.no_cache and name not in self.only
            if cacheable and not any(d in will_run for d in self.pipeline.steps[name].depends_on):
                upstream = self._upstream_digests(name, outputs)
            entry = None
            if upstream is not None:
                entry = self.store.cache_lookup(self.keys.key(ex, upstream))
            if entry is None:
                will_run.add(name)
            else:
                outputs[name] = entry.outputs
        return will_run

    def _executions_left(self) -> int:
        return sum(1 for n in self._will_run if self.state.steps[n].status in ("pending", "queued"))

    def _collect_outputs(self, ex: Any, outputs_dir: Path) -> dict[str, dict[str, Any]]:
        from scanflow_jupyter.data.serializers import read_record

        outputs = {}
        for var in ex.outputs:
            record = read_record(outputs_dir, var).to_dict()
            record["folder"] = str(outputs_dir)
            outputs[var] = record
        return outputs

    def _record_cache(self, name: str) -> None:
        from scanflow_jupyter.data.store import CacheEntry

        step = self.state.steps[name]
        self.store.cache_record(step.cache_key, CacheEntry(key=step.cache_key, run_id=self.state.run_id, step=name,
                                                           outputs=step.outputs, created_at=time.time()))
        if name in self._ingredients:
            self.keys.remember(name, step.cache_key, self._ingredients[name], self.state.run_id)

    def _step_notebook(self, name: str, upstream_outputs: dict[str, dict[str, Any]], mlflow_id: str | None) -> dict[str, Any]:
        from scanflow_jupyter.notebook.compile import compile_step
        from scanflow_jupyter.redact import redact_uri

        ex = self.pipeline.steps[name].executor
        nb = compile_step(self.app, ex)
        producers = self.app.input_producers(ex)  # the nearest producer above (refined variables)
        inputs = {}
        for var in ex.inputs:
            record = dict(upstream_outputs[producers[var]][var])
            inputs[var] = {"folder": record.pop("folder"), "record": record}
        context = {
            "run_id": self.state.run_id,
            "step": name,
            "inputs": inputs,
            "outputs_dir": str(self.store.outputs_dir(self.state.run_id, name)),
            # redacted: credentials reach the kernel only as environment (see LocalBackend.prepare)
            "mlflow": {"tracking_uri": redact_uri(self.tracking_uri), "run_id": mlflow_id, "experiment_id": None},
        }
        lines = ["# Parameters"]
        lines += [f"{k} = {v!r}" for k, v in self.params.items() if v != self.app.parameters.get(k)]
        lines.append(f"__scanflow__ = {context!r}")
        injected = {"cell_type": "code", "execution_count": None, "id": "injected-parameters",
                    "metadata": {"tags": ["injected-parameters"], "scanflow": {"role": "injected-parameters", "source_cell": None}},
                    "outputs": [], "source": "\n".join(lines)}
        position = next(i for i, c in enumerate(nb["cells"]) if "parameters" in c["metadata"].get("tags", []))
        nb = copy.deepcopy(nb)
        nb["cells"].insert(position + 1, injected)
        return nb

    # ------------------------------------------------------------------ tracking
    def _start_tracking(self, target: Any = None) -> None:
        """Start the recorder: into the backend's tracker (`target`), the configured store, or
        (remote tracker, local backend) the run's local buffer that `tracking_sync.forward`
        delivers after the run."""
        from concurrent.futures import ThreadPoolExecutor

        from scanflow_jupyter import tracking_sync
        from scanflow_jupyter.runtime.recorder_process import RecorderProcess
        from scanflow_jupyter.tracking import default_artifact_root, resolve_tracking_uri
        from scanflow_jupyter.tracking_store import store_ready

        self._remote_target = target
        self.target_uri = target.uri if target is not None else resolve_tracking_uri(self.home)
        run_dir = self.store.run_dir(self.state.run_id)
        self._buffered = tracking_sync.uses_buffer(self.target_uri, self.backend_name)
        if self._buffered:
            ready = tracking_sync.create_buffer(run_dir, self.home, allow_slow=False)
            self.tracking_uri = tracking_sync.buffer_uri(run_dir)
            self.recorder = RecorderProcess(self.tracking_uri, tracking_sync.buffer_artifacts(run_dir), warm=True,
                                            buffer_for={"run_dir": str(run_dir), "home": str(self.home)})
        else:
            ready = store_ready(self.target_uri)
            # kernels get the URI unchanged (user code may read it): sqlite's default 5 s busy
            # timeout there, on a WAL store that never blocks readers
            self.tracking_uri = self.target_uri
            self.recorder = RecorderProcess(self.target_uri, default_artifact_root(self.home), warm=True)
        self._store_pending = not ready
        self._tracking_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scanflow-tracking")
        self._parent_future = self._tracking_pool.submit(
            self.recorder.start_pipeline, self.app.name, self.state.run_id, self.backend_name, self.app.notebook, self.params,
            self.state.started_at)

    def _wait_store(self) -> None:
        """Block until the recorder created (or failed to create) the tracking store."""
        try:
            self.recorder.wait_ready()
        except Exception as exc:  # noqa: BLE001 - reported at the end; steps run anyway
            self._tracking_problem(str(exc))

    def _parent_id(self) -> str:
        assert self._parent_future is not None
        parent = self._parent_future.result()
        if self.state.mlflow_run_id is None and not self._buffered:
            self.state.mlflow_run_id = parent
        return parent

    def _start_step_run(self, name: str, started_at: float | None = None) -> str:
        return self.recorder.start_step(self._parent_id(), self.app.name, self.state.run_id, name, started_at)

    def _track_step(self, name: str, mlflow_id: str | None) -> None:
        """Queue the MLflow record of a finished step (its nested run is created now if needed)."""
        step = copy.deepcopy(self.state.steps[name])
        step_dir = self.store.step_dir(self.state.run_id, name)

        def work() -> None:
            try:
                run_id = mlflow_id or self._start_step_run(name, step.started_at)
            except Exception as exc:  # noqa: BLE001 - reported once at the end of the run
                self._tracking_problem(f"step {name}: {exc}")
                return
            if self._buffered:
                self._buffer_steps[name] = run_id
            else:
                self.state.steps[name].mlflow_run_id = run_id
            artifacts = [str(p) for p in (step_dir / "output.ipynb", step_dir / "log.txt") if p.exists()]
            if extract_figures(step_dir / "output.ipynb", step_dir / FIGURES_DIR):  # figures/<cell>-<n>.png
                artifacts.append(str(step_dir / FIGURES_DIR))
            error = step.error.to_dict() if step.error else None
            marked = list(self.pipeline.steps[name].executor.metrics)  # --metrics: pipeline metrics
            self.recorder.finish_step(run_id, step.status, step.attempts, step.status == "cached", step.duration_s,
                                      artifacts, error, step.cached_from, step.finished_at,
                                      reused_step=self._reused_step.get(name), pipeline_metrics=marked,
                                      parent_mlflow_id=self._parent_id() if marked else None)

        self._tracking_futures.append(self._tracking_pool.submit(work))

    def _tracking_problem(self, text: str) -> None:
        if text not in self._tracking_problems:
            self._tracking_problems.append(text)

    def _finish_tracking(self, status: str) -> None:
        """Finish the MLflow records; deliver a buffer; set `tracking` and its warnings."""
        from scanflow_jupyter.redact import redact_uri
        from scanflow_jupyter.tracking import default_artifact_root

        problems = self._tracking_problems
        report: dict[str, Any] | None = None
        try:
            for fut in self._tracking_futures:
                fut.result()
            self.recorder.finish_pipeline(self._parent_id(), status, (self.state.finished_at or 0) - (self.state.started_at or 0))
            if self._buffered:
                report = self.recorder.forward(self.target_uri, default_artifact_root(self.home))
        except Exception as exc:  # noqa: BLE001 - the run store keeps every result
            problems.append(str(exc))
        finally:
            try:
                self.recorder.close()
            except Exception as exc:  # noqa: BLE001
                problems.append(str(exc))
            self._tracking_pool.shutdown(wait=True)
        shown = redact_uri(self.target_uri)
        warnings: list[Message] = []
        if self._buffered:
            from scanflow_jupyter import tracking_sync

            run_dir = self.store.run_dir(self.state.run_id)
            if report is not None:
                tracking_sync.apply_ids(self.state, report["ids"], tracking_sync.buffer_ids(run_dir))
            if report is not None and report["complete"] and not report["error"] and not problems:
                self.state.tracking = "synced"
            else:
                self.state.tracking = "pending"
                why = (report or {}).get("error") or "; ".join(dict.fromkeys(problems)) or "delivery did not finish"
                warnings.append(Message(
                    "warning", "tracking-pending",
                    f"MLflow records of this run were not delivered to {shown} ({why}); they are kept in "
                    f"{tracking_sync.buffer_dir(run_dir)}.",
                    f"start or fix the tracking server, then run `scanflow runs sync {self.state.run_id}`."))
        else:
            self.state.tracking = "failed" if problems or not self.state.mlflow_run_id else "synced"
            if problems:
                warnings.append(Message("warning", "tracking-failed", "MLflow tracking reported errors: " + "; ".join(dict.fromkeys(problems)),
                                        "check MLFLOW_TRACKING_URI and the tracking server; the run store keeps every result."))
            self._check_recorded(shown, warnings)
        self.messages.extend(warnings)
        self.state.warnings = [{"code": m.code, "message": m.text, "fix": m.fix} for m in warnings]
        for m in warnings:
            self.bus.emit("run_warning", code=m.code, message=m.text, fix=m.fix)

    def _check_recorded(self, shown: str, warnings: list[Message]) -> None:
        """A sqlite store deleted or replaced mid-run took the run's MLflow records with it: no
        phantom run id."""
        from scanflow_jupyter.tracking_store import run_exists

        parent = self.state.mlflow_run_id
        if not parent or run_exists(self.target_uri, parent) is not False:
            return
        self.state.mlflow_run_id = None
        for step in self.state.steps.values():
            step.mlflow_run_id = None
        self.state.tracking = "failed"
        warnings.append(Message(
            "warning", "tracking-store-missing",
            f"the MLflow store {shown} disappeared or was replaced during the run: MLflow run {parent} is not in it, "
            "so this run has no MLflow record.",
            "do not delete the store while runs are in progress; the run store (scanflow runs) keeps every result, "
            "and a new run records into a new store."))


class _Reporter:
    """The runner's side of `StepReporter`: whole-pipeline backends report, the runner keeps state."""

    def __init__(self, run: PipelineRun) -> None:
        self._run = run

    def started(self, step: str, attempt: int) -> None:
        self._run._whole_started(step, attempt)

    def retrying(self, step: str, attempt: int, error: dict[str, Any]) -> None:
        self._run._whole_retrying(step, attempt, error)

    def progress(self, step: str, attempt: int | None, type_: str, **data: Any) -> None:
        if type_ in ("step_log", "step_cell"):
            self._run.bus.emit(type_, step, attempt, **data)

    def finished(self, step: str, attempt: int, status: str, error: dict[str, Any] | None = None,
                 fetched: bool = True) -> None:
        self._run._whole_finished(step, attempt, status, error, fetched)


def _status_reason(status: str) -> str:
    """Why a step that never reached its cache check has its status."""
    return {"skipped": "skipped: an upstream step did not succeed", "killed": "the run was stopped"}.get(status, status)


def _digest(record: dict[str, Any]) -> str:
    return str(record.get("digest") or "")


def _outputs_exist(outputs: dict[str, dict[str, Any]]) -> bool:
    return all(Path(r["folder"], r["file"]).exists() for r in outputs.values())


def _uses_mlflow(app: Application, ex: Any) -> bool:
    """Does the step's code mention mlflow (then its MLflow run must exist before it starts)?"""
    return "mlflow" in ex.source or any("mlflow" in b.source for b in app.setup)


def _dumps(nb: dict[str, Any]) -> str:
    from scanflow_jupyter.notebook.compile import dumps

    return dumps(nb)
