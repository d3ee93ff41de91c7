"""Kernel-side API of a generated step notebook: bind the run context, load inputs, save outputs.

The generated cells of a step notebook read::

    from scanflow_jupyter.data import step_io as _scanflow
    _scanflow.bind(__scanflow__)
    x = _scanflow.load("x")
    ...
    _scanflow.save("model", model)

``__scanflow__`` is injected by the runner as a papermill parameter (see :func:`bind` for its
shape). Importing this module is cheap on purpose: no numpy, pandas or mlflow; MLflow is wired
through environment variables only, so plain ``mlflow.log_metric(...)`` in user code logs into
the step's MLflow run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from scanflow_jupyter.data.records import OutputRecord
from scanflow_jupyter.data.serializers import dump_value, load_value
from scanflow_jupyter.data.serializers.base import UnserializableError
from scanflow_jupyter.runtime.constants import MASK

__all__ = ["StepContextError", "UnknownInputError", "bind", "context", "load", "save", "saved"]

_MLFLOW_ENV = {
    "tracking_uri": "MLFLOW_TRACKING_URI",
    "run_id": "MLFLOW_RUN_ID",
    "experiment_id": "MLFLOW_EXPERIMENT_ID",
}

_ctx: dict[str, Any] | None = None
_saved: dict[str, OutputRecord] = {}


class StepContextError(RuntimeError):
    """The step notebook runs without (or with a malformed) Scanflow run context."""


class UnknownInputError(LookupError):
    """The step asked for a variable that is not one of its inputs."""


def bind(ctx: dict[str, Any] | None) -> None:
    """Make ``ctx`` the context of this kernel's step and export its MLflow settings.

    ``ctx`` is ``{"run_id", "step", "inputs": {var: {"folder", "record"}}, "outputs_dir",
    "mlflow": {"tracking_uri", "run_id", "experiment_id"}}``; the non-None MLflow values are
    exported as ``MLFLOW_TRACKING_URI`` / ``MLFLOW_RUN_ID`` / ``MLFLOW_EXPERIMENT_ID``. A tracking
    URI with credentials appears here only redacted (``https://***@host/``): its real value
    reaches the kernel as environment, which is then kept as it is.
    """
    global _ctx
    if ctx is None:
        raise StepContextError(
            "this is a generated Scanflow step notebook and it has no run context "
            "(__scanflow__ is None): run the pipeline with `scanflow run NOTEBOOK` (or "
            "`%scanflow run`) instead of executing the step notebook by hand"
        )
    if not isinstance(ctx, dict):
        raise StepContextError(f"__scanflow__ must be a dict, got {type(ctx).__name__}")
    missing = [k for k in ("run_id", "step", "inputs", "outputs_dir") if k not in ctx]
    if missing:
        raise StepContextError(f"__scanflow__ lacks {', '.join(missing)}")
    for key, env in _MLFLOW_ENV.items():
        value = (ctx.get("mlflow") or {}).get(key)
        if value is None:
            continue
        if key == "tracking_uri" and MASK in str(value):
            _check_tracking_env(str(value))  # the real URI is in the kernel's environment
            continue
        os.environ[env] = str(value)
    _ctx = ctx
    _saved.clear()


def _check_tracking_env(redacted: str) -> None:
    """Warn when the kernel lacks the tracking URI whose redacted form the context names."""
    import sys

    from scanflow_jupyter.redact import redact_uri

    actual = os.environ.get("MLFLOW_TRACKING_URI")
    if actual is None:
        print(f"scanflow: this step should track into {redacted}, but MLFLOW_TRACKING_URI is not set in its "
              "kernel's environment (credentials never travel in the step notebook), so MLflow calls go to "
              "MLflow's default store. Fix: run the step through `scanflow run`, which sets it.", file=sys.stderr)
        return
    shown = redact_uri(actual)
    if shown != redacted and redact_uri(_with_userinfo_mask(actual)) != redacted:
        print(f"scanflow: the run context names tracking store {redacted} but the kernel's environment has "
              f"{shown}; MLflow uses the environment's.", file=sys.stderr)


def _with_userinfo_mask(uri: str) -> str:
    """``http://host/x`` -> ``http://***@host/x`` (how a URI split by `tracking_environment` is shown)."""
    scheme, sep, rest = uri.partition("://")
    return f"{scheme}{sep}{MASK}@{rest}" if sep and "@" not in rest.split("/", 1)[0] else uri


def context() -> dict[str, Any]:
    """The bound context (StepContextError if :func:`bind` was not called)."""
    if _ctx is None:
        raise StepContextError(
            "no Scanflow run context is bound in this kernel: the step notebook must call "
            "_scanflow.bind(__scanflow__) first (run the pipeline with `scanflow run`)"
        )
    return _ctx


def load(name: str) -> Any:
    """Load input variable ``name`` saved by an upstream step."""
    ctx = context()
    inputs = ctx["inputs"]
    if name not in inputs:
        known = ", ".join(sorted(inputs)) or "none"
        raise UnknownInputError(
            f"step '{ctx['step']}' has no input variable '{name}' (its inputs: {known}); "
            "declare it with --inputs and make sure an upstream step lists it in --outputs"
        )
    entry = inputs[name]
    return load_value(Path(entry["folder"]), OutputRecord.from_dict(entry["record"]))


def save(name: str, value: Any) -> OutputRecord:
    """Save output variable ``name`` into the step's outputs folder; return its record."""
    ctx = context()
    try:
        record = dump_value(name, value, Path(ctx["outputs_dir"]))
    except UnserializableError as exc:
        exc.step = ctx["step"]
        raise
    _saved[name] = record
    return record


def saved() -> dict[str, OutputRecord]:
    """Records of the variables saved so far by this step (since the last :func:`bind`)."""
    return dict(_saved)
