"""Request bodies: custom cells' `predict` annotations (pydantic) and MLflow scoring payloads.

Custom cells: `POST /predict {"inputs": ...}`; `inputs` is validated against the annotation of
`predict`'s first parameter (`pydantic.TypeAdapter`; no annotation accepts any JSON).
MLflow models: the body holds exactly one of `inputs`, `instances`, `dataframe_split`,
`dataframe_records` (MLflow's scoring protocol, plus optional `params`); the data is parsed
with the model's input schema and checked against the signature when the model predicts.
A body that does not fit raises PayloadError (HTTP 422) naming the field.
"""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Callable
from typing import Any

__all__ = ["MLFLOW_FORMATS", "PayloadError", "custom_adapter", "jsonable", "parse_custom", "parse_mlflow"]

MLFLOW_FORMATS = ("inputs", "instances", "dataframe_split", "dataframe_records")


class PayloadError(Exception):
    """The request body does not fit the service; `status` is the HTTP status, `fields` the problems."""

    def __init__(self, message: str, *, status: int = 422, fields: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.fields = fields or []

    def to_dict(self) -> dict[str, Any]:
        return {"error": str(self), "fields": self.fields}


def custom_adapter(predict: Callable[..., Any]) -> Any:
    """The TypeAdapter for `predict`'s first parameter (`Any` if it has no annotation)."""
    from pydantic import TypeAdapter

    params = list(inspect.signature(predict).parameters.values())
    annotation: Any = Any
    if params:
        annotation = params[0].annotation
        if annotation is inspect.Parameter.empty:
            return TypeAdapter(Any)
        try:
            annotation = typing.get_type_hints(predict).get(params[0].name, annotation)
        except Exception as exc:
            raise TypeError(f"the annotation {annotation!r} of predict's parameter '{params[0].name}' does not "
                            f"resolve ({type(exc).__name__}: {exc}); define the types it names at the top "
                            "level of the cell (or %%setup).") from None
    return TypeAdapter(annotation)


def _field(loc: tuple[Any, ...]) -> str:
    return ".".join(["inputs", *(str(p) for p in loc)])


def parse_custom(adapter: Any, body: Any) -> Any:
    """`body["inputs"]` validated by `adapter` (PayloadError 422 naming the field otherwise)."""
    from pydantic import ValidationError

    if not isinstance(body, dict) or "inputs" not in body:
        got = f"keys {sorted(body)}" if isinstance(body, dict) else type(body).__name__
        raise PayloadError(f'the body must be a JSON object {{"inputs": ...}}; got {got}',
                           fields=[{"field": "inputs", "message": "field required"}])
    try:
        return adapter.validate_python(body["inputs"])
    except ValidationError as exc:
        fields = [{"field": _field(tuple(e["loc"])), "message": e["msg"]} for e in exc.errors()]
        names = ", ".join(f"{f['field']} ({f['message']})" for f in fields[:5])
        raise PayloadError(f"the inputs do not fit predict()'s annotation {adapter_name(adapter)}: {names}",
                           fields=fields) from None


def adapter_name(adapter: Any) -> str:
    core = getattr(adapter, "_type", None)
    name = core.__name__ if isinstance(core, type) else str(core)
    return name.replace("typing.", "").replace("scanflow_service.", "")


def parse_mlflow(body: Any, input_schema: Any) -> tuple[Any, dict[str, Any] | None]:
    """(data, params) from an MLflow scoring payload, parsed with the model's input schema."""
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc.scoring_server import infer_and_parse_data

    if not isinstance(body, dict):
        raise PayloadError(f"the body must be a JSON object with one of {', '.join(MLFLOW_FORMATS)}; "
                           f"got a {type(body).__name__}")
    keys = [k for k in MLFLOW_FORMATS if k in body]
    if len(keys) != 1:
        raise PayloadError(f"the body must hold exactly one of {', '.join(MLFLOW_FORMATS)}; it holds "
                           f"{', '.join(keys) or 'none of them'} (keys: {', '.join(sorted(body)) or 'none'})",
                           fields=[{"field": k, "message": "one payload format per request"} for k in keys]
                           or [{"field": "inputs", "message": "field required"}])
    key = keys[0]
    try:
        data = infer_and_parse_data({key: body[key]}, input_schema)
    except (MlflowException, ValueError, TypeError, KeyError) as exc:
        message = exc.message if isinstance(exc, MlflowException) else f"{type(exc).__name__}: {exc}"
        raise PayloadError(f"{key} does not fit the model's signature: {message}",
                           fields=[{"field": key, "message": message}]) from None
    params = body.get("params")
    return data, params if isinstance(params, dict) else None


def _fallback(value: Any) -> Any:
    if hasattr(value, "to_dict") and hasattr(value, "columns"):  # pandas DataFrame
        return json.loads(value.to_json(orient="records"))
    if hasattr(value, "tolist"):  # numpy arrays and scalars, pandas Series
        return value.tolist()
    return repr(value)


def jsonable(value: Any) -> Any:
    """A JSON-ready copy of `value` (numpy / pandas values become lists / records)."""
    from pydantic_core import to_jsonable_python

    return to_jsonable_python(value, fallback=_fallback)
