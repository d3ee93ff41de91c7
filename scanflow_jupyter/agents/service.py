"""One agent as an HTTP service (FastAPI + uvicorn), and the agent process's entry point.

Routes (DESIGN.md §3):

* `GET /status` — name, template, uptime, each sensor's schedule, last run, last value, last
  error (and watermark), the actuators, rules and MLflow logging health.
* `GET /messages?since=ID&limit=N` — recent messages: calls, events, `ctx.log` lines.
* `POST /sensors/{name}` — run a sensor now; answers its outcome.
* `POST /actuators/{name}` — body = the JSON payload (may be empty); answers
  `{"ok": true, "result": ...}`, or HTTP 500 `{"ok": false, "error": ...}` if it raised.
* `GET /health` — liveness with the agent's name and pid.
* `GET /healthz` — `{"ok": true}` and nothing else: the only route open without the token
  (Kubernetes probes).

Every other route needs `Authorization: Bearer <the project's agent token>`, an allowed `Host`
and no cross-site `Origin`; POST bodies must be JSON (`agents.auth`).

`python -m scanflow_jupyter.agents.service --spec SPEC.json (--fd N | --port P)` runs one
agent; the supervisor passes a listening socket it keeps across restarts (`--fd`), so the port
never changes and requests sent while the agent restarts wait instead of failing. Exit code 3:
the agent's code was refused (the reason is in the boot file).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from scanflow_jupyter.agents import auth
from scanflow_jupyter.agents.runtime import AgentRuntime
from scanflow_jupyter.supervision import watch_parent

__all__ = ["EXIT_REFUSED", "create_app", "main"]

EXIT_REFUSED = 3
_log = logging.getLogger("scanflow.agents")


class _Guard:
    """ASGI middleware: refuse what `auth.refusal` refuses, before any route runs."""

    def __init__(self, app: Any, token: str, hosts: frozenset[str]) -> None:
        self.app, self.token, self.hosts = app, token, hosts

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":  # agents have no websocket route: refuse before any app code
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] == "http" and await auth.refuse_asgi(scope, receive, send, token=self.token,
                                                              hosts=self.hosts):
            return
        await self.app(scope, receive, send)


def create_app(runtime: AgentRuntime, *, token: str | None = None, hosts: Iterable[str] | None = None,
               on_ready: Callable[[], None] | None = None,
               on_started: Callable[[FastAPI], Any] | None = None) -> FastAPI:
    """The FastAPI app of `runtime`; its lifespan starts and stops the sensors' schedules.

    Requests need `token` (default: the project's agent token, `auth.agent_token`) and one of
    `hosts` (default: `auth.allowed_hosts()`).
    """
    secret = token or runtime.token or auth.agent_token(runtime.home)
    names = frozenset(hosts) if hosts is not None else auth.allowed_hosts()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        extra = on_started(app) if on_started else None
        if on_ready:
            on_ready()
        try:
            yield
        finally:
            if extra is not None:
                extra.cancel()
            await runtime.stop()

    program = runtime.program
    app = FastAPI(title=f"scanflow agent {program.name}", version="1",
                  description=f"Agent '{program.name}' of application '{program.app}'"
                  + (f" (template {program.template})" if program.template else ""),
                  lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_middleware(_Guard, token=secret, hosts=names)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"ok": True}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"ok": True, "name": program.name, "pid": os.getpid()}

    @app.get("/status")
    async def status() -> dict[str, Any]:
        return runtime.status()

    @app.get("/messages")
    async def messages(since: int = 0, limit: int = 100) -> dict[str, Any]:
        return {"name": program.name, "messages": runtime.messages.list(since=since, limit=limit)}

    @app.post("/sensors/{name}")
    async def trigger_sensor(name: str) -> JSONResponse:
        if name not in program.sensors:
            return _unknown("sensor", name, list(program.sensors))
        outcome = await runtime.run_sensor(name, trigger="http")
        return JSONResponse(outcome, status_code=200 if outcome.get("ok") else 500)

    @app.post("/actuators/{name}")
    async def call_actuator(name: str, request: Request) -> JSONResponse:
        if name not in program.actuators:
            return _unknown("actuator", name, list(program.actuators))
        raw = await request.body()
        try:
            payload = json.loads(raw) if raw.strip() else None
        except ValueError as exc:
            return JSONResponse({"ok": False, "error": f"the body is not JSON: {exc}"}, status_code=400)
        caller = request.headers.get("x-scanflow-caller")
        outcome = await runtime.run_actuator(name, payload, caller=caller,
                                             trigger="peer" if caller else "http")
        code = 200 if outcome.get("ok") else 403 if outcome.get("forbidden") else 500
        return JSONResponse(outcome, status_code=code)

    return app


def _unknown(kind: str, name: str, known: list[str]) -> JSONResponse:
    return JSONResponse({"ok": False, "error": f"no {kind} '{name}'; {kind}s: {', '.join(known) or 'none'}"},
                        status_code=404)


# -- the agent process --------------------------------------------------------------------


class _Redacting(logging.Filter):
    """Mask credentials (URI user-info, the environment's secret values) in every log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        from scanflow_jupyter.agents.runtime import redacted

        message = record.getMessage()
        clean = redacted(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info:
            record.exc_text = redacted(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def _write_boot(path: Path | None, **fields: Any) -> None:
    if path is None:
        return
    from scanflow_jupyter.agents.state import atomic_write_json

    atomic_write_json(path, {"pid": os.getpid(), "at": time.time(), **fields})


def _prepare_environment(tracking_uri: str) -> None:
    from scanflow_jupyter.agents.journal import quiet_mlflow_logs

    if tracking_uri.startswith("sqlite:"):
        # A fresh sqlite connection per operation: several processes share the file, and a
        # store that was briefly unavailable (moved, locked, restored) works again at once.
        os.environ.setdefault("MLFLOW_SQLALCHEMYSTORE_POOLCLASS", "NullPool")
    quiet_mlflow_logs()


def main(argv: list[str] | None = None) -> int:
    from scanflow_jupyter._ast_guard import install as guard_ast

    guard_ast()  # sensors and actuators run on worker threads
    parser = argparse.ArgumentParser(prog="python -m scanflow_jupyter.agents.service", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", required=True, help="agent spec JSON (written by `scanflow agents up`)")
    parser.add_argument("--fd", type=int, default=None, help="an inherited listening socket")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--state-dir", default=None, help="default: the spec file's folder")
    parser.add_argument("--boot", default=None, help="file to write 'ready' / 'refused' into")
    parser.add_argument("--parent", type=int, default=None, help="stop when this process is gone")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_Redacting())
    from scanflow_jupyter.agents.loader import AgentLoadError, load_agent
    from scanflow_jupyter.tracking import default_artifact_root, resolve_tracking_uri, scanflow_home

    spec_path = Path(args.spec)
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    os.environ.setdefault("SCANFLOW_STARTED_BY", f"agent:{spec.get('name') or spec_path.stem}")  # run_pipeline's runs
    boot = Path(args.boot) if args.boot else None
    home = scanflow_home()
    tracking_uri = resolve_tracking_uri(home)
    _prepare_environment(tracking_uri)
    try:
        program = load_agent(spec)
    except AgentLoadError as exc:
        _write_boot(boot, state="refused", message=vars(exc.message))
        print(f"agent '{spec.get('name')}' refused: {exc.message}", file=sys.stderr, flush=True)
        return EXIT_REFUSED
    try:
        token = auth.agent_token(home)
    except auth.AgentTokenError as exc:
        _write_boot(boot, state="refused", message={"severity": "error", "code": "agent-token", "text": str(exc),
                                                    "fix": str(exc).split("Fix: ", 1)[-1], "cell": spec.get("cell")})
        print(f"agent '{spec.get('name')}' refused: {exc}", file=sys.stderr, flush=True)
        return EXIT_REFUSED
    peer_urls = json.loads(os.environ.get("SCANFLOW_AGENT_URLS") or "{}")
    runtime = AgentRuntime(program, home=home, tracking_uri=tracking_uri,
                           state_dir=Path(args.state_dir) if args.state_dir else spec_path.parent,
                           artifact_root=default_artifact_root(home), peer_urls=peer_urls, token=token)
    if args.fd is not None:
        sock = socket.socket(fileno=args.fd)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port or 0))
        sock.listen(128)
    import uvicorn

    holder: dict[str, Any] = {}

    def on_started(_app: FastAPI) -> Any:
        if args.parent:
            return asyncio.get_running_loop().create_task(watch_parent(args.parent, holder["server"], _log))
        return None

    host, port = sock.getsockname()[:2]
    app = create_app(runtime, on_started=on_started,
                     on_ready=lambda: _write_boot(boot, state="ready", port=port))
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=5)
    server = holder["server"] = uvicorn.Server(config)
    _log.info("agent %s (app %s) serving on http://%s:%s", program.name, program.app, host, port)
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
