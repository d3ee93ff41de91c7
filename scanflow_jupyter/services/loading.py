"""The served model: custom `predict` code or an MLflow pyfunc from the registry, and its hot swap.

`ModelHolder.current` is one immutable `Served` object; a request reads it once and uses it to
the end, so replacing it (one reference assignment) never disturbs a request in flight. For
`models:/NAME@ALIAS` a background thread polls the alias every `poll_s` seconds; a new version
loads in that thread while the old one keeps serving, then replaces it.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from scanflow_jupyter.services.schema import (
    PayloadError,
    custom_adapter,
    jsonable,
    parse_custom,
    parse_mlflow,
)
from scanflow_jupyter.services.spec import ServiceSpec

__all__ = ["ModelHolder", "ModelLoadError", "ModelRef", "Served", "load_custom", "load_mlflow", "parse_model_uri"]

_log = logging.getLogger("scanflow.services")
_URI_RE = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))$")


class ModelLoadError(RuntimeError):
    """The service cannot be loaded (bad cell, failing load(), unknown model/alias); says how to fix it."""


class PredictError(RuntimeError):
    """`predict` raised; the service answers 500 and keeps serving."""


@dataclass(frozen=True)
class ModelRef:
    name: str
    alias: str | None = None
    version: str | None = None


def parse_model_uri(uri: str) -> ModelRef:
    m = _URI_RE.match(uri.strip())
    if not m:
        raise ModelLoadError(f"--model {uri!r} is not a registry URI: use models:/NAME@ALIAS or models:/NAME/VERSION.")
    return ModelRef(m["name"], m["alias"], m["version"])


@dataclass(frozen=True)
class Served:
    """One loaded model: `handle(body)` → (parsed inputs for the log, JSON-ready predictions)."""

    kind: str
    handle: Callable[[Any], tuple[Any, Any]]
    model: str | None = None
    version: str | None = None
    alias: str | None = None
    run_id: str | None = None
    signature: dict[str, Any] | None = None
    loaded_at: float = field(default_factory=time.time)


def load_custom(spec: ServiceSpec) -> Served:
    """Run the cell (setup + body) once: its `predict`, the schema from its annotations, `load()`'s state."""
    from scanflow_jupyter.cell_numbers import shown

    where = f"{spec.notebook}, service '{spec.name}' (cell {shown(spec.cell)})"
    namespace: dict[str, Any] = {"__name__": "scanflow_service"}
    try:
        code = compile(spec.source, where, "exec")
        exec(code, namespace)  # noqa: S102 - the user's own service cell is the program being served
    except SyntaxError as exc:
        raise ModelLoadError(f"{where}: line {exc.lineno}: {exc.msg}. Fix the cell and start the service again.") from exc
    except Exception as exc:
        raise ModelLoadError(f"{where}: the cell raised {type(exc).__name__}: {exc}. Fix the cell.") from exc
    predict = namespace.get("predict")
    if not callable(predict):
        raise ModelLoadError(f"{where} defines no predict(inputs) function. Add `def predict(inputs): ...`, "
                             "or give the cell `--model models:/MODEL@ALIAS` to serve a registered model.")
    state = None
    if callable(namespace.get("load")):
        try:
            state = namespace["load"]()
        except Exception as exc:
            raise ModelLoadError(f"{where}: load() raised {type(exc).__name__}: {exc}") from exc
    takes_state = len(inspect.signature(predict).parameters) >= 2
    try:
        adapter = custom_adapter(predict)
    except Exception as exc:  # an annotation that does not resolve, or that pydantic cannot validate
        raise ModelLoadError(f"{where}: {exc}") from exc

    def handle(body: Any) -> tuple[Any, Any]:
        inputs = parse_custom(adapter, body)
        try:
            result = predict(inputs, state) if takes_state else predict(inputs)
        except Exception as exc:
            raise PredictError(f"predict() raised {type(exc).__name__}: {exc}") from exc
        return inputs, jsonable(result)

    schema = adapter.json_schema() if _has_schema(adapter) else None
    return Served("custom", handle, signature={"inputs": schema} if schema else None)


def _has_schema(adapter: Any) -> bool:
    try:
        adapter.json_schema()
    except Exception:
        return False
    return True


