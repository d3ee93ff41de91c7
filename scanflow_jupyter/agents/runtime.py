"""The engine of one agent: schedules its sensors, runs sensors/rules/actuators, keeps its state.

No HTTP here (`agents.service` puts FastAPI in front of it). User functions run on a thread
pool, so a slow sensor never blocks the event loop, the other sensors or `/status`. Each sensor
runs one call at a time (a scheduled run waits for a manual one and vice versa).

Schedules and watermarks live in `AgentState` (persisted after every call), so a restarted
agent continues where it stopped: an `every=` sensor keeps its next due time, a missed `cron=`
time runs once at start, an `on=` sensor resumes from its watermark.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import inspect
import json
import logging
import os
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from scanflow_jupyter.agents.decorators import SensorSpec
from scanflow_jupyter.agents.events import initial_watermark, poll
from scanflow_jupyter.agents.journal import CallJournal, CallRecord, import_mlflow, open_client
from scanflow_jupyter.agents.loader import AgentProgram, call_arity
from scanflow_jupyter.agents.state import AgentState, jsonable
from scanflow_jupyter.redact import redact_text, redact_uri, secret_values

__all__ = ["AgentContext", "AgentRuntime", "PeerCallError"]

_log = logging.getLogger("scanflow.agents")
MAX_EVENT_ATTEMPTS = 5  # a batch of events whose sensor keeps failing is dropped after this
DEFAULT_CALL_TIMEOUT = 600.0
CONNECT_RETRY_S = 10.0


class PeerCallError(RuntimeError):
    """`ctx.call(...)` failed: the peer is unknown/unreachable or its actuator raised."""


@functools.lru_cache(maxsize=1)
def _env_secrets() -> tuple[str, ...]:
    return tuple(secret_values(os.environ))


def redacted(text: str) -> str:
    """`text` fit to record: URI credentials and the environment's secret values masked."""
    return redact_text(text, _env_secrets())


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return redacted(f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": "))[:1000]


def _traceback() -> str:
    return redacted(traceback.format_exc(limit=20))


def _invoke(fn: Any, args: list[Any]) -> Any:
    result = fn(*args[: call_arity(fn, len(args))])
    if inspect.isawaitable(result):
        async def _await() -> Any:
            return await result

        result = asyncio.run(_await())
    return result


