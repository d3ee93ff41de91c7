"""Online serving of a `%%service` cell without `--model`: `python -m scanflow_jupyter.serving`.

The cell body is plain Python that defines ``predict(payload)``; it may also define
``load()`` (called once at start-up, its return value is passed as ``predict(payload, state)``
when ``predict`` takes two parameters). The server answers:

- ``GET /health`` → ``{"status": "ok", "service": NAME}`` once the cell has run,
- ``POST /predict`` with a JSON body → ``{"prediction": predict(body)}``.

A service with ``--model models:/...`` is served by ``mlflow models serve`` instead.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path
from typing import Any


class ServiceDefinitionError(Exception):
    """The service cell cannot be served (syntax error, no `predict`, failing `load`)."""


def load_service(source: str, filename: str = "<service>") -> tuple[Any, Any]:
    """Run the service cell; return its ``predict`` callable and the state from ``load()``."""
    namespace: dict[str, Any] = {"__name__": "scanflow_service"}
    try:
        code = compile(source, filename, "exec")
    except SyntaxError as exc:
        raise ServiceDefinitionError(
            f"{filename}, line {exc.lineno}: {exc.msg}. Fix the %%service cell and rebuild its image."
        ) from exc
    exec(code, namespace)  # noqa: S102 - the user's own service cell is the program being served
    predict = namespace.get("predict")
    if not callable(predict):
        raise ServiceDefinitionError(
            f"{filename} defines no predict(payload) function. Add `def predict(payload): ...` to the "
            "%%service cell, or give the cell `--model models:/NAME@ALIAS` to serve a registered model."
        )
    state = None
    if callable(namespace.get("load")):
        try:
            state = namespace["load"]()
        except Exception as exc:
            raise ServiceDefinitionError(f"{filename}: load() failed: {type(exc).__name__}: {exc}") from exc
    return predict, state


def create_app(source: str, name: str = "service", filename: str = "<service>") -> Any:
    """The FastAPI application serving the cell (raises ServiceDefinitionError up front)."""
    from fastapi import Body, FastAPI, HTTPException

    predict, state = load_service(source, filename)
    takes_state = len(inspect.signature(predict).parameters) >= 2
    app = FastAPI(title=f"scanflow service {name}")

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "service": name}

    @app.post("/predict")
    def serve(payload: Any = Body(...)) -> dict[str, Any]:  # noqa: B008 - FastAPI idiom
        try:
            result = predict(payload, state) if takes_state else predict(payload)
        except (ValueError, TypeError, KeyError) as exc:
            raise HTTPException(status_code=400, detail=f"{type(exc).__name__}: {exc}") from exc
        return {"prediction": _jsonable(result)}

    return app


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scanflow_jupyter.serving", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, help="file holding the %%%%service cell body")
    parser.add_argument("--name", default="service")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    path = Path(args.source)
    try:
        app = create_app(path.read_text(encoding="utf-8"), args.name, str(path))
    except (OSError, ServiceDefinitionError) as exc:
        print(f"scanflow serving: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())