def _client(tracking_uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def resolve_version(ref: ModelRef, tracking_uri: str) -> tuple[str, str | None]:
    """(version, run id) that `ref` names now in the registry."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    try:
        mv = (client.get_model_version_by_alias(ref.name, ref.alias) if ref.alias
              else client.get_model_version(ref.name, ref.version))
    except MlflowException as exc:
        what = f"alias '{ref.alias}'" if ref.alias else f"version {ref.version}"
        raise ModelLoadError(f"registered model '{ref.name}' has no {what} in {_safe(tracking_uri)}: "
                             f"{exc.message.splitlines()[0]}. Register the model and set the alias "
                             f"(MlflowClient().set_registered_model_alias('{ref.name}', ALIAS, VERSION)).") from None
    return str(mv.version), mv.run_id


def _safe(uri: str) -> str:
    from scanflow_jupyter.redact import redact_uri

    return redact_uri(uri)


def load_mlflow(spec: ServiceSpec, tracking_uri: str, version: str | None = None) -> Served:
    """Load `spec.model` (at `version`, else what its alias/version names now) as an MLflow pyfunc."""
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    ref = parse_model_uri(spec.model or "")
    run_id = None
    if version is None:
        version, run_id = resolve_version(ref, tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        model = mlflow.pyfunc.load_model(f"models:/{ref.name}/{version}")
    except (MlflowException, OSError) as exc:
        raise ModelLoadError(f"cannot load models:/{ref.name}/{version} from {_safe(tracking_uri)}: {exc}") from None
    input_schema = model.metadata.get_input_schema()
    takes_params = "params" in inspect.signature(model.predict).parameters
    signature = None
    if model.metadata.signature is not None:
        signature = {k: json.loads(v) if isinstance(v, str) else v
                     for k, v in model.metadata.signature.to_dict().items() if v is not None}

    def handle(body: Any) -> tuple[Any, Any]:
        data, params = parse_mlflow(body, input_schema)
        try:
            raw = model.predict(data, params=params) if takes_params and params else model.predict(data)
        except MlflowException as exc:
            if exc.error_code in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST"):
                raise PayloadError(f"the inputs do not fit the model's signature: {exc.message}",
                                   fields=[{"field": "inputs", "message": exc.message}]) from None
            raise PredictError(f"the model raised: {exc.message}") from exc
        except Exception as exc:
            raise PredictError(f"the model raised {type(exc).__name__}: {exc}") from exc
        return data, jsonable(raw)

    return Served("mlflow", handle, model=spec.model, version=version, alias=ref.alias,
                  run_id=run_id or model.metadata.run_id, signature=signature)


class ModelHolder:
    """The current `Served` model of one service; loads it (and swaps new alias versions) in a thread."""

    def __init__(self, spec: ServiceSpec, tracking_uri: str, *, poll_s: float = 5.0,
                 on_loaded: Callable[[Served], None] | None = None,
                 on_failed: Callable[[str], None] | None = None) -> None:
        self.spec, self.tracking_uri, self.poll_s = spec, tracking_uri, poll_s
        self.current: Served | None = None
        self.error: str | None = None  # why the first load failed
        self.poll_error: str | None = None  # why the last alias check / swap failed (old model still serves)
        self.swaps = 0
        self._on_loaded, self._on_failed = on_loaded, on_failed
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"model-{spec.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def check_now(self) -> None:
        """Check the alias at once (POST /reload)."""
        self._wake.set()

    def _load(self, version: str | None = None) -> Served:
        if self.spec.model:
            return load_mlflow(self.spec, self.tracking_uri, version)
        return load_custom(self.spec)

    def _run(self) -> None:
        try:
            self.current = self._load()
        except Exception as exc:  # ModelLoadError, or anything the user's code / MLflow raised
            self.error = str(exc) if isinstance(exc, ModelLoadError) else f"{type(exc).__name__}: {exc}"
            _log.error("service %s could not load: %s", self.spec.name, self.error)
            if self._on_failed:
                self._on_failed(self.error)
            return
        _log.info("service %s loaded%s", self.spec.name,
                  f" {self.spec.model} (version {self.current.version})" if self.spec.model else "")
        if self._on_loaded:
            self._on_loaded(self.current)
        ref = parse_model_uri(self.spec.model) if self.spec.model else None
        if ref is None or ref.alias is None:
            return
        failed_version = None
        while not self._stop.is_set():
            self._wake.wait(self.poll_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            version = None
            try:
                version, run_id = resolve_version(ref, self.tracking_uri)
                if version == self.current.version or version == failed_version:
                    self.poll_error = None if version == self.current.version else self.poll_error
                    continue
                _log.info("service %s: alias %s moved to version %s; loading it", self.spec.name, ref.alias, version)
                new = self._load(version)
                self.current = replace(new, run_id=run_id or new.run_id)  # the swap: one reference assignment
                self.swaps += 1
                self.poll_error = failed_version = None
                _log.info("service %s now serves version %s", self.spec.name, version)
            except Exception as exc:
                self.poll_error = f"{type(exc).__name__}: {exc}"
                if version is not None and version != self.current.version:  # do not retry a broken version
                    failed_version = version
                _log.warning("service %s keeps version %s: %s", self.spec.name,
                             self.current.version if self.current else "?", self.poll_error)
