"""Which contract model (scanflow_jupyter.contracts.rest) each REST answer must validate against."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from scanflow_jupyter.contracts import rest

RUN = r"runs/[^/]+"
JOB = r"[0-9a-f]{12}"
# (method, route regex, model of a 2xx answer); every 4xx/5xx answer is an ErrorAnswer
ROUTES: list[tuple[str, str, type[BaseModel]]] = [
    ("GET", "config", rest.ConfigAnswer),
    ("GET", "app", rest.AppView),
    ("POST", "app", rest.AppView),
    ("GET", "runs", rest.RunsList),
    ("POST", "runs", rest.RunSummary),
    ("GET", RUN, rest.RunSummary),
    ("POST", f"{RUN}/cancel", rest.CancelAnswer),
    ("GET", f"{RUN}/events", rest.EventsPage),  # format=json (SSE answers are text)
    ("GET", f"{RUN}/logs", rest.StepLog),
    ("GET", f"{RUN}/notebook", rest.OutputNotebook),
    ("POST", f"{RUN}/as-notebook", rest.RunNotebook),
    ("GET", "mlflow/experiments", rest.ExperimentsList),
    ("GET", "mlflow/runs", rest.MlflowRunPage),
    ("POST", "mlflow-ui", rest.MlflowUiAnswer),
    ("GET", "agents", rest.AgentsList),
    ("POST", "agents", rest.AgentsList),
    ("GET", "services", rest.ServicesList),
    ("POST", "services", rest.ServicesList),
    ("POST", "services/predict", rest.TryAnswer),
    ("POST", "builds", rest.JobStarted),
    ("GET", f"builds/{JOB}", rest.JobInfo),
    ("GET", "deployments", rest.Deployments),
    ("POST", "deployments", rest.JobStarted),
    ("DELETE", "deployments", rest.JobStarted),
    ("GET", f"deployments/{JOB}", rest.JobInfo),
]


def model_for(method: str, route: str, status: int) -> type[BaseModel] | None:
    """The model of an answer to `method route` (route relative to scanflow/api/), None if unknown."""
    if status >= 400:
        return rest.ErrorAnswer
    for m, pattern, model in ROUTES:
        if m == method and re.fullmatch(pattern, route):
            return model
    return None


def check(method: str, route: str, status: int, doc: Any) -> BaseModel:
    """Validate one answer; AssertionError (with pydantic's report) when it drifted from the contract."""
    model = model_for(method, route, status)
    assert model is not None, f"{method} {route} has no contract model: add it to tests/server/rest_contract.py"
    try:
        return model.model_validate(doc)
    except Exception as exc:  # noqa: BLE001 - re-raised as the test failure, with the route
        raise AssertionError(
            f"{method} {route} → {status} does not match {model.__name__}: {exc}\nFix: if the server's answer "
            f"changed on purpose, change {model.__name__} in scanflow_jupyter/contracts/rest.py the same way, "
            "run `make contracts` and commit the regenerated labextension/src/contracts.generated.ts"
        ) from None
