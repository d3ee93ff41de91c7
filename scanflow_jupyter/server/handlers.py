"""REST handlers under `<base_url>scanflow/api/` (contract: REST_API.md). Thin: the work is in
run_manager, mlflow_api, agents_api, jobs and backends. Every route is authenticated; writes
need XSRF (APIHandler checks it for cookie-authenticated requests)."""

from __future__ import annotations

import asyncio
import errno
import functools
import json
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado.iostream import StreamClosedError

from scanflow_jupyter import __version__
from scanflow_jupyter.cell_numbers import message_doc
from scanflow_jupyter.data.store import RunNotFoundError, RunUnreadableError, StoreError
from scanflow_jupyter.redact import process_secrets, redact_text, redact_uri, secret_values
from scanflow_jupyter.server import agents_api, backends
from scanflow_jupyter.server.app_view import app_view
from scanflow_jupyter.server.events import follow, read_events
from scanflow_jupyter.server.jobs import cli_command
from scanflow_jupyter.server.mlflow_api import MAX_RESULTS_LIMIT, MlflowRequestError
from scanflow_jupyter.server.output_notebook import (
    OutputNotebookError,
    check_notebook_content,
    read_output_notebook,
)
from scanflow_jupyter.server.paths import (
    PathInvalid,
    PathMissing,
    PathRefused,
    check_length,
    inside_root,
    resolve_in_root,
)
from scanflow_jupyter.server.run_manager import RunConflict, RunRequestError, RunStartError
from scanflow_jupyter.server.settings import NAMES as SETTING_NAMES
from scanflow_jupyter.server.settings import (
    SettingsError,
    check_value,
    effective,
    environment,
    parse_settings,
)

RUN_ID = r"(?P<run_id>[A-Za-z0-9_][A-Za-z0-9_.-]*)"
JOB_ID = r"(?P<job_id>[0-9a-f]{12})"
MAX_BODY = 1 << 20  # bytes of a request body (a parameter value can be nearly that long)
MAX_DEPTH = 64  # nesting levels of a JSON body


class ApiError(tornado.web.HTTPError):
    """An error answered as JSON `{"message", "reason"?, "fix"?, ...extra}`."""

    def __init__(self, status: int, message: str, fix: str | None = None, **extra: Any) -> None:
        super().__init__(status, log_message=message.replace("%", "%%"))
        self.payload = {"message": message, **({"fix": fix} if fix else {}), **extra}


def api_error(exc: BaseException | None, unreadable_status: int = 409) -> ApiError | None:
    """The one mapping of domain errors to JSON answers (None: a real 500). Handlers may let
    these propagate; `write_error` answers them."""
    if isinstance(exc, ApiError) or exc is None:
        return exc
    if isinstance(exc, RunUnreadableError):
        return ApiError(unreadable_status, str(exc), exc.fix, run_id=exc.run_id)
    if isinstance(exc, RunNotFoundError):
        return ApiError(404, str(exc), "list the runs with GET runs")
    if isinstance(exc, StoreError):  # an impossible run id or step name, e.g. the reserved `cache`
        return ApiError(404, str(exc), "list the runs with GET runs")
    if isinstance(exc, PathInvalid):
        return ApiError(400, str(exc), "give a shorter notebook path, relative to the server root")
    if isinstance(exc, PathRefused):
        return ApiError(403, str(exc), "give a path inside the server root")
    if isinstance(exc, PathMissing):
        return ApiError(404, str(exc), "check the path (relative to the server root)")
    if isinstance(exc, RecursionError):
        return ApiError(400, "the request is nested too deeply", f"nest JSON at most {MAX_DEPTH} levels")
    if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:
        return ApiError(400, f"a name in the request is too long: {exc.strerror}", "use shorter names")
    return None


def json_depth(value: Any) -> int:
    """Nesting depth of parsed JSON (a scalar is 0, `{}` is 1), without recursion."""
    depth, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is not None:
            depth = max(depth, level)
            stack.extend((child, level + 1) for child in children)
    return depth


