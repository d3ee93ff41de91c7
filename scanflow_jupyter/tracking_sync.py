"""The run's local tracking buffer, its delivery to the configured tracker, and dead runs.

With a remote tracker (http(s), databricks) and the local backend, a pipeline run never talks to
the network while it runs: the recorder and the step kernels log into a per-run sqlite store,
`<run_dir>/tracking/mlflow.db` (a copy of a template created once per project), and
`forward` copies its runs (tags, params, full metric histories, artifacts, status and times)
to the tracker after the run. Delivery is idempotent: `<run_dir>/tracking/sync.json` maps each
buffered run to the tracker's run and says whether it was completely delivered.

`run.json` field `tracking`: `recording` (run in progress), `synced` (everything is in the
configured tracker), `pending` (kept in the buffer; `scanflow runs sync` delivers it), `failed`
(the configured store could not record the run; nothing to deliver).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "TRACKING_STATES",
    "SyncResult",
    "apply_ids",
    "buffer_dir",
    "buffer_ids",
    "buffer_uri",
    "create_buffer",
    "end_dead_project_runs",
    "end_dead_runs",
    "forward",
    "has_buffer",
    "sync_runs",
    "unreachable",
    "uses_buffer",
]

TRACKING_STATES = ("recording", "synced", "pending", "failed")
BUFFER_DIR = "tracking"
_SYNC_FILE = "sync.json"
_PROBE_TIMEOUT_S = 3.0
#: Seconds one delivery may take before the remaining runs are left pending (a slow tracker).
FORWARD_BUDGET_S = 120.0
#: MLflow HTTP client settings for deliveries unless the user set them (MLflow's defaults retry
#: for minutes and wait 120 s per request).
HTTP_ENV_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}
_METRICS_PER_BATCH = 1000
_PARAMS_TAGS_PER_BATCH = 100
_PARENT_TAG = "mlflow.parentRunId"


# --- the buffer -------------------------------------------------------------------------------


def buffer_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / BUFFER_DIR


def buffer_uri(run_dir: str | Path) -> str:
    return f"sqlite:///{(buffer_dir(run_dir) / 'mlflow.db').absolute().as_posix()}"


def buffer_artifacts(run_dir: str | Path) -> str:
    return str((buffer_dir(run_dir) / "artifacts").absolute())


def has_buffer(run_dir: str | Path) -> bool:
    return (buffer_dir(run_dir) / "mlflow.db").is_file()


def uses_buffer(tracking_uri: str, backend: str) -> bool:
    """Steps log into a per-run buffer when the tracker is remote and they run on this machine."""
    from scanflow_jupyter.tracking import _is_remote

    return backend == "local" and _is_remote(tracking_uri)


def _template_uri(home: Path) -> str:
    return f"sqlite:///{(Path(home) / 'tracking-buffer' / 'template.db').absolute().as_posix()}"


def create_buffer(run_dir: str | Path, home: str | Path, *, allow_slow: bool = True) -> bool:
    """Create the run's buffer store from the project's template (made once, under its lock).

    Returns False without doing anything when the template is not ready and `allow_slow` is
    False (creating it imports mlflow and takes seconds: the recorder process does that).
    """
    from scanflow_jupyter.tracking_store import ensure_sqlite_store, sqlite_path, store_ready

    template = _template_uri(Path(home))
    if not store_ready(template):
        if not allow_slow:
            return False
        ensure_sqlite_store(template)
    src = sqlite_path(template)
    assert src is not None
    dest_dir = buffer_dir(run_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / "mlflow.db"
    if dest.exists():
        return True
    tmp = dest_dir / f".mlflow.db.{os.getpid()}.tmp"
    with sqlite3.connect(f"file:{src}?mode=ro", uri=True) as scon, sqlite3.connect(tmp) as dcon:
        scon.backup(dcon)  # consistent copy, WAL content included
        dcon.execute("PRAGMA journal_mode=WAL")
    scon.close()
    dcon.close()
    shutil.copyfile(src.with_name(src.name + ".schema"), dest_dir / "mlflow.db.schema")
    os.replace(tmp, dest)
    return True


# --- reachability -----------------------------------------------------------------------------


def unreachable(uri: str, timeout: float = _PROBE_TIMEOUT_S) -> str | None:
    """Why the tracker at `uri` cannot be reached (a TCP connect within `timeout`), else None.

    Only http(s) trackers are probed; a sqlite store is checked by opening it.
    """
    parts = urlsplit(uri)
    if parts.scheme.lower() not in ("http", "https"):
        return None
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "localhost", port), timeout=timeout):
            return None
    except OSError as exc:
        return f"cannot connect to {parts.hostname}:{port}: {exc.strerror or exc}"


# --- delivery ---------------------------------------------------------------------------------


def _load_map(run_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((buffer_dir(run_dir) / _SYNC_FILE).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) and isinstance(data.get("runs"), dict) else {"runs": {}}
    except (OSError, ValueError):
        return {"runs": {}}


def _save_map(run_dir: Path, data: dict[str, Any]) -> None:
    from scanflow_jupyter.data.files import atomic_write_bytes

    atomic_write_bytes(buffer_dir(run_dir) / _SYNC_FILE, json.dumps(data, indent=1).encode(), fsync=True)


def _local_dir(artifact_uri: str) -> Path | None:
    if artifact_uri.startswith("file://"):
        return Path(urlsplit(artifact_uri).path)
    if "://" not in artifact_uri:
        return Path(artifact_uri)
    return None


def forward(run_dir: str | Path, target_uri: str, artifact_root: str | None = None,
            budget_s: float = FORWARD_BUDGET_S) -> dict[str, Any]:
    """Deliver the buffered runs of `run_dir` to `target_uri` (imports mlflow).

    Returns `{"delivered": [buffer ids delivered now], "ids": {buffer id: tracker id},
    "complete": bool, "error": str | None}`; never raises for tracker trouble. MLflow's
    "View run at" lines go to stderr (stdout may be a `--json` document).
    """
    with contextlib.redirect_stdout(sys.stderr):
        return _forward(Path(run_dir), target_uri, artifact_root, time.monotonic() + budget_s)


def _forward(run_dir: Path, target_uri: str, artifact_root: str | None, deadline: float) -> dict[str, Any]:
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    from scanflow_jupyter.redact import process_secrets, redact_text
    from scanflow_jupyter.tracking import Recorder
    from scanflow_jupyter.tracking_store import with_busy_timeout

    data = _load_map(run_dir)
    done: dict[str, Any] = data["runs"]
    report: dict[str, Any] = {"delivered": [], "ids": {}, "complete": False, "error": None}
    why = unreachable(target_uri)
    if why:
        report["error"] = why
        report["ids"] = {k: v["target"] for k, v in done.items() if v.get("done")}
        return report
    src = MlflowClient(with_busy_timeout(buffer_uri(run_dir)))
    dst = Recorder(target_uri, artifact_root)
    try:
        exps = src.search_experiments()
        runs = []
        for exp in exps:
            runs += [(exp.name, r) for r in src.search_runs([exp.experiment_id], max_results=50000)]
        runs.sort(key=lambda item: (_PARENT_TAG in item[1].data.tags, item[1].info.start_time or 0))
        for exp_name, run in runs:
            rid = run.info.run_id
            entry = done.get(rid)
            if entry and entry.get("done"):
                continue
            if time.monotonic() > deadline:  # a slow tracker: the rest stays pending
                raise TimeoutError("delivery ran out of its time budget (a slow tracker); the rest is still in the buffer")
            if entry:  # a delivery that stopped half-way: start that run again
                try:
                    dst.client.delete_run(entry["target"])
                except Exception:  # noqa: BLE001, S110 - it may never have been created
                    pass
            tags = dict(run.data.tags)
            parent = tags.get(_PARENT_TAG)
            if parent:
                if not (done.get(parent) or {}).get("done"):
                    continue  # its parent is not delivered: the next sync does both
                tags[_PARENT_TAG] = done[parent]["target"]
            exp_id = dst.experiment_id(exp_name)
            created = dst.client.create_run(exp_id, start_time=run.info.start_time, tags=tags,
                                            run_name=run.info.run_name)
            target = created.info.run_id
            done[rid] = {"target": target, "done": False}
            _save_map(run_dir, data)
            params = [Param(k, v) for k, v in run.data.params.items()]
            for i in range(0, len(params), _PARAMS_TAGS_PER_BATCH):
                dst.client.log_batch(target, params=params[i : i + _PARAMS_TAGS_PER_BATCH], synchronous=True)
            metrics: list[Metric] = []
            for key in run.data.metrics:
                metrics += [Metric(m.key, m.value, m.timestamp, m.step) for m in src.get_metric_history(rid, key)]
            for i in range(0, len(metrics), _METRICS_PER_BATCH):
                dst.client.log_batch(target, metrics=metrics[i : i + _METRICS_PER_BATCH], synchronous=True)
            local = _local_dir(run.info.artifact_uri or "")
            if local is not None and local.is_dir() and any(local.iterdir()):
                dst.client.log_artifacts(target, str(local))
            if run.info.status != "RUNNING":
                dst.client.set_terminated(target, status=run.info.status, end_time=run.info.end_time)
            else:  # never left RUNNING by a sync: the buffer will say how it ended
                dst.client.set_tag(target, "scanflow.sync", "running in the buffer")
            done[rid]["done"] = run.info.status != "RUNNING"
            _save_map(run_dir, data)
            report["delivered"].append(rid)
        report["complete"] = all((done.get(r.info.run_id) or {}).get("done") for _, r in runs)
    except Exception as exc:  # noqa: BLE001 - reported, the buffer keeps everything
        report["error"] = redact_text(f"{type(exc).__name__}: {exc}", process_secrets())
    report["ids"] = {k: v["target"] for k, v in done.items() if v.get("done")}
    return report


# --- scanflow runs sync -----------------------------------------------------------------------


@dataclass
class SyncResult:
    """What `scanflow runs sync` did for one run."""

    run_id: str
    tracking: str
    delivered: int = 0
    mlflow_run_id: str | None = None
    error: str | None = None
    steps: dict[str, str | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "tracking": self.tracking, "delivered": self.delivered,
                "mlflow_run_id": self.mlflow_run_id, "error": self.error, "steps": self.steps}


def apply_ids(state: Any, ids: dict[str, str], buffer_ids: dict[str, Any]) -> None:
    """Point `state`'s MLflow ids at the tracker's runs (`buffer_ids`: the ids the buffer gave)."""
    parent = buffer_ids.get("parent")
    state.mlflow_run_id = ids.get(parent) if parent else None
    for name, step in state.steps.items():
        bid = (buffer_ids.get("steps") or {}).get(name)
        step.mlflow_run_id = ids.get(bid) if bid else None


def buffer_ids(run_dir: str | Path) -> dict[str, Any]:
    """`{"parent": id, "steps": {step: id}}`: the pipeline's runs in the buffer (read from its
    `scanflow.kind` / `scanflow.step` tags with the stdlib)."""
    from scanflow_jupyter.tracking import TAG_KIND, TAG_STEP

    db = buffer_dir(run_dir) / "mlflow.db"
    out: dict[str, Any] = {"parent": None, "steps": {}}
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            rows = con.execute("SELECT run_uuid, key, value FROM tags WHERE key IN (?, ?) ORDER BY run_uuid",
                               (TAG_KIND, TAG_STEP)).fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return out
    for run_uuid, key, value in rows:
        if key == TAG_KIND and value == "pipeline":
            out["parent"] = run_uuid
        elif key == TAG_STEP:
            out["steps"][value] = run_uuid
    return out


def sync_runs(store: Any, target_uri: str, artifact_root: str | None, run_id: str | None = None) -> list[SyncResult]:
    """Deliver pending runs (or `run_id`) to `target_uri`; update their run.json.

    Raises `RunNotFoundError` for an unknown `run_id`.
    """
    from scanflow_jupyter.data.store import pid_running

    if run_id is not None:
        states = [store.read_state(run_id)]
    else:
        states = [s for s in store.list_runs() if getattr(s, "tracking", None) == "pending"]
    results = []
    for state in states:
        run_dir = store.run_dir(state.run_id)
        if state.status == "running" and pid_running(state.pid):
            results.append(SyncResult(state.run_id, "recording", error="the run is still in progress"))
            continue
        if not has_buffer(run_dir):
            results.append(SyncResult(state.run_id, getattr(state, "tracking", None) or "synced",
                                      mlflow_run_id=state.mlflow_run_id,
                                      error=None if getattr(state, "tracking", None) != "pending"
                                      else f"its tracking buffer {buffer_dir(run_dir)} is gone"))
            continue
        report = forward(run_dir, target_uri, artifact_root)
        fresh = store.read_state(state.run_id)
        apply_ids(fresh, report["ids"], buffer_ids(run_dir))
        fresh.tracking = "synced" if report["complete"] and not report["error"] else "pending"
        store.write_state(fresh)
        results.append(SyncResult(state.run_id, fresh.tracking, len(report["delivered"]), fresh.mlflow_run_id,
                                  report["error"], {n: s.mlflow_run_id for n, s in fresh.steps.items()}))
    return results


# --- runs whose runner died -------------------------------------------------------------------


def end_dead_runs(store: Any, target_uri: str, artifact_root: str | None = None) -> list[str]:
    """End the MLflow runs (parent and steps still RUNNING) of runs whose runner died as KILLED.

    A run is dead when run.json says `running` and its pid is gone (`data.store.pid_running`).
    Its run.json becomes `interrupted` (steps in progress: `killed`), so each run is handled once.
    With a buffer the buffered runs are ended (tracking `pending`: `scanflow runs sync` delivers
    them); else the runs in `target_uri`. mlflow is imported only when there is such a run.
    Returns the ids of the runs handled; tracker trouble is left for the next call.
    """
    from scanflow_jupyter.data.store import pid_running

    dead = [s for s in store.list_runs() if s.status == "running" and not pid_running(s.pid)]
    handled = []
    for state in dead:
        run_dir = store.run_dir(state.run_id)
        buffered = has_buffer(run_dir)
        uri = buffer_uri(run_dir) if buffered else target_uri
        try:
            with contextlib.redirect_stdout(sys.stderr):
                _kill_mlflow_runs(uri, state.app, state.run_id)
        except Exception:  # noqa: BLE001 - the tracker may be down: try again next time
            if not buffered:
                continue
        fresh = store.read_state(state.run_id)
        if fresh.status != "running":
            continue
        fresh.status = "interrupted"
        fresh.finished_at = fresh.finished_at or time.time()
        for step in fresh.steps.values():
            if step.status in ("pending", "queued", "running"):
                step.status = "killed"
        fresh.tracking = "pending" if buffered else ("synced" if fresh.mlflow_run_id else fresh.tracking)
        store.write_state(fresh)
        handled.append(state.run_id)
    return handled


def end_dead_project_runs(home: str | Path, tracking_uri: str | None = None, store: Any = None) -> list[str]:
    """`end_dead_runs` for the project at `home` (tracker: `tracking_uri`, else the configured
    one); never raises: `scanflow runs`, `--resume` and the server call it on their way."""
    from scanflow_jupyter.data.store import RunStore
    from scanflow_jupyter.tracking import default_artifact_root, resolve_tracking_uri

    home = Path(home)
    try:
        return end_dead_runs(store or RunStore(home / "runs"), tracking_uri or resolve_tracking_uri(home),
                             default_artifact_root(home))
    except Exception:  # noqa: BLE001 - left for the next call
        return []


def _kill_mlflow_runs(uri: str, app: str, run_id: str) -> None:
    from scanflow_jupyter.tracking import TAG_RUN_ID, TAG_STATUS, Recorder

    if uri.startswith("sqlite:"):
        from scanflow_jupyter.tracking_store import sqlite_path

        db = sqlite_path(uri)
        if db is None or not db.exists():
            return  # no store: nothing was recorded
    elif unreachable(uri):
        raise ConnectionError(f"{uri} is unreachable")
    client = Recorder(uri).client
    exp = client.get_experiment_by_name(app)
    if exp is None:
        return
    now = int(time.time() * 1000)
    for run in client.search_runs([exp.experiment_id], filter_string=f"tags.`{TAG_RUN_ID}` = '{run_id}'"):
        if run.info.status == "RUNNING":
            client.set_tag(run.info.run_id, TAG_STATUS, "killed")
            client.set_terminated(run.info.run_id, status="KILLED", end_time=now)
