"""MLflow conventions: where the tracking store lives, which tags runs carry, and the Recorder.

Experiment = application name; one parent run per pipeline run and one nested run per step
(DESIGN.md §3). Importing this module does not import mlflow (1-2 s): `Recorder` imports it on
first use, and `scanflow_jupyter.runtime.recorder_process.RecorderProcess` does it in a child
process so the import overlaps with the runner's other work.
"""

from __future__ import annotations

import getpass
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover - typing only
    from mlflow.tracking import MlflowClient

__all__ = [
    "MLFLOW_STATUS",
    "TAG_APP",
    "TAG_ATTEMPT",
    "TAG_BACKEND",
    "TAG_CACHED_FROM",
    "TAG_CACHE_HIT",
    "TAG_ERROR_CELL",
    "TAG_ERROR_NAME",
    "TAG_ERROR_VALUE",
    "TAG_KIND",
    "TAG_NOTEBOOK",
    "TAG_RUN_ID",
    "TAG_STATUS",
    "TAG_STEP",
    "METRIC_DURATION",
    "Recorder",
    "Tracker",
    "TrackingError",
    "default_artifact_root",
    "default_tracking_uri",
    "git_commit",
    "mlflow_status",
    "resolve_tracking_uri",
    "scanflow_home",
]

# --- tags -------------------------------------------------------------------------------------

TAG_APP = "scanflow.app"
TAG_RUN_ID = "scanflow.run_id"
TAG_BACKEND = "scanflow.backend"
TAG_NOTEBOOK = "scanflow.notebook"
TAG_KIND = "scanflow.kind"  # "pipeline" | "step"
TAG_STEP = "scanflow.step"
TAG_ATTEMPT = "scanflow.attempt"  # number of attempts made
TAG_CACHE_HIT = "scanflow.cache_hit"  # "true" | "false"
TAG_STATUS = "scanflow.status"  # succeeded | failed | cached | skipped | killed
TAG_CACHED_FROM = "scanflow.cached_from"
TAG_ERROR_CELL = "scanflow.error.cell"
TAG_ERROR_NAME = "scanflow.error.ename"
TAG_ERROR_VALUE = "scanflow.error.evalue"
METRIC_DURATION = "scanflow.duration_s"

# MLflow's own tags (mlflow.utils.mlflow_tags), spelled out to keep mlflow off the import path.
_MLFLOW_PARENT_RUN_ID = "mlflow.parentRunId"
_MLFLOW_SOURCE_NAME = "mlflow.source.name"
_MLFLOW_GIT_COMMIT = "mlflow.source.git.commit"
_MLFLOW_USER = "mlflow.user"

# MLflow limits (mlflow.utils.validation).
_MAX_KEY_LENGTH = 250
_MAX_PARAM_VALUE_LENGTH = 6000
_MAX_TAG_VALUE_LENGTH = 8000
_MAX_PARAMS_TAGS_PER_BATCH = 100

#: Our status words → MLflow run statuses.
MLFLOW_STATUS: dict[str, str] = {
    "succeeded": "FINISHED",
    "cached": "FINISHED",
    "failed": "FAILED",
    "killed": "KILLED",
    "skipped": "KILLED",
}

_REMOTE_SCHEMES = ("http", "https", "databricks", "databricks-uc", "uc")


class TrackingError(RuntimeError):
    """MLflow tracking failed; the message says which call, which store and how to fix it."""


def mlflow_status(status: str) -> str:
    """Map a Scanflow status word (succeeded, failed, ...) to an MLflow run status."""
    try:
        return MLFLOW_STATUS[status]
    except KeyError:
        raise ValueError(
            f"unknown step/pipeline status {status!r}; expected one of {sorted(MLFLOW_STATUS)}"
        ) from None


# --- where the store lives ------------------------------------------------------------------


def scanflow_home(cwd: Path | None = None) -> Path:
    """Return the project's Scanflow folder: `$SCANFLOW_HOME`, else `<cwd>/.scanflow` (absolute)."""
    env = os.environ.get("SCANFLOW_HOME")
    if env:
        return Path(env).expanduser().absolute()
    base = Path(cwd) if cwd is not None else Path(os.getcwd())
    return (base / ".scanflow").absolute()