class AgentContext:
    """What sensors, rules and actuators receive as `ctx`.

    `ctx.mlflow` (an `MlflowClient`), `ctx.params` (the application's parameters),
    `ctx.call(agent, actuator, payload)` (a peer's actuator), `ctx.log(text)`, and the built-in
    actions `ctx.run_pipeline`, `ctx.promote_if_better`, `ctx.drift_test`, `ctx.metric_summary`.
    `ctx.kind`/`ctx.name`/`ctx.trigger`/`ctx.caller` describe the current call.
    """

    def __init__(self, runtime: AgentRuntime) -> None:
        self._runtime = runtime
        program = runtime.program
        self.app = program.app
        self.team = program.team
        self.agent = program.name
        self.template = program.template
        self.notebook = Path(program.notebook)
        self.tracking_uri = runtime.tracking_uri
        self.home = runtime.home
        self.kind: str | None = None
        self.name: str | None = None
        self.trigger: str | None = None
        self.caller: str | None = None

    @property
    def params(self) -> dict[str, Any]:
        return copy.deepcopy(self._runtime.program.params)

    @property
    def mlflow(self) -> Any:
        """The agent's `MlflowClient` (explicit URIs; created on first use)."""
        return self._runtime.mlflow_client()

    def for_call(self, kind: str, name: str, trigger: str, caller: str | None = None) -> AgentContext:
        ctx = copy.copy(self)
        ctx.kind, ctx.name, ctx.trigger, ctx.caller = kind, name, trigger, caller
        return ctx

    def log(self, text: str, **data: Any) -> None:
        """Add a message to this agent's `/messages`."""
        self._runtime.messages.add("log", self.name, text=str(text), data=jsonable(data) if data else None)

    def call(self, agent: str, actuator: str, payload: Any = None, *, timeout: float | None = None) -> Any:
        """Call actuator `actuator` of peer `agent` (`name` or `app/name`) with a JSON payload;
        return its result, or raise PeerCallError."""
        return self._runtime.call_peer(agent, actuator, payload, timeout=timeout,
                                       caller=f"{self.app}/{self.agent}/{self.name or '-'}")

    # -- built-in actions (agents.templates) --

    def run_pipeline(self, notebook: str | Path | None = None, *, params: dict[str, Any] | None = None,
                     only: list[str] | None = None, no_cache: bool = False) -> dict[str, Any]:
        """Run a notebook's pipeline (this agent's notebook by default); return the run result."""
        from scanflow_jupyter.agents.templates import check_notebook_allowed, run_pipeline

        program = self._runtime.program
        path = check_notebook_allowed(notebook or self.notebook, base_dir=self.notebook.parent,
                                      root=self.project_root, allow=program.allow_notebooks)
        return run_pipeline(path, params=params, only=only, no_cache=no_cache)

    @property
    def project_root(self) -> Path:
        """The folder holding the project's `.scanflow` home (if the agent's notebook is inside
        it), else the agent notebook's folder: `run_pipeline` runs notebooks under it only."""
        nb_dir = self.notebook.resolve().parent
        home = Path(self.home).resolve()
        if home.name == ".scanflow" and nb_dir.is_relative_to(home.parent):
            return home.parent
        return nb_dir

    def promote_if_better(self, model: str, metric: str, **options: Any) -> dict[str, Any]:
        """Move the model alias (default `champion`) to the candidate version if its metric is better."""
        from scanflow_jupyter.agents.templates import promote_if_better

        return promote_if_better(self.mlflow, model, metric, **options)

    def drift_test(self, reference: Any, current: Any, **options: Any) -> dict[str, Any]:
        """Two-sample Kolmogorov–Smirnov test per feature (`threshold` = p-value, default 0.05)."""
        from scanflow_jupyter.agents.templates import drift_test

        return drift_test(reference, current, **options)

    def training_data(self, model: str, version: str | int | None = None, *, alias: str = "champion") -> Any:
        """The training data (a DataFrame) that `model` `version` (default: the version `alias` names)
        was trained on, as its training step logged it with `log_training_data`; read once per version."""
        from scanflow_jupyter.training_data import load_training_data, model_version

        if version is None or str(version) == "":
            version = model_version(self.mlflow, model, alias=alias).version
        cache = self._runtime.training_data_cache
        key = (model, str(version))
        if key not in cache:
            cache[key] = load_training_data(self.mlflow, model, version)
        return cache[key]

    def metric_summary(self, experiment: str, metric: str, **options: Any) -> dict[str, Any]:
        """Finished runs of `experiment` and count/sum/last/min/max/mean of `metric`."""
        from scanflow_jupyter.agents.templates import metric_summary

        return metric_summary(self.mlflow, experiment, metric, **options)