class ScanflowHandler(APIHandler):
    """Shared helpers: the extension state, JSON bodies, notebook paths, JSON errors."""

    @property
    def ext(self) -> Any:
        return self.settings["scanflow"]

    async def prepare(self) -> None:
        """Request limits (after authentication, so strangers learn nothing): body size (413),
        URL path length (400)."""
        await super().prepare()
        if self.current_user is None:
            return  # @authenticated answers 403
        size = len(self.request.body or b"")
        if size > MAX_BODY:
            raise ApiError(413, f"the request body is {size} bytes (limit {MAX_BODY})",
                           "send a smaller body; pass large data as a file in the server root")
        try:
            check_length(unquote(self.request.path), "the URL path")
        except PathInvalid as exc:
            raise ApiError(400, str(exc), "use the routes of docs/rest-api.md") from None

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        mapped = api_error(exc)
        if mapped is not None and mapped is not exc:
            self.set_status(mapped.status_code)
            exc = mapped
        if isinstance(exc, ApiError):
            self.set_header("Content-Type", "application/json")
            self.finish(self.redacted(json.dumps({"reason": self._reason, **exc.payload})))
            return
        super().write_error(status_code, **kwargs)

    def log_exception(self, typ: Any, value: BaseException | None, tb: Any) -> None:
        """Tornado's logging of failed requests, without the query string and with credentials
        masked (a request may carry a tracking_uri setting; an MLflow error quotes its URI)."""
        import traceback

        from tornado.log import app_log, gen_log

        where = f"{self.request.method} {self.request.path} ({self.request.remote_ip})"
        if api_error(value) is not None and not isinstance(value, tornado.web.HTTPError):
            self.log.warning("%s: %s", where, self.redacted(str(value)))  # a domain error: answered as JSON
            return
        if isinstance(value, tornado.web.HTTPError):
            message = value.get_message()
            if message:
                gen_log.warning("%d %s: %s", value.status_code, where, self.redacted(message))
            return
        detail = "".join(traceback.format_exception(typ, value, tb)) if typ else ""
        app_log.error("Uncaught exception %s\n%s", where, self.redacted(detail))

    def reply(self, doc: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(self.redacted(json.dumps(doc, default=str)))

    def redacted(self, text: str) -> str:
        """`text` without credentials: URI user-info, and the secret values the server knows of
        (its environment, the tracking_uri trait, the request's own settings)."""
        known = {"trait": self.ext.config.tracking_uri or ""}
        secrets = process_secrets() + secret_values(known) + self._request_secrets()
        return redact_text(text, secrets)

    def _request_secrets(self) -> list[str]:
        values = {name: self.get_query_argument(name, "") or "" for name in SETTING_NAMES}
        try:
            body = json.loads(self.request.body or b"{}") if len(self.request.body or b"") <= MAX_BODY else None
            settings = body.get("settings") if isinstance(body, dict) else None
        except (ValueError, UnicodeDecodeError, RecursionError):
            settings = None
        if isinstance(settings, dict):
            values.update({f"body_{k}": v for k, v in settings.items() if isinstance(v, str)})
        return secret_values(values)

    def json_body(self) -> dict[str, Any]:
        too_deep = False
        try:
            body = json.loads(self.request.body or b"{}")
        except RecursionError:  # far deeper than the limit
            body, too_deep = None, True
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"the request body is not JSON: {exc}", "send a JSON object") from None
        if too_deep or json_depth(body) > MAX_DEPTH:
            raise ApiError(400, f"the request body is nested more than {MAX_DEPTH} levels deep",
                           f"nest JSON at most {MAX_DEPTH} levels")
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object", 'e.g. {"path": "nb.ipynb"}')
        return body

    def notebook(self, path: Any, must_exist: bool = True) -> Path:
        if not isinstance(path, str):
            raise ApiError(400, "`path` is required: the notebook path relative to the server root",
                           "e.g. path=notebooks/diamond.ipynb")
        try:
            return resolve_in_root(self.ext.root, path, must_exist=must_exist)
        except (PathRefused, PathMissing, PathInvalid) as exc:
            raise api_error(exc) from None

    def body_settings(self, body: dict[str, Any]) -> dict[str, str]:
        """The effective settings of a write: the body's `settings` over the server traitlets."""
        try:
            return effective(parse_settings(body.get("settings")), self.ext.config)
        except SettingsError as exc:
            raise ApiError(400, exc.message, exc.fix) from None

    def query_settings(self) -> dict[str, str]:
        """The effective settings of a GET/DELETE: query parameters named like the settings."""
        try:
            user = {name: check_value(name, self.get_query_argument(name, None), "query")
                    for name in SETTING_NAMES}
        except SettingsError as exc:
            raise ApiError(400, exc.message, exc.fix) from None
        return effective({k: v for k, v in user.items() if v}, self.ext.config)

    def user_tracking_uri(self) -> str:
        """The `tracking_uri` query parameter ('' = the server's)."""
        try:
            return check_value("tracking_uri", self.get_query_argument("tracking_uri", None), "query")
        except SettingsError as exc:
            raise ApiError(400, exc.message, exc.fix) from None

    def int_arg(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.get_query_argument(name, None)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ApiError(400, f"{name}={raw!r} is not a whole number", f"use {low}..{high}") from None
        if not low <= value <= high:
            raise ApiError(400, f"{name}={value} is out of range", f"use {low}..{high}")
        return value

    def run_state(self, run_id: str, unreadable_status: int = 409) -> Any:
        """The run's state; 404 for an unknown run, 409 (or `unreadable_status`) for a broken run.json."""
        try:
            self.ext.runs.store.state_path(run_id)
        except StoreError as exc:  # not a possible run id (e.g. the reserved `cache`)
            raise ApiError(404, f"no run '{run_id}': {exc}", "list the runs with GET runs") from None
        try:
            return self.ext.runs.read(run_id)
        except StoreError as exc:
            raise api_error(exc, unreadable_status) from None


class ConfigHandler(ScanflowHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        values = self.query_settings()
        doc = {**self.ext.config.to_dict(), **{name: values.get(name) for name in SETTING_NAMES},
               "tracking_uri": redact_uri(self.ext.tracking_uri(values.get("tracking_uri", ""))),
               "backends": await backends.backends(values.get("kube_context", "")), "version": __version__,
               "default_base_image": default_base_image()}
        self.reply(doc)


def default_base_image() -> str:
    """The base image of a build without a base_image setting (what `scanflow build` would use)."""
    import os

    from scanflow_jupyter.build.builder import DEFAULT_BASE_IMAGE

    return os.environ.get("SCANFLOW_BASE_IMAGE") or DEFAULT_BASE_IMAGE


class AppHandler(ScanflowHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        path = self.get_query_argument("path", None)
        nb = self.notebook(path)
        self.ext.runs.warm_up()  # the sidebar shows a notebook: a Run may follow
        doc = await asyncio.get_running_loop().run_in_executor(None, app_view, nb, path)
        self.reply(doc)

    @tornado.web.authenticated
    async def post(self) -> None:
        """Validate an unsaved notebook model (the editor's content) as if saved at `path`."""
        body = self.json_body()
        path = body.get("path")
        nb = self.notebook(path)
        try:
            content = check_notebook_content(body.get("notebook"))
        except ValueError as exc:
            raise ApiError(400, str(exc), 'send {"path": ..., "notebook": <the notebook JSON>}') from None
        doc = await asyncio.get_running_loop().run_in_executor(None, app_view, nb, path, content)
        self.reply(doc)


class RunsHandler(ScanflowHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        path = self.get_query_argument("path", None)
        nb = self.notebook(path, must_exist=False) if path else None
        limit = self.int_arg("limit", 50, 1, 1000)
        runs = await asyncio.get_running_loop().run_in_executor(None, self.ext.runs.list, nb, limit)
        self.reply({"runs": runs})

    @tornado.web.authenticated
    async def post(self) -> None:
        body = self.json_body()
        resume = body.get("resume") or None
        if resume is not None and not isinstance(resume, str):
            raise ApiError(400, "`resume` must be a run id (string)")
        if body.get("path") is None and resume:
            previous = self.run_state(resume, 422)
            if not inside_root(self.ext.root, previous.notebook):
                raise ApiError(403, f"run {resume} belongs to a notebook outside the server root")
            nb = self.notebook(str(Path(previous.notebook).resolve().relative_to(Path(self.ext.root).resolve())))
        else:
            nb = self.notebook(body.get("path"))
        backend = body.get("backend") or self.ext.config.default_backend or "local"
        params = body.get("parameters") or {}
        only = body.get("only") or []
        if not isinstance(params, dict):
            raise ApiError(400, "`parameters` must be an object {name: value}")
        if not isinstance(only, list) or not all(isinstance(o, str) for o in only):
            raise ApiError(400, "`only` must be a list of executor names")
        values = self.body_settings(body)
        await self._check_backend(backend, values.get("kube_context", ""))
        try:
            summary = await self.ext.runs.start(nb, backend=backend, params=params, only=only, resume=resume,
                                                env=environment(values))
        except RunRequestError as exc:
            raise ApiError(400, exc.message, exc.fix, messages=exc.messages) from None
        except RunUnreadableError as exc:  # `resume` names a run whose run.json is broken
            raise api_error(exc, 422) from None
        except RunStartError as exc:
            raise ApiError(500, str(exc)) from None
        self.reply(summary, 202)

    async def _check_backend(self, name: Any, kube_context: str) -> None:
        from scanflow_jupyter.runtime.backends import available_backends

        registered = available_backends()
        if not isinstance(name, str) or name not in registered:
            raise ApiError(400, f"unknown backend {name!r}", f"use one of: {', '.join(sorted(registered))}")
        state = await backends.backend(name, kube_context)
        if state is not None and not state["available"]:
            raise ApiError(503, f"the {name} backend is unavailable: {state['reason']}")


class RunHandler(ScanflowHandler):
    @tornado.web.authenticated
    def get(self, run_id: str) -> None:
        self.reply(self.ext.runs.summary(self.run_state(run_id)))


class CancelHandler(ScanflowHandler):
    @tornado.web.authenticated
    async def post(self, run_id: str) -> None:
        self.run_state(run_id)
        try:
            await self.ext.runs.cancel(run_id)
        except RunConflict as exc:
            raise ApiError(409, str(exc)) from None
        status = "running"
        for _ in range(100):  # the runner stops its steps and writes `killed` (usually < 2 s)
            status = self.ext.runs.shown_status(self.ext.runs.read(run_id))
            if status != "running":
                break
            await asyncio.sleep(0.1)
        self.reply({"run_id": run_id, "status": status}, 202)


class EventsHandler(ScanflowHandler):
    _closed = False

    def on_connection_close(self) -> None:
        self._closed = True

    @tornado.web.authenticated
    async def get(self, run_id: str) -> None:
        state = self.run_state(run_id)
        after = self.int_arg("after", 0, 0, 10**9)
        last_id = self.request.headers.get("Last-Event-ID")
        if self.get_query_argument("after", None) is None and last_id and last_id.isdigit():
            after = int(last_id)
        run_dir = self.ext.runs.run_dir(run_id)
        if self.get_query_argument("format", "") == "json":
            events, finished = read_events(run_dir, after)
            self.reply({"events": events, "finished": finished,
                        "status": self.ext.runs.shown_status(self.ext.runs.read(run_id))})
            return
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")

        def running() -> bool:
            try:
                return self.ext.runs.process_alive(self.ext.runs.read(state.run_id))
            except StoreError:  # run.json broke while we followed it: nothing more will come
                return False

        try:
            self.write("retry: 1000\n\n")
            await self.flush()
            async for event in follow(run_dir, after, running):
                if self._closed:
                    return
                if event is None:
                    self.write(": keep-alive\n\n")
                else:
                    self.write(f"id: {event['seq']}\ndata: {self.redacted(json.dumps(event, default=str))}\n\n")
                await self.flush()
        except StreamClosedError:
            return
        self.finish()


class LogsHandler(ScanflowHandler):
    @tornado.web.authenticated
    async def get(self, run_id: str) -> None:
        self.run_state(run_id)
        step = self.get_query_argument("step", None)
        if not step:
            raise ApiError(400, "`step` is required", "pass step=<executor name>")
        try:
            doc = await asyncio.get_running_loop().run_in_executor(None, self.ext.runs.logs, run_id, step)
        except (LookupError, StoreError) as exc:
            raise ApiError(404, str(exc)) from None
        self.reply(doc)


class OutputNotebookHandler(ScanflowHandler):
    """A step's output notebook JSON, read-only, from the run store (never through the contents API)."""

    @tornado.web.authenticated
    async def get(self, run_id: str) -> None:
        state = self.run_state(run_id)
        step = self.get_query_argument("step", None)
        if not step:
            raise ApiError(400, "`step` is required", "pass step=<executor name>")
        if step not in state.steps:
            raise ApiError(404, f"run {run_id} has no step '{step}'; its steps: {', '.join(state.steps) or 'none'}")
        try:
            step_dir = self.ext.runs.store.step_dir(run_id, step)
            doc = await asyncio.get_running_loop().run_in_executor(None, read_output_notebook, step_dir, run_id, step)
        except StoreError as exc:
            raise ApiError(404, str(exc)) from None
        except OutputNotebookError as exc:
            raise ApiError(exc.status, exc.message, exc.fix) from None
        self.set_header("Cache-Control", "no-store")
        self.reply({"run_id": run_id, "step": step, "notebook": doc})


class RunAsNotebookHandler(ScanflowHandler):
    """POST: write the run as `scanflow-run-<run_id>.ipynb` next to its notebook ("Open run as notebook")."""

    @tornado.web.authenticated
    async def post(self, run_id: str) -> None:
        from scanflow_jupyter.notebook.debug import run_as_notebook
        from scanflow_jupyter.server.paths import relative_to_root

        state = self.run_state(run_id)
        folder = Path(state.notebook).resolve().parent
        if relative_to_root(self.ext.root, folder) is None:
            raise ApiError(409, f"run {run_id}'s notebook folder {folder} is outside the Jupyter root",
                           "start JupyterLab in a folder that contains the notebook")
        path = await asyncio.get_running_loop().run_in_executor(
            None, lambda: run_as_notebook(folder, run_id, store=self.ext.runs.store))
        self.reply({"run_id": run_id, "path": relative_to_root(self.ext.root, path)}, 201)


class ExperimentsHandler(ScanflowHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        service = self.ext.mlflow(self.user_tracking_uri())  # a bad setting is a 400, before the store is asked
        try:
            experiments = await service.experiments()
        except MlflowRequestError as exc:
            raise ApiError(exc.status, exc.message) from None
        except tornado.web.HTTPError:
            raise
        except Exception as exc:  # noqa: BLE001 - the store itself failed (unreachable, refused, corrupt)
            raise store_failed(self, exc) from None
        self.reply({"experiments": experiments})


def store_failed(handler: ScanflowHandler, exc: Exception) -> ApiError:
    """502: the tracking store named by the settings failed; the message names it, redacted."""
    uri = redact_uri(handler.ext.tracking_uri(handler.user_tracking_uri()))
    return ApiError(502, handler.redacted(f"the MLflow tracking store {uri} failed: {type(exc).__name__}: {exc}"[:2000]),
                    "check the tracking URI setting (Scanflow settings, c.Scanflow.tracking_uri or "
                    "MLFLOW_TRACKING_URI) and that its server is running and reachable")


class MlflowRunsHandler(ScanflowHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        nested = self.get_query_argument("nested", "false").lower() in ("1", "true", "yes")
        # bad arguments are a 400, before the store is asked
        service = self.ext.mlflow(self.user_tracking_uri())
        max_results = self.int_arg("max_results", 100, 1, MAX_RESULTS_LIMIT)
        try:
            doc = await service.runs(
                experiment=self.get_query_argument("experiment", None) or None,
                max_results=max_results,
                page_token=self.get_query_argument("page_token", None),
                filter_string=self.get_query_argument("filter", ""),
                order_by=[o for o in self.get_query_arguments("order_by") if o],
                nested=nested, parent=self.get_query_argument("parent", None) or None)
        except MlflowRequestError as exc:
            raise ApiError(exc.status, exc.message, "check the MLflow search syntax, e.g. "
                           "metrics.accuracy > 0.9 and params.lr = '0.1'" if exc.status == 400 else None) from None
        except tornado.web.HTTPError:
            raise
        except Exception as exc:  # noqa: BLE001 - the store itself failed (unreachable, refused, corrupt)
            raise store_failed(self, exc) from None
        self.reply(doc)


class MlflowUiHandler(ScanflowHandler):
    """`mlflow-ui`: the MLflow UI of the effective tracking URI, started on demand (see server.mlflow_ui)."""

    @tornado.web.authenticated
    async def post(self) -> None:
        from scanflow_jupyter.server.mlflow_ui import MlflowUiError

        uri = self.ext.tracking_uri(self.body_settings(self.json_body()).get("tracking_uri", ""))
        try:
            answer = await asyncio.to_thread(self.ext.mlflow_ui.open, uri)
        except MlflowUiError as exc:
            raise ApiError(exc.status, exc.message, exc.fix) from None
        self.reply(answer.to_dict())


class AgentsHandler(ScanflowHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        path = self.get_query_argument("path", None)
        nb = self.notebook(path) if path else None
        agents = await agents_api.in_thread(agents_api.list_agents, self.ext.home, nb)
        self.reply({"agents": agents})

    @tornado.web.authenticated
    async def post(self) -> None:
        from scanflow_jupyter.agents.control import NoAgents

        body = self.json_body()
        nb = self.notebook(body.get("path"))
        tracking_uri = self.body_settings(body).get("tracking_uri")
        action = body.get("action")
        if action not in ("start", "stop"):
            raise ApiError(400, f"action {action!r} is not 'start' or 'stop'")
        if body.get("names"):
            raise ApiError(400, "starting or stopping some agents of a notebook only is not supported",
                           "send names: null to act on every agent of the notebook")
        if action == "start":
            work = functools.partial(agents_api.start_agents, self.ext.home, nb, tracking_uri)
        else:
            work = functools.partial(agents_api.stop_agents, self.ext.home, nb)
        self.reply(await supervised(work, NoAgents, "add a cell starting with %%agent NAME"), 202)


async def supervised(work: Any, none_declared: type[Exception], add_fix: str) -> Any:
    """Run an agents/services start or stop in a thread; its failures as the REST errors they mean."""
    from scanflow_jupyter.agents.auth import AgentTokenError
    from scanflow_jupyter.notebook.parser import NotebookReadError

    try:
        return await agents_api.in_thread(work)
    except NotebookReadError as exc:
        raise ApiError(400, exc.message.text, exc.message.fix, messages=[message_doc(exc.message)]) from None
    except none_declared as exc:
        raise ApiError(400, str(exc), add_fix) from None
    except AgentTokenError as exc:  # the project's token file is unsafe: state to repair, not a crash
        text, _, fix = str(exc).partition(" Fix: ")
        raise ApiError(409, text, fix) from None
    except RuntimeError as exc:
        raise ApiError(500, str(exc)) from None


class ServicesHandler(ScanflowHandler):
    """`services`: a notebook's local services (`scanflow services up|down|ls`)."""

    @tornado.web.authenticated
    async def get(self) -> None:
        from scanflow_jupyter.server import services_api

        path = self.get_query_argument("path", None)
        nb = self.notebook(path) if path else None
        self.reply({"services": await agents_api.in_thread(services_api.list_services, self.ext.home, nb)})

    @tornado.web.authenticated
    async def post(self) -> None:
        from scanflow_jupyter.server import services_api
        from scanflow_jupyter.services.spec import ServiceSpecError

        body = self.json_body()
        nb = self.notebook(body.get("path"))
        action, names = body.get("action"), body.get("names")
        if action not in ("start", "stop"):
            raise ApiError(400, f"action {action!r} is not 'start' or 'stop'")
        if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise ApiError(400, "names must be a list of service names or null (every service of the notebook)")
        if action == "start":
            work = functools.partial(services_api.start_services, self.ext.home, nb, names or None,
                                     self.body_settings(body).get("tracking_uri"))
        else:
            work = functools.partial(services_api.stop_services, self.ext.home, nb)
        self.reply(await supervised(work, ServiceSpecError, "add a cell starting with %%service NAME"), 202)


class ServicePredictHandler(ScanflowHandler):
    """`services/predict`: the sidebar's "try it" request, sent from here to a registered service's `/predict`."""

    @tornado.web.authenticated
    async def post(self) -> None:
        from scanflow_jupyter.server import services_api

        body = self.json_body()
        nb = self.notebook(body.get("path"))
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise ApiError(400, "`name` is required: the service's name (its %%service cell)")
        if "payload" not in body:
            raise ApiError(400, "`payload` is required: the JSON body for the service's /predict",
                           'e.g. {"inputs": [1, 2, 3]}')
        try:
            doc = await agents_api.in_thread(services_api.try_service, self.ext.home, nb, name, body["payload"])
        except services_api.TryError as exc:
            raise ApiError(exc.status, str(exc), exc.fix) from None
        self.reply(doc)


def _validation_errors(nb: Path) -> list[dict[str, Any]]:
    from scanflow_jupyter.notebook.parser import NotebookReadError, parse_notebook
    from scanflow_jupyter.notebook.validate import validate

    try:
        return [message_doc(m) for m in validate(parse_notebook(nb)) if m.severity == "error"]
    except NotebookReadError as exc:
        return [message_doc(exc.message)]


class BuildsHandler(ScanflowHandler):
    @tornado.web.authenticated
    async def post(self) -> None:
        body = self.json_body()
        nb = self.notebook(body.get("path"))
        values = self.body_settings(body)
        errors = await asyncio.get_running_loop().run_in_executor(None, _validation_errors, nb)
        if errors:
            raise ApiError(400, f"{nb.name} is invalid; nothing was built", messages=errors)
        docker = await backends.backend("docker")
        if docker is not None and not docker["available"]:
            raise ApiError(503, f"images cannot be built: {docker['reason']}")
        cmd = self.ext.jobs.base_command("build", nb, {"--base": values.get("base_image"),
                                                       "--push": values.get("registry")})
        job = await self.ext.jobs.start("build", nb, cmd, environment(values))
        self.reply({"build_id": job.job_id, "status": job.status}, 202)


class BuildHandler(ScanflowHandler):
    @tornado.web.authenticated
    def get(self, job_id: str) -> None:
        job = self.ext.jobs.jobs.get(job_id)
        if job is None or job.kind != "build":
            raise ApiError(404, f"no build {job_id} (builds are kept until the server restarts)")
        self.reply(job.to_dict())


class DeploymentsHandler(ScanflowHandler):
    async def _available(self, command: str, values: dict[str, str]) -> tuple[bool, str | None]:
        kube = await backends.backend("kubernetes", values.get("kube_context", ""))
        if kube is not None and not kube["available"]:
            return False, kube["reason"]
        if cli_command(command) is None:
            return False, f"this installation has no `scanflow {command}` command"
        return True, None

    def _command(self, name: str, nb: Path, values: dict[str, str]) -> list[str]:
        return self.ext.jobs.base_command(name, nb, {"--context": values.get("kube_context"),
                                                     "--namespace": values.get("namespace"),
                                                     "--registry": values.get("registry")})

    @tornado.web.authenticated
    async def get(self) -> None:
        nb = self.notebook(self.get_query_argument("path", None))
        values = self.query_settings()
        available, reason = await self._available("status", values)
        if not available:
            self.reply({"available": False, "reason": reason, "objects": []})
            return
        code, doc, err = await self.ext.jobs.run_once(self._command("status", nb, values), env=environment(values))
        if doc is None:
            self.reply({"available": True, "reason": f"`scanflow status` failed (exit {code}): {err.strip()[-1000:]}",
                        "objects": []})
            return
        objects = doc.get("objects", []) if isinstance(doc, dict) else doc
        self.reply({"available": True, "reason": None, "objects": objects, "status": doc})

    async def _job(self, command: str, nb: Path, values: dict[str, str]) -> None:
        available, reason = await self._available(command, values)
        if not available:
            raise ApiError(503, f"cannot {command}: {reason}", "configure a kubeconfig (KUBECONFIG or "
                           "c.Scanflow.kube_context) and install the kubernetes backend")
        job = await self.ext.jobs.start(command, nb, self._command(command, nb, values), environment(values))
        self.reply({"job_id": job.job_id, "status": job.status}, 202)

    @tornado.web.authenticated
    async def post(self) -> None:
        body = self.json_body()
        await self._job("deploy", self.notebook(body.get("path")), self.body_settings(body))

    @tornado.web.authenticated
    async def delete(self) -> None:
        await self._job("undeploy", self.notebook(self.get_query_argument("path", None)), self.query_settings())


class DeploymentJobHandler(ScanflowHandler):
    @tornado.web.authenticated
    def get(self, job_id: str) -> None:
        job = self.ext.jobs.jobs.get(job_id)
        if job is None or job.kind not in ("deploy", "undeploy"):
            raise ApiError(404, f"no deployment job {job_id}")
        self.reply(job.to_dict())


class NotFoundHandler(ScanflowHandler):
    """Any other path under scanflow/api/: a JSON 404 (not Jupyter's HTML page)."""

    @tornado.web.authenticated
    def get(self, path: str) -> None:
        raise ApiError(404, f"no Scanflow API route {self.request.method} /scanflow/api/{path[:200]}",
                       "see the routes in docs/rest-api.md")

    post = put = patch = delete = get


def routes(base_url: str) -> list[tuple[str, type]]:
    def url(path: str) -> str:
        return url_path_join(base_url, "scanflow", "api", path)

    return [
        (url("config"), ConfigHandler),
        (url("app"), AppHandler),
        (url("runs"), RunsHandler),
        (url(f"runs/{RUN_ID}"), RunHandler),
        (url(f"runs/{RUN_ID}/cancel"), CancelHandler),
        (url(f"runs/{RUN_ID}/events"), EventsHandler),
        (url(f"runs/{RUN_ID}/logs"), LogsHandler),
        (url(f"runs/{RUN_ID}/notebook"), OutputNotebookHandler),
        (url(f"runs/{RUN_ID}/as-notebook"), RunAsNotebookHandler),
        (url("mlflow/experiments"), ExperimentsHandler),
        (url("mlflow/runs"), MlflowRunsHandler),
        (url("mlflow-ui"), MlflowUiHandler),
        (url("agents"), AgentsHandler),
        (url("services"), ServicesHandler),
        (url("services/predict"), ServicePredictHandler),
        (url("builds"), BuildsHandler),
        (url(f"builds/{JOB_ID}"), BuildHandler),
        (url("deployments"), DeploymentsHandler),
        (url(f"deployments/{JOB_ID}"), DeploymentJobHandler),
        (url("(?P<path>.*)"), NotFoundHandler),  # last: JSON 404 for everything else
    ]
