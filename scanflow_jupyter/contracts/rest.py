"""The JSON of the server extension's REST API (docs/rest-api.md) as pydantic models.

Answers are strict (``extra="forbid"``): a key the server adds without adding it here fails the
contract test (tests/server/test_rest_contracts.py), and the labextension's types are generated
from these models (``make contracts``). A field made with :func:`maybe` may be absent from an
answer (TypeScript ``key?: T``); every other key is always sent (null when unset).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

OPTIONAL_KEY = "x-optional"
"""JSON Schema marker of a key that an answer may leave out."""


def maybe(default: Any = None) -> Any:
    """A field whose key the server sends only in some answers."""
    return Field(default=default, json_schema_extra={OPTIONAL_KEY: True})


class Answer(BaseModel):
    """Base of every REST payload: unknown keys are a contract drift."""

    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- errors
class ValidationMessage(Answer):
    """A validation finding; `cell` is 1-based (null: the whole notebook)."""

    severity: Literal["error", "warning"]
    code: str
    cell: int | None
    text: str
    fix: str | None


class ErrorAnswer(Answer):
    """Every 4xx/5xx answer of the API."""

    reason: str | None
    message: str
    fix: str | None = maybe()
    run_id: str | None = maybe()
    messages: list[ValidationMessage] | None = maybe()


# ---------------------------------------------------------------- config + backends
class BackendInfo(Answer):
    """A registered backend (built-in or entry-point plug-in) and whether it can run here."""

    name: str
    available: bool
    reason: str | None
    fix: str | None
    capabilities: list[str]
    execution: Literal["per_step", "whole_pipeline"] | None


class ConfigAnswer(Answer):
    """`GET config`: the effective settings, the backends, the version."""

    tracking_uri: str | None
    default_backend: str | None
    registry: str | None
    kube_context: str | None
    namespace: str | None
    base_image: str | None
    backends: list[BackendInfo]
    version: str
    default_base_image: str


# ---------------------------------------------------------------- app view
class AppNode(Answer):
    """A DAG node of `GET app`: an executor, service or agent; `cell` is 1-based."""

    id: str
    kind: Literal["executor", "service", "agent"]
    cell: int | None
    inputs: list[str]
    outputs: list[str]
    cells: list[int] | None = maybe()
    requires: list[str] | None = maybe()
    retries: int | None = maybe()
    timeout: float | None = maybe()
    cache: bool | None = maybe()
    image: str | None = maybe()
    model: str | None = maybe()
    replicas: int | None = maybe()
    template: str | None = maybe()


class AppEdge(Answer):
    source: str
    target: str


class AppParameter(Answer):
    name: str
    value: Any
    type: str


class AppRef(Answer):
    name: str
    team: str | None
    notebook: str


class AppView(Answer):
    """`GET app?path=` / `POST app`: the notebook parsed and validated."""

    path: str
    app: AppRef | None
    nodes: list[AppNode]
    edges: list[AppEdge]
    parameters: list[AppParameter]
    messages: list[ValidationMessage]
    valid: bool


# ---------------------------------------------------------------- runs
class RunRequest(Answer):
    """The body of `POST runs` (start a run, or resume one with `resume` and no `path`); every key
    may be left out (null and absent mean the same: the default)."""

    path: str | None = maybe()
    backend: str | None = maybe()
    parameters: dict[str, str | int | float | bool | None] | None = maybe()
    only: list[str] | None = maybe()
    resume: str | None = maybe()
    settings: dict[str, str] | None = maybe()


class StepErrorDoc(Answer):
    """A failed step's error; `cell` is the 1-based cell of the user's notebook."""

    cell: int | None
    ename: str
    evalue: str
    traceback: list[str]


class StepSummary(Answer):
    status: str
    attempts: int
    duration_s: float | None
    cell: int | None
    error: StepErrorDoc | None
    started_at: float | None
    finished_at: float | None


class WorkflowRef(Answer):
    """A kubernetes run's Argo Workflow: `url` (Argo UI, with SCANFLOW_ARGO_UI_URL) or `command`."""

    name: str
    namespace: str
    context: str | None
    command: str
    url: str | None


class RunSummary(Answer):
    """`GET runs/{id}`, an entry of `GET runs`, the answer of `POST runs`."""

    run_id: str
    app: str
    notebook: str
    backend: str
    status: str
    created_at: float | None
    started_at: float | None
    finished_at: float | None
    duration_s: float | None
    params: dict[str, Any]
    mlflow_run_id: str | None
    resumed_from: str | None
    started_by: str | None
    tracking: str | None
    warnings: list[dict[str, Any]]
    steps: dict[str, StepSummary]
    managed: bool
    workflow: WorkflowRef | None


class UnreadableRunSummary(Answer):
    """An entry of `GET runs` (no `path`) whose run.json cannot be read."""

    run_id: str
    app: None
    notebook: None
    backend: None
    status: Literal["unreadable"]
    created_at: float | None
    started_at: None
    finished_at: None
    duration_s: None
    params: dict[str, Any]
    mlflow_run_id: None
    resumed_from: None
    started_by: None
    tracking: None
    warnings: list[dict[str, Any]]
    steps: dict[str, StepSummary]
    managed: bool
    workflow: None
    message: str
    reason: str
    fix: str