def default_tracking_uri(home: Path) -> str:
    """Return the default tracking store `sqlite:///<abs home>/mlflow.db`."""
    return f"sqlite:///{Path(home).expanduser().absolute().as_posix()}/mlflow.db"


def default_artifact_root(home: Path) -> str:
    """Return the default artifact root `<abs home>/mlartifacts` (a local path)."""
    return str(Path(home).expanduser().absolute() / "mlartifacts")


def resolve_tracking_uri(home: Path | None = None) -> str:
    """Return `$MLFLOW_TRACKING_URI` if set, else the default store (creating the home folder)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    home = Path(home) if home is not None else scanflow_home()
    home.mkdir(parents=True, exist_ok=True)
    return default_tracking_uri(home)


def _is_remote(tracking_uri: str) -> bool:
    scheme = tracking_uri.split(":", 1)[0].lower() if "://" in tracking_uri else ""
    return scheme in _REMOTE_SCHEMES or tracking_uri.lower() == "databricks"


def git_commit(folder: Path | str) -> str | None:
    """Return `git rev-parse HEAD` for the repository holding `folder`, or None (any failure)."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = proc.stdout.strip()
    if proc.returncode != 0 or not re.fullmatch(r"[0-9a-f]{40}([0-9a-f]{24})?", sha):
        return None
    return sha


# --- the interface the runner uses ----------------------------------------------------------


@runtime_checkable
class Tracker(Protocol):
    """What the runner needs from MLflow tracking (`Recorder` or `RecorderProcess`)."""

    def start_pipeline(
        self,
        app: str,
        run_id: str,
        backend: str,
        notebook: str | Path,
        params: Mapping[str, Any],
        started_at: float | None = None,
    ) -> str: ...

    def start_step(self, parent_mlflow_id: str, app: str, run_id: str, step: str,
                   started_at: float | None = None) -> str: ...

    def finish_step(
        self,
        mlflow_id: str,
        status: str,
        attempts: int,
        cache_hit: bool,
        duration_s: float | None = None,
        artifacts: Iterable[str | Path] = (),
        error: Mapping[str, Any] | None = None,
        cached_from: str | None = None,
        finished_at: float | None = None,
        reused_step: str | None = None,
        pipeline_metrics: Iterable[str] = (),
        parent_mlflow_id: str | None = None,
    ) -> None: ...

    def finish_pipeline(
        self, mlflow_id: str, status: str, duration_s: float | None = None
    ) -> None: ...

    def close(self, timeout: float | None = None) -> None: ...


# --- the in-process recorder ----------------------------------------------------------------

_BAD_KEY_CHARS = re.compile(r"[^\w\-. /:]")


def _param_key(key: Any) -> str:
    text = _BAD_KEY_CHARS.sub("_", str(key)) or "_"
    return text[:_MAX_KEY_LENGTH]


def _param_items(params: Mapping[str, Any]) -> dict[str, str]:
    """Stringify params for MLflow: legal keys, values cut to MLflow's length limit."""
    out: dict[str, str] = {}
    for key, value in params.items():
        out[_param_key(key)] = str(value)[:_MAX_PARAM_VALUE_LENGTH]
    return out


def _tag_value(value: Any) -> str:
    return str(value)[:_MAX_TAG_VALUE_LENGTH]


def _user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return None


def _now_ms() -> int:
    return int(time.time() * 1000)