class AgentRuntime:
    """Runs one loaded agent program."""

    def __init__(self, program: AgentProgram, *, home: Path, tracking_uri: str, state_dir: Path,
                 artifact_root: str | None = None, journal: CallJournal | None = None,
                 peer_urls: dict[str, str] | None = None, token: str | None = None) -> None:
        self.program = program
        self.token = token  # the project's agent token (agents.auth); None: read it when needed
        self.home = Path(home)
        self.tracking_uri = tracking_uri
        self.started_at = time.time()
        self.training_data_cache: dict[tuple[str, str], Any] = {}  # (model, version) -> DataFrame
        self.state = AgentState(state_dir)
        self.messages = self.state.messages
        self._lock_path = self.home / "agents" / ".mlflow-store.lock"
        self.journal = journal or CallJournal(tracking_uri, program.app, program.name,
                                              artifact_root=artifact_root, lock_path=self._lock_path)
        self.context = AgentContext(self)
        self.peer_urls = dict(peer_urls or {})
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._http: Any = None
        self._pool = ThreadPoolExecutor(max_workers=max(8, len(program.sensors) + 4),
                                        thread_name_prefix=f"agent-{program.name}")
        self._sensor_locks: dict[str, asyncio.Lock] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._warm_thread: threading.Thread | None = None
        self._exp_cache: dict[str, dict[str, Any]] = {n: {} for n in program.sensors}
        self._prepare_state()

    # -- state -------------------------------------------------------------------------

    def _prepare_state(self) -> None:
        """Keep schedules/watermarks of unchanged sensors; reset those whose trigger changed."""
        for name, spec in self.program.sensors.items():
            key = json.dumps(spec.trigger.to_dict(), sort_keys=True)
            entry = self.state.sensor(name)
            if entry.get("trigger_key") != key:
                for stale in ("next_run", "watermark", "event_attempts"):
                    entry.pop(stale, None)
                entry["trigger_key"] = key
            if spec.trigger.kind == "on" and not entry.get("watermark"):
                entry["watermark"] = initial_watermark(spec.trigger.event)
        for name in self.program.actuators:
            self.state.actuator(name)
        self.state.save()

    # -- MLflow and peers ----------------------------------------------------------------

    def mlflow_client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                self._client = open_client(self.tracking_uri, self._lock_path)
            return self._client

    def _peer_url(self, agent: str) -> str:
        if agent in self.peer_urls:
            return self.peer_urls[agent].rstrip("/")
        from scanflow_jupyter.agents.registry import PeerNotFound, Registry

        try:
            entry = Registry(self.home).find_peer(agent, app=self.program.app, notebook=self.program.notebook)
        except PeerNotFound as exc:
            raise PeerCallError(str(exc)) from None
        return str(entry.get("url") or f"http://127.0.0.1:{entry['port']}").rstrip("/")

    def call_peer(self, agent: str, actuator: str, payload: Any, *, timeout: float | None, caller: str) -> Any:
        import httpx

        if self._http is None:
            self._http = httpx.Client(timeout=httpx.Timeout(timeout or DEFAULT_CALL_TIMEOUT, connect=5.0))
        from scanflow_jupyter.agents.auth import agent_token, auth_headers

        url = f"{self._peer_url(agent)}/actuators/{actuator}"
        body = json.dumps(jsonable(payload, limit=10_000_000))
        if self.token is None:
            self.token = agent_token(self.home)
        headers = {"content-type": "application/json", "x-scanflow-caller": caller, **auth_headers(self.token)}
        deadline = time.monotonic() + CONNECT_RETRY_S
        while True:
            try:
                response = self._http.post(url, content=body, timeout=timeout or DEFAULT_CALL_TIMEOUT,
                                           headers=headers)
                break
            except httpx.ConnectError as exc:  # the peer may be restarting: its port is kept
                if time.monotonic() > deadline:
                    raise PeerCallError(f"agent '{agent}' is not reachable at {url}: {exc}") from None
                time.sleep(0.2)
                url = f"{self._peer_url(agent)}/actuators/{actuator}"
            except httpx.TimeoutException:
                raise PeerCallError(f"agent '{agent}' actuator '{actuator}' did not answer within "
                                    f"{timeout or DEFAULT_CALL_TIMEOUT:g} s (pass timeout=...)") from None
        try:
            doc = response.json()
        except ValueError:
            doc = {"error": response.text[:500]}
        if response.status_code >= 400 or not doc.get("ok", False):
            detail = doc.get("error") or doc.get("detail") or response.text[:500]
            if response.status_code == 401:
                detail = (f"it refused this agent's token ({detail}). Both agents must belong to the same project "
                          "(one .scanflow home, or the same $SCANFLOW_AGENT_TOKEN)")
            raise PeerCallError(f"agent '{agent}' actuator '{actuator}' failed (HTTP {response.status_code}): {detail}")
        return doc.get("result")

    # -- calls -----------------------------------------------------------------------------

    async def run_sensor(self, name: str, trigger: str = "http") -> dict[str, Any]:
        """Run sensor `name` now (KeyError if unknown) and return its outcome."""
        spec = self.program.sensors[name]
        lock = self._sensor_locks.setdefault(name, asyncio.Lock())
        async with lock:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, self._sensor_call, spec, trigger)

    async def run_actuator(self, name: str, payload: Any, caller: str | None = None,
                           trigger: str = "http") -> dict[str, Any]:
        """Call actuator `name` (KeyError if unknown) and return its outcome."""
        self.program.actuators[name]  # noqa: B018 - KeyError for an unknown actuator
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._actuator_call, name, payload, caller, trigger)

    def _sensor_call(self, spec: SensorSpec, trigger: str) -> dict[str, Any]:
        import_mlflow()  # before user code, which may import it too (see import_mlflow)
        name = spec.name
        entry = self.state.sensor(name)
        events: list[Any] | None = None
        new_mark = None
        started = time.time()
        if spec.trigger.kind == "on":
            mark = entry.get("watermark") or initial_watermark(spec.trigger.event)
            try:
                events, new_mark = poll(spec.trigger.event, self.mlflow_client(), mark, self._exp_cache[name])
            except Exception as exc:  # noqa: BLE001 - the store may be unavailable: report, retry next poll
                error = f"MLflow: {_one_line(exc)}"
                self.state.update("sensors", name, last_poll=started, last_error=error, last_error_at=started,
                                  state="error", errors=int(entry.get("errors", 0)) + 1)
                self._note_error(name, error)
                return {"ok": False, "error": error, "events": 0, "called": False}
            if not events:
                fields: dict[str, Any] = {"last_poll": started}
                if new_mark != mark:
                    fields["watermark"] = new_mark
                if entry.get("state") == "error" and not entry.get("event_attempts"):
                    fields["state"] = "ok"
                self.state.update("sensors", name, **fields)
                return {"ok": True, "events": 0, "called": False, "value": None}
        ctx = self.context.for_call("sensor", name, trigger)
        args: list[Any] = [ctx] if events is None else [ctx, events]
        self.state.update("sensors", name, state="running")
        value, error, tb = None, None, None
        try:
            value = _invoke(spec.fn, args)
        except Exception as exc:  # noqa: BLE001 - user code
            error, tb = _one_line(exc), _traceback()
        duration = time.time() - started
        shown = jsonable(value)
        fields = {"runs": int(entry.get("runs", 0)) + 1, "last_run": started, "last_duration_s": duration,
                  "state": "ok" if error is None else "error"}
        if spec.trigger.kind == "on":
            fields["last_poll"] = started
        if error is None:
            fields["last_value"] = shown
            if events is not None:
                fields.update(watermark=new_mark, event_attempts=0,
                              events=int(entry.get("events", 0)) + len(events))
        else:
            fields.update(last_error=error, last_error_at=time.time(), errors=int(entry.get("errors", 0)) + 1)
            if events is not None:
                attempts = int(entry.get("event_attempts", 0)) + 1
                fields["event_attempts"] = attempts
                if attempts >= MAX_EVENT_ATTEMPTS:  # do not retry the same events forever
                    fields.update(watermark=new_mark, event_attempts=0)
                    self.messages.add("system", name, ok=False,
                                      text=f"gave up on {len(events)} event(s) after {attempts} failed attempts")
        self.state.update("sensors", name, **fields)
        inputs = {"events": jsonable(events)} if events is not None else {}
        self.journal.record(CallRecord("sensor", name, trigger, started, duration, error is None,
                                       inputs=inputs, result=shown, error=error))
        self.messages.add("sensor", name, trigger=trigger, ok=error is None, value=shown if error is None else None,
                          error=error, duration_s=round(duration, 6),
                          events=len(events) if events is not None else None)
        if error is not None:
            _log.warning("sensor %s failed: %s\n%s", name, error, tb)
            return {"ok": False, "error": error, "traceback": tb, "duration_s": duration, "called": True,
                    "events": len(events or [])}
        self._run_rules(name, ctx, value)
        return {"ok": True, "value": shown, "duration_s": duration, "called": True, "events": len(events or [])}

    def _note_error(self, name: str, error: str) -> None:
        last = self.messages.list(limit=1)
        if not (last and last[-1].get("name") == name and last[-1].get("error") == error):
            self.messages.add("sensor", name, ok=False, error=error)  # one message per distinct outage

    def _run_rules(self, sensor_name: str, ctx: AgentContext, value: Any) -> None:
        for rule in self.program.rules.values():
            if rule.after != sensor_name:
                continue
            rule_ctx = ctx.for_call("rule", rule.name, f"after {sensor_name}")
            try:
                result = _invoke(rule.fn, [rule_ctx, value])
                self.messages.add("rule", rule.name, ok=True, value=jsonable(result))
            except Exception as exc:  # noqa: BLE001 - user code
                self.messages.add("rule", rule.name, ok=False, error=_one_line(exc))
                _log.warning("rule %s failed: %s", rule.name, _traceback())

    def _actuator_call(self, name: str, payload: Any, caller: str | None, trigger: str) -> dict[str, Any]:
        import_mlflow()
        spec = self.program.actuators[name]
        entry = self.state.actuator(name)
        ctx = self.context.for_call("actuator", name, trigger, caller)
        started = time.time()
        value, error, tb, forbidden = None, None, None, False
        try:
            value = _invoke(spec.fn, [ctx, payload])
        except Exception as exc:  # noqa: BLE001 - user code
            from scanflow_jupyter.agents.templates import NotebookNotAllowed

            error, tb, forbidden = _one_line(exc), _traceback(), isinstance(exc, NotebookNotAllowed)
        duration = time.time() - started
        shown = jsonable(value, limit=1_000_000)
        fields: dict[str, Any] = {"runs": int(entry.get("runs", 0)) + 1, "last_run": started,
                                  "last_duration_s": duration, "state": "ok" if error is None else "error"}
        if error is None:
            fields["last_value"] = jsonable(value)
        else:
            fields.update(last_error=error, last_error_at=time.time(), errors=int(entry.get("errors", 0)) + 1)
        self.state.update("actuators", name, **fields)
        self.journal.record(CallRecord("actuator", name, trigger, started, duration, error is None,
                                       inputs={"payload": jsonable(payload)}, result=jsonable(value),
                                       error=error, caller=caller))
        self.messages.add("actuator", name, trigger=trigger, caller=caller, ok=error is None,
                          value=jsonable(value) if error is None else None, error=error,
                          duration_s=round(duration, 6))
        if error is not None:
            _log.warning("actuator %s failed: %s\n%s", name, error, tb)
            return {"ok": False, "error": error, "traceback": tb, "duration_s": duration,
                    **({"forbidden": True} if forbidden else {})}
        return {"ok": True, "result": shown, "duration_s": duration}

    # -- scheduling --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start one scheduling task per sensor with a trigger (and warm MLflow up in the background)."""
        self._warm_thread = threading.Thread(target=self._warm_up, name="mlflow-warm-up", daemon=True)
        self._warm_thread.start()
        for spec in self.program.sensors.values():
            if spec.trigger.kind != "manual":
                self._tasks.append(asyncio.create_task(self._schedule(spec), name=f"sensor-{spec.name}"))
        self.messages.add("system", None, text=f"agent started (pid {os.getpid()}, start #{self.state.data['starts']})")

    def _warm_up(self) -> None:
        try:
            self.mlflow_client()
        except Exception as exc:  # noqa: BLE001 - reported by the first call that needs it
            _log.warning("MLflow client not ready: %s", _one_line(exc))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        self._tasks.clear()
        if self._warm_thread is not None:  # never stop in the middle of opening the store
            await asyncio.get_running_loop().run_in_executor(None, self._warm_thread.join, 8.0)
        self.state.save()
        await asyncio.get_running_loop().run_in_executor(None, self.journal.close, 3.0)
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._http is not None:
            self._http.close()

    def _next_due(self, spec: SensorSpec, after: float) -> float:
        if spec.trigger.kind == "every":
            return after + float(spec.trigger.every_s or 1.0)
        if spec.trigger.kind == "cron":
            from datetime import datetime

            from croniter import croniter

            return float(croniter(spec.trigger.cron, datetime.fromtimestamp(after).astimezone()).get_next(float))
        return after + float(spec.trigger.event.poll_s)

    async def _schedule(self, spec: SensorSpec) -> None:
        name = spec.name
        trigger = {"every": "schedule", "cron": "schedule", "on": "event"}[spec.trigger.kind]
        entry = self.state.sensor(name)
        due = entry.get("next_run")
        if due is None:
            due = time.time() if spec.trigger.kind != "cron" else self._next_due(spec, time.time())
        while True:
            self.state.update("sensors", name, next_run=due)
            delay = float(due) - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                await self.run_sensor(name, trigger)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - never let a sensor's loop die
                _log.exception("sensor %s: scheduling error", name)
            now = time.time()
            due = self._next_due(spec, float(due))
            if due < now:  # behind schedule: run next from now, never in a burst
                due = now if spec.trigger.kind != "cron" else self._next_due(spec, now)

    # -- status ------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        snap = self.state.snapshot()
        sensors = []
        for name, spec in self.program.sensors.items():
            entry = snap["sensors"].get(name, {})
            mark = entry.get("watermark")
            sensors.append({
                "name": name, "trigger": spec.trigger.to_dict(), "schedule": spec.trigger.describe(),
                "doc": spec.doc, "state": entry.get("state", "idle"), "next_run": entry.get("next_run"),
                "last_run": entry.get("last_run"), "last_poll": entry.get("last_poll"),
                "last_value": entry.get("last_value"), "last_error": entry.get("last_error"),
                "last_error_at": entry.get("last_error_at"), "runs": entry.get("runs", 0),
                "errors": entry.get("errors", 0), "events": entry.get("events", 0),
                "watermark": None if mark is None else {"since_ms": mark.get("since_ms"),
                                                        "seen": len(mark.get("seen") or {}),
                                                        **({"side": mark["side"]} if "side" in mark else {})},
            })
        actuators = []
        for name, spec in self.program.actuators.items():
            entry = snap["actuators"].get(name, {})
            actuators.append({"name": name, "builtin": spec.builtin, "doc": spec.doc,
                              "state": entry.get("state", "idle"), "last_run": entry.get("last_run"),
                              "last_value": entry.get("last_value"), "last_error": entry.get("last_error"),
                              "last_error_at": entry.get("last_error_at"), "runs": entry.get("runs", 0),
                              "errors": entry.get("errors", 0)})
        now = time.time()
        return {
            "name": self.program.name, "app": self.program.app, "team": self.program.team,
            "template": self.program.template, "notebook": self.program.notebook, "cell": self.program.cell,
            "pid": os.getpid(), "started_at": self.started_at, "uptime_s": now - self.started_at,
            "first_started": snap.get("first_started"), "starts": snap.get("starts"),
            "tracking_uri": redact_uri(self.tracking_uri), "sensors": sensors, "actuators": actuators,
            "rules": [{"name": r.name, "after": r.after, "doc": r.doc} for r in self.program.rules.values()],
            "tracking": self.journal.status(), "messages": len(self.messages),
        }