class RunsList(Answer):
    """`GET runs`: newest first."""

    runs: list[RunSummary | UnreadableRunSummary]


class CancelAnswer(Answer):
    """`POST runs/{id}/cancel` (202)."""

    run_id: str
    status: str


class RunEvent(Answer):
    """A pipeline event as the API sends it: `seq` is its line in events.jsonl (1-based)."""

    seq: int
    type: str
    run_id: str
    step: str | None
    attempt: int | None
    time: float
    data: dict[str, Any]


class EventsPage(Answer):
    """`GET runs/{id}/events?format=json`."""

    events: list[RunEvent]
    finished: bool
    status: str


class StepLog(Answer):
    """`GET runs/{id}/logs?step=`."""

    run_id: str
    step: str
    log: str
    output_notebook: str | None


class OutputNotebook(Answer):
    """`GET runs/{id}/notebook?step=`: the step's output notebook (nbformat JSON)."""

    run_id: str
    step: str
    notebook: dict[str, Any]


class RunNotebook(Answer):
    """`POST runs/{id}/as-notebook` (201): the written notebook, relative to the server root."""

    run_id: str
    path: str


# ---------------------------------------------------------------- MLflow
class Experiment(Answer):
    experiment_id: str
    name: str
    lifecycle_stage: str


class ExperimentsList(Answer):
    """`GET mlflow/experiments`."""

    experiments: list[Experiment]


class MlflowRun(Answer):
    """One MLflow run (tags: `scanflow.*` only)."""

    run_id: str
    run_name: str | None
    status: str
    experiment_id: str
    start_time: int | None
    end_time: int | None
    duration_s: float | None
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]


class MlflowRunPage(Answer):
    """`GET mlflow/runs`."""

    runs: list[MlflowRun]
    next_page_token: str | None


class MlflowUiAnswer(Answer):
    """`POST mlflow-ui`: the MLflow UI behind the "Open in MLflow" links."""

    url: str
    remote: bool
    started: bool
    pid: int | None


# ---------------------------------------------------------------- agents and services
class SensorInfo(Answer):
    name: str | None
    schedule: str | None
    last_run: float | str | None
    next_run: float | str | None
    last_value: Any
    last_error: str | None


class AgentInfo(Answer):
    """An agent of `GET agents`: `status` is running | stopped | crashed (others pass through)."""

    name: str
    app: str
    status: str
    state: str
    url: str | None
    pid: int | None
    uptime_s: float | None
    cell: int | None
    template: str | None
    restarts: int
    last_value: Any
    last_error: str | None
    message: dict[str, Any] | None
    sensors: list[SensorInfo]
    messages: list[Any]


class AgentsList(Answer):
    """`GET agents`; `POST agents` (202) adds `refused` and `warnings`."""

    agents: list[AgentInfo]
    refused: list[Any] | None = maybe()
    warnings: list[Any] | None = maybe()


class ServiceInfo(Answer):
    """One local service (`GET services`; `scanflow services ls`)."""

    app: str
    name: str
    notebook: str
    state: str
    kind: str
    model: str | None
    version: str | None
    port: int | None
    pid: int | None
    url: str | None
    restarts: int
    log: str | None
    error: str | None


class ServicesList(Answer):
    """`GET services`; `POST services` (202; a stop adds `stopped`)."""

    services: list[ServiceInfo]
    stopped: Any = maybe()


class TryAnswer(Answer):
    """`POST services/predict`: the service's own HTTP status and JSON."""

    status: int
    answer: Any


# ---------------------------------------------------------------- builds and deployments
class JobStarted(Answer):
    """`POST builds` (`build_id`) / `POST|DELETE deployments` (`job_id`), 202."""

    build_id: str | None = maybe()
    job_id: str | None = maybe()
    status: str


class JobInfo(Answer):
    """`GET builds/{id}` (`build_id`) / `GET deployments/{id}` (`job_id`)."""

    build_id: str | None = maybe()
    job_id: str | None = maybe()
    kind: str
    notebook: str
    status: str
    exit_code: int | None
    started_at: float | None
    finished_at: float | None
    log: str
    images: dict[str, Any] | None
    result: Any


class Deployments(Answer):
    """`GET deployments?path=`: the environment's objects (`status`: the full `scanflow status`)."""

    available: bool
    reason: str | None
    objects: list[dict[str, Any]]
    status: Any = maybe()


REST_MODELS: tuple[type[BaseModel], ...] = (
    ErrorAnswer, ConfigAnswer, AppView, RunRequest, RunsList, RunSummary, UnreadableRunSummary, CancelAnswer,
    EventsPage, StepLog, OutputNotebook, RunNotebook, ExperimentsList, MlflowRunPage, MlflowUiAnswer,
    AgentsList, ServicesList, TryAnswer, JobStarted, JobInfo, Deployments,
)
"""Every REST payload model (their nested models are exported with them)."""