class Recorder:
    """Record pipeline and step runs in MLflow, in this process, through an explicit MlflowClient.

    Never touches MLflow's fluent (global active-run) state, so it is safe in a long-lived server.
    mlflow is imported on first use. Every failure is raised as `TrackingError`.
    """

    def __init__(self, tracking_uri: str, artifact_root: str | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root
        self._client: MlflowClient | None = None
        self._experiments: dict[str, str] = {}
        self._source_tags: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()

    # -- plumbing --

    def _fail(self, what: str, exc: BaseException) -> TrackingError:
        hint = ""
        if os.environ.get("MLFLOW_TRACKING_URI") == self.tracking_uri:
            hint = (
                " The URI comes from MLFLOW_TRACKING_URI: fix it, or unset it to use the"
                " project's own store (.scanflow/mlflow.db)."
            )
        elif _is_remote(self.tracking_uri):
            hint = " Is the tracking server running and reachable (`scanflow tracker up`)?"
        else:
            hint = (
                " Check the URI (e.g. sqlite:////abs/path/mlflow.db or http://host:5000) and"
                " that its folder is writable."
            )
        from scanflow_jupyter.redact import process_secrets, redact_text, redact_uri

        return TrackingError(  # errors end up in run.json, --json and the live view: no credentials
            f"MLflow {what} failed for tracking store {redact_uri(self.tracking_uri)!r}: "
            + redact_text(f"{type(exc).__name__}: {exc}.", process_secrets())
            + hint
        )

    @property
    def client(self) -> MlflowClient:
        """The MlflowClient (created on first use; imports mlflow and opens the store)."""
        with self._lock:
            if self._client is None:
                try:
                    from mlflow.tracking import MlflowClient

                    from scanflow_jupyter.tracking_store import with_busy_timeout

                    # An explicit registry URI keeps the error about the tracking store; a
                    # sqlite store waits for other writers instead of failing (busy timeout).
                    uri = with_busy_timeout(self.tracking_uri)
                    self._client = MlflowClient(tracking_uri=uri, registry_uri=uri)
                except Exception as exc:  # noqa: BLE001 - any store failure is a TrackingError
                    raise self._fail("store opening", exc) from exc
            return self._client

    def warm_up(self) -> None:
        """Import mlflow and open the store now (a sqlite store is created/upgraded once, under
        its file lock: `tracking_store.ensure_sqlite_store`)."""
        from scanflow_jupyter.tracking_store import ensure_sqlite_store

        ensure_sqlite_store(self.tracking_uri)
        client = self.client
        try:
            client.search_experiments(max_results=1)
        except Exception as exc:  # noqa: BLE001
            raise self._fail("store check", exc) from exc

    def _experiment_location(self, app: str) -> str | None:
        if not self.artifact_root or _is_remote(self.tracking_uri):
            return None  # a tracking server decides where artifacts go
        root = self.artifact_root
        if "://" not in root:
            root = Path(root).expanduser().absolute().as_uri()
        folder = re.sub(r"[^\w\-.]", "_", app) or "_"
        return f"{root.rstrip('/')}/{folder}"

    def experiment_id(self, app: str) -> str:
        """Return the id of the experiment named `app`, creating (or restoring) it if needed."""
        with self._lock:
            cached = self._experiments.get(app)
        if cached is not None:
            return cached
        client = self.client
        try:
            exp = client.get_experiment_by_name(app)
            if exp is None:
                try:
                    exp_id = client.create_experiment(
                        app, artifact_location=self._experiment_location(app)
                    )
                except Exception:  # noqa: BLE001 - maybe created concurrently: re-read
                    exp = client.get_experiment_by_name(app)
                    if exp is None:
                        raise
                    exp_id = exp.experiment_id
            else:
                exp_id = exp.experiment_id
                if exp.lifecycle_stage == "deleted":
                    client.restore_experiment(exp_id)
        except Exception as exc:  # noqa: BLE001
            raise self._fail(f"experiment lookup/creation for {app!r}", exc) from exc
        with self._lock:
            self._experiments[app] = exp_id
        return exp_id

    def _log_batch(self, mlflow_id: str, tags: Mapping[str, str], params=None, metrics=None):
        from mlflow.entities import Metric, Param, RunTag

        tag_list = [RunTag(k, _tag_value(v)) for k, v in tags.items()]
        param_list = [Param(k, v) for k, v in (params or {}).items()]
        ts = _now_ms()
        metric_list = [Metric(k, float(v), ts, 0) for k, v in (metrics or {}).items()]
        entities = [("p", p) for p in param_list] + [("t", t) for t in tag_list]
        first = True
        for start in range(0, max(len(entities), 1), _MAX_PARAMS_TAGS_PER_BATCH):
            chunk = entities[start : start + _MAX_PARAMS_TAGS_PER_BATCH]
            self.client.log_batch(
                mlflow_id,
                metrics=metric_list if first else (),
                params=[e for kind, e in chunk if kind == "p"],
                tags=[e for kind, e in chunk if kind == "t"],
                synchronous=True,
            )
            first = False

    # -- the Tracker interface --

    def start_pipeline(
        self,
        app: str,
        run_id: str,
        backend: str,
        notebook: str | Path,
        params: Mapping[str, Any],
        started_at: float | None = None,
    ) -> str:
        """Create the parent run of a pipeline run (RUNNING, from `started_at` epoch seconds when
        given: the recorder may start after the run did); return its MLflow run id."""
        exp_id = self.experiment_id(app)
        notebook_path = Path(notebook).expanduser().absolute()
        source: dict[str, str] = {_MLFLOW_SOURCE_NAME: str(notebook_path)}
        commit = git_commit(notebook_path.parent)
        if commit:
            source[_MLFLOW_GIT_COMMIT] = commit
        user = _user()
        if user:
            source[_MLFLOW_USER] = user
        tags = {
            TAG_APP: app,
            TAG_RUN_ID: run_id,
            TAG_BACKEND: backend,
            TAG_NOTEBOOK: str(notebook),
            TAG_KIND: "pipeline",
            **source,
        }
        try:
            start_ms = _now_ms() if started_at is None else int(started_at * 1000)
            run = self.client.create_run(exp_id, start_time=start_ms, tags=tags, run_name=run_id)
            mlflow_id = run.info.run_id
        except Exception as exc:  # noqa: BLE001
            raise self._fail(f"pipeline run creation for run {run_id!r}", exc) from exc
        with self._lock:
            self._source_tags[mlflow_id] = source
        items = _param_items(params)
        if items:
            try:
                self._log_batch(mlflow_id, {}, params=items)
            except Exception as exc:  # noqa: BLE001
                raise self._fail(f"parameter logging for run {run_id!r}", exc) from exc
        return mlflow_id

    def start_step(self, parent_mlflow_id: str, app: str, run_id: str, step: str,
                   started_at: float | None = None) -> str:
        """Create the nested run of a step (RUNNING); return its run id.

        `started_at` (epoch seconds) is the step's real start when it is recorded after the fact.
        """
        exp_id = self.experiment_id(app)
        with self._lock:
            source = dict(self._source_tags.get(parent_mlflow_id, {}))
        tags = {
            _MLFLOW_PARENT_RUN_ID: parent_mlflow_id,
            TAG_APP: app,
            TAG_RUN_ID: run_id,
            TAG_KIND: "step",
            TAG_STEP: step,
            **source,
        }
        try:
            start_ms = _now_ms() if started_at is None else int(started_at * 1000)
            run = self.client.create_run(exp_id, start_time=start_ms, tags=tags, run_name=step)
        except Exception as exc:  # noqa: BLE001
            raise self._fail(f"step run creation for step {step!r}", exc) from exc
        return run.info.run_id

    def finish_step(
        self,
        mlflow_id: str,
        status: str,
        attempts: int,
        cache_hit: bool,
        duration_s: float | None = None,
        artifacts: Iterable[str | Path] = (),
        error: Mapping[str, Any] | None = None,
        cached_from: str | None = None,
        finished_at: float | None = None,
        reused_step: str | None = None,
        pipeline_metrics: Iterable[str] = (),
        parent_mlflow_id: str | None = None,
    ) -> None:
        """Log a step's artifacts, tags and duration, then terminate its run with the mapped status.

        A cached step (`cached_from` + `reused_step`) gets the metrics of the step run it reuses;
        `pipeline_metrics` logged by the step are copied to `parent_mlflow_id`
        (`tracking_metrics`). The run is always terminated (at `finished_at`, epoch seconds, when
        given); artifact, tag or metric failures are raised afterwards.
        """
        final = mlflow_status(status)
        problems: list[str] = []
        problems += self._step_metrics(mlflow_id, status, cached_from, reused_step, pipeline_metrics, parent_mlflow_id)
        for path in artifacts:
            path = Path(path)
            try:
                if path.is_dir():  # a folder (the step's figures/) keeps its name in the run
                    self.client.log_artifacts(mlflow_id, str(path), path.name)
                    continue
                if not path.is_file():
                    raise FileNotFoundError(f"no such file: {path}")
                self.client.log_artifact(mlflow_id, str(path))
            except Exception as exc:  # noqa: BLE001
                problems.append(f"artifact {str(path)!r}: {type(exc).__name__}: {exc}")
        tags: dict[str, str] = {
            TAG_STATUS: status,
            TAG_ATTEMPT: str(attempts),
            TAG_CACHE_HIT: "true" if cache_hit else "false",
        }
        if cached_from:
            tags[TAG_CACHED_FROM] = cached_from
        if error:
            if isinstance(error.get("cell"), int):
                tags[TAG_ERROR_CELL] = str(error["cell"] + 1)  # 1-based, as JupyterLab counts cells
            if error.get("ename") is not None:
                tags[TAG_ERROR_NAME] = str(error["ename"])
            if error.get("evalue") is not None:
                tags[TAG_ERROR_VALUE] = str(error["evalue"])
        metrics = {METRIC_DURATION: duration_s} if duration_s is not None else None
        try:
            self._log_batch(mlflow_id, tags, metrics=metrics)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"tags/metrics: {type(exc).__name__}: {exc}")
        end_ms = None if finished_at is None else int(finished_at * 1000)
        self._terminate(mlflow_id, final, problems, f"step run {mlflow_id}", end_ms)

    def _step_metrics(self, mlflow_id: str, status: str, cached_from: str | None, reused_step: str | None,
                      pipeline_metrics: Iterable[str], parent_mlflow_id: str | None) -> list[str]:
        """Copy reused metrics to a cached step run and pipeline metrics to the parent; problems."""
        from scanflow_jupyter.tracking_metrics import copy_reused_metrics, lift_pipeline_metrics

        problems = []
        if status == "cached" and cached_from and reused_step:
            try:
                copy_reused_metrics(self.client, mlflow_id, cached_from, reused_step)
            except Exception as exc:  # noqa: BLE001
                problems.append(f"metrics of run {cached_from} step {reused_step}: {type(exc).__name__}: {exc}")
        names = list(pipeline_metrics)
        if names and parent_mlflow_id and status in ("succeeded", "cached"):
            try:
                lift_pipeline_metrics(self.client, mlflow_id, parent_mlflow_id, names)
            except Exception as exc:  # noqa: BLE001
                problems.append(f"pipeline metrics {', '.join(names)}: {type(exc).__name__}: {exc}")
        return problems

    def finish_pipeline(self, mlflow_id: str, status: str, duration_s: float | None = None) -> None:
        """Tag the pipeline run's status and duration, then terminate it with the mapped status."""
        final = mlflow_status(status)
        problems: list[str] = []
        metrics = {METRIC_DURATION: duration_s} if duration_s is not None else None
        try:
            self._log_batch(mlflow_id, {TAG_STATUS: status}, metrics=metrics)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"tags/metrics: {type(exc).__name__}: {exc}")
        self._terminate(mlflow_id, final, problems, f"pipeline run {mlflow_id}")
        with self._lock:
            self._source_tags.pop(mlflow_id, None)

    def _terminate(self, mlflow_id: str, final: str, problems: list[str], what: str,
                   end_ms: int | None = None) -> None:
        try:
            self.client.set_terminated(mlflow_id, status=final, end_time=end_ms or _now_ms())
        except Exception as exc:  # noqa: BLE001
            problems.insert(0, f"status update to {final}: {type(exc).__name__}: {exc}")
        if problems:
            raise TrackingError(
                f"MLflow logging for {what} (store {self.tracking_uri!r}) partly failed: "
                + "; ".join(problems)
            )

    def close(self, timeout: float | None = None) -> None:
        """Nothing to flush in-process (present for the `Tracker` interface)."""
