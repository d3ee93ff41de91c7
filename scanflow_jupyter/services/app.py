"""The HTTP app of one service (Starlette; served by uvicorn).

Routes: `POST /predict` (and `POST /invocations`, MLflow's path) → `{"predictions": ...}`;
`GET /health` (200 once the model is loaded, 503 before or if loading failed); `GET /metadata`;
`GET /metrics` (Prometheus text); `POST /reload` (check the alias now — it changes state, so it
follows the agents' rules: the project's agent token, an allowed Host, no foreign Origin,
`agents.auth.refusal`). Malformed JSON → 400, a body that does not fit → 422 naming the field,
`predict` raising → 500; the service keeps serving after every error.
"""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from scanflow_jupyter.agents import auth
from scanflow_jupyter.services.inference_log import InferenceLog
from scanflow_jupyter.services.loading import ModelHolder, PredictError
from scanflow_jupyter.services.metrics import Metrics
from scanflow_jupyter.services.schema import PayloadError

__all__ = ["create_app"]

PROTECTED = frozenset({"/reload"})


def create_app(holder: ModelHolder, *, log: InferenceLog | None = None, token: str | None = None,
               hosts: frozenset[str] | None = None) -> Any:
    spec = holder.spec
    metrics = Metrics(spec.name)
    allowed = hosts if hosts is not None else auth.allowed_hosts()

    async def predict(request: Request) -> Response:
        started = time.perf_counter()
        served = holder.current  # read once: a swap during this request does not affect it
        version = served.version if served else None
        inputs: Any = None
        try:
            if served is None:
                status, doc = 503, {"error": f"service '{spec.name}' is not ready: "
                                    + (holder.error or "the model is still loading")}
            else:
                raw = await request.body()
                try:
                    body = json.loads(raw)
                except (ValueError, UnicodeDecodeError) as exc:
                    raise PayloadError(f"the body is not valid JSON: {exc}", status=400) from None
                inputs, predictions = await run_in_threadpool(served.handle, body)
                status, doc = 200, {"predictions": predictions}
        except PayloadError as exc:
            status, doc = exc.status, exc.to_dict()
        except PredictError as exc:
            status, doc = 500, {"error": str(exc)}
        latency = time.perf_counter() - started
        metrics.observe(request.url.path, status, latency)
        if log is not None and inputs is not None:  # answered requests (200)
            log.record(inputs, doc.get("predictions", doc.get("error")), version=version,
                       latency_ms=latency * 1000, status=status)
        headers = {"X-Scanflow-Model-Version": version} if version else None
        return JSONResponse(doc, status_code=status, headers=headers)

    async def health(request: Request) -> Response:
        served = holder.current
        if served is not None:
            doc, status = {"status": "ok", "service": spec.name, "version": served.version}, 200
        else:
            doc = {"status": "failed" if holder.error else "loading", "service": spec.name, "error": holder.error}
            status = 503
        metrics.observe("/health", status)
        return JSONResponse(doc, status_code=status)

    async def metadata(request: Request) -> Response:
        served = holder.current
        doc = {"service": spec.name, "app": spec.app, "notebook": spec.notebook, "kind": spec.kind,
               "model": spec.model, "version": served.version if served else None,
               "alias": served.alias if served else None, "run_id": served.run_id if served else None,
               "signature": served.signature if served else None,
               "loaded_at": served.loaded_at if served else None, "swaps": holder.swaps,
               "ready": served is not None, "error": holder.error, "poll_error": holder.poll_error,
               "inference_log": {"folder": str(log.folder), "rows_written": log.rows_written, "error": log.error}
               if log is not None else None}
        metrics.observe("/metadata", 200)
        return JSONResponse(doc)

    async def prometheus(request: Request) -> Response:
        served = holder.current
        text = metrics.render(version=served.version if served else None, loaded=served is not None,
                              swaps=holder.swaps)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    async def reload(request: Request) -> Response:
        holder.check_now()
        metrics.observe("/reload", 202)
        return JSONResponse({"ok": True, "checking": spec.model}, status_code=202)

    app = Starlette(routes=[Route("/predict", predict, methods=["POST"]),
                            Route("/invocations", predict, methods=["POST"]),
                            Route("/health", health, methods=["GET"]),
                            Route("/metadata", metadata, methods=["GET"]),
                            Route("/metrics", prometheus, methods=["GET"]),
                            Route("/reload", reload, methods=["POST"])])
    secret = token

    async def guarded(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (scope["type"] == "http" and scope["path"] in PROTECTED
                and await auth.refuse_asgi(scope, receive, send, token=secret or "", hosts=allowed)):
            return
        await app(scope, receive, send)

    return guarded
