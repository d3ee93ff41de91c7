"""The run store: one folder per pipeline run holding its state (run.json) and step files.

Layout (DESIGN §3)::

    <root>/<run_id>/run.json                     RunState, replaced atomically on every write
    <root>/<run_id>/<step>/input.ipynb, output.ipynb, log.txt
    <root>/<run_id>/<step>/outputs/<var>.<ext>   saved variables (+ <var>.meta.json)
    <root>/cache/<key[:2]>/<key>.json            cache index: step cache key -> CacheEntry

Every JSON file is written to a temp file in the same folder, flushed, fsynced and then
``os.replace``-d over the old one, so a crash at any point leaves the previous (or the new)
complete file. One writer process per run is expected; no locks are taken.
"""

from __future__ import annotations

import calendar
import errno
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from scanflow_jupyter import process_liveness
from scanflow_jupyter.contracts.run_record import (
    RunRecord,
    SchemaVersionError,
    StepErrorRecord,
    StepRecord,
    migrate_run_json,
)
from scanflow_jupyter.data.files import atomic_write_bytes
from scanflow_jupyter.data.records import OutputRecord

__all__ = [
    "RUN_STATUSES",
    "STEP_STATUSES",
    "CacheEntry",
    "RunNotFoundError",
    "RunState",
    "RunStore",
    "RunUnreadableError",
    "StepError",
    "StepState",
    "StoreError",
    "UnreadableRun",
    "link_outputs",
    "output_entry",
    "pid_running",
    "shown_status",
]

STEP_STATUSES = (
    "pending",
    "queued",
    "running",
    "succeeded",
    "failed",
    "cached",
    "skipped",
    "killed",
)
RUN_STATUSES = ("queued", "running", "succeeded", "failed", "killed", "interrupted")

_STATE_FILE = "run.json"
_CACHE_DIR = "cache"
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_KEY_RE = re.compile(r"[A-Za-z0-9_-]{2,256}")


class StoreError(Exception):
    """A run store problem (unreadable state, bad name, vanished cached file)."""


class RunNotFoundError(StoreError, LookupError):
    """No run with this id exists in the store."""


class RunUnreadableError(StoreError):
    """A run's run.json exists but cannot be used (garbage, truncated, wrong schema, no access).

    ``str()`` names the file and what is wrong; ``fix`` says what to do about it.
    """

    def __init__(self, run_id: str, path: Path, problem: str) -> None:
        self.run_id = run_id
        self.path = path
        self.problem = problem
        self.fix = (
            "this run cannot be shown or resumed: start a new run (without --resume); "
            f"remove its folder {path.parent} to drop it from `scanflow runs`"
        )
        super().__init__(f"the state of run '{run_id}' ({path}) is unreadable: {problem}")


# --------------------------------------------------------------------------- state dataclasses


def _check_status(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"invalid {what} status {value!r}; expected one of {', '.join(allowed)}")


@dataclass
class StepError:
    """Why a step failed: the failing cell (index in the source notebook) and its traceback."""

    cell: int | None
    ename: str
    evalue: str
    traceback: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """As in run.json (:class:`~scanflow_jupyter.contracts.StepErrorRecord`)."""
        return StepErrorRecord.model_validate(self, from_attributes=True).model_dump(mode="json")


@dataclass
class StepState:
    """State of one step within a run.

    ``outputs`` maps each variable to its :class:`OutputRecord` as a dict plus ``folder``, the
    absolute folder holding the file (see :func:`output_entry`).
    """

    name: str
    status: str = "pending"
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    duration_s: float | None = None
    cache_key: str | None = None
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: StepError | None = None
    mlflow_run_id: str | None = None
    cached_from: str | None = None

    def __post_init__(self) -> None:
        _check_status(self.status, STEP_STATUSES, "step")

    def to_dict(self) -> dict[str, Any]:
        """As in run.json (:class:`~scanflow_jupyter.contracts.StepRecord`)."""
        _check_status(self.status, STEP_STATUSES, "step")
        return StepRecord.model_validate(self, from_attributes=True).model_dump(mode="json")

    @classmethod
    def from_record(cls, record: StepRecord) -> StepState:
        error = record.error
        return _from_record(cls, record, error=None if error is None else _from_record(StepError, error))


@dataclass
class RunState:
    """State of one pipeline run (the content of ``run.json``); ``steps`` keeps DAG order."""

    run_id: str
    app: str
    notebook: str
    backend: str = "local"
    status: str = "queued"
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    mlflow_run_id: str | None = None
    pid: int | None = None
    steps: dict[str, StepState] = field(default_factory=dict)
    resumed_from: str | None = None
    started_by: str | None = None  # cli | notebook | sidebar | agent:<name> | python (who started the run)
    tracking: str | None = None  # recording | synced | pending | failed (scanflow_jupyter.tracking_sync)
    warnings: list[dict[str, Any]] = field(default_factory=list)  # {"code", "message", "fix"}

    def __post_init__(self) -> None:
        _check_status(self.status, RUN_STATUSES, "run")

    def to_dict(self) -> dict[str, Any]:
        """The content of run.json: a :class:`~scanflow_jupyter.contracts.RunRecord` (with
        ``schema_version``) as JSON-ready data; ``params`` are copied through JSON."""
        _check_status(self.status, RUN_STATUSES, "run")
        attrs = {f.name: getattr(self, f.name) for f in fields(self)}
        attrs["params"] = json.loads(json.dumps(self.params))
        return RunRecord.model_validate(attrs, from_attributes=True).model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunState:
        """Parse run.json content (older schema versions migrated); pydantic's ValidationError
        (a ValueError) or SchemaVersionError when it does not fit the contract."""
        record = RunRecord.model_validate(migrate_run_json(data))
        return _from_record(cls, record, steps={n: StepState.from_record(s) for n, s in record.steps.items()})


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _from_record(cls: type[Any], record: Any, **converted: Any) -> Any:
    """A state dataclass from its contract model: every dataclass field (extra keys are ignored)."""
    names = _FIELD_NAMES.get(cls) or _FIELD_NAMES.setdefault(cls, tuple(f.name for f in fields(cls)))
    values = record.__dict__
    return cls(**{name: converted[name] if name in converted else values[name] for name in names})


@dataclass
class CacheEntry:
    """A cache index entry: the step run whose outputs a cache key maps to."""

    key: str
    run_id: str
    step: str
    outputs: dict[str, dict[str, Any]]
    created_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "run_id": self.run_id,
            "step": self.step,
            "outputs": {var: dict(out) for var, out in self.outputs.items()},
            "created_at": self.created_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CacheEntry:
        return cls(
            key=str(data["key"]),
            run_id=str(data["run_id"]),
            step=str(data["step"]),
            outputs={var: dict(out) for var, out in (data.get("outputs") or {}).items()},
            created_at=float(data["created_at"]),
        )


# --------------------------------------------------------------------------- run.json schema

_NUMBER = (int, float)
_RUN_SCHEMA: dict[str, tuple[tuple[type, ...], bool]] = {  # key -> (JSON types, required)
    "run_id": ((str,), True),
    "app": ((str,), True),
    "notebook": ((str,), True),
    "created_at": (_NUMBER, True),
    "backend": ((str,), False),
    "status": ((str,), False),
    "started_at": (_NUMBER, False),
    "finished_at": (_NUMBER, False),
    "params": ((dict,), False),
    "mlflow_run_id": ((str,), False),
    "pid": ((int,), False),
    "steps": ((dict,), False),
    "resumed_from": ((str,), False),
    "started_by": ((str,), False),
    "tracking": ((str,), False),
    "warnings": ((list,), False),
}
_STEP_SCHEMA: dict[str, tuple[tuple[type, ...], bool]] = {
    "name": ((str,), True),
    "status": ((str,), False),
    "attempts": ((int,), False),
    "started_at": (_NUMBER, False),
    "finished_at": (_NUMBER, False),
    "duration_s": (_NUMBER, False),
    "cache_key": ((str,), False),
    "outputs": ((dict,), False),
    "error": ((dict,), False),
    "mlflow_run_id": ((str,), False),
    "cached_from": ((str,), False),
}
_JSON_NAMES = {dict: "an object", list: "a list", str: "a string", int: "a whole number",
               float: "a number", bool: "true/false", type(None): "null"}


def _json_kind(value: Any) -> str:
    return _JSON_NAMES.get(type(value), type(value).__name__)


def _schema_problem(data: Any, schema: dict[str, tuple[tuple[type, ...], bool]], subject: str) -> str | None:
    if not isinstance(data, dict):
        return f"{subject} is {_json_kind(data)}, not a JSON object"
    for key, (types, required) in schema.items():
        if key not in data:
            if required:
                return f"{subject} has no '{key}' key"
            continue
        value = data[key]
        if value is None and not required:
            continue
        if isinstance(value, bool) or not isinstance(value, types):  # `true` is no pid or time
            wanted = " or ".join(_JSON_NAMES[t] for t in types)
            return f"'{key}' of {subject} is {_json_kind(value)}, expected {wanted}"
    return None


def state_problem(data: Any, run_id: str) -> str | None:
    """What makes ``data`` (parsed run.json of run ``run_id``) unusable, or None if it is valid."""
    if not isinstance(data, dict):
        return f"the file holds {_json_kind(data)}, not a JSON object"
    problem = _schema_problem(data, _RUN_SCHEMA, "the run")
    if problem:
        return problem
    if data["run_id"] != run_id:
        return f"'run_id' is {data['run_id']!r} but the run's folder is named {run_id!r}"
    if data.get("status", "queued") not in RUN_STATUSES:
        return f"'status' is {data['status']!r}, expected one of {', '.join(RUN_STATUSES)}"
    for name, step in (data.get("steps") or {}).items():
        problem = _schema_problem(step, _STEP_SCHEMA, f"step '{name}'")
        if problem:
            return problem
        if step.get("status", "pending") not in STEP_STATUSES:
            return (f"'status' of step '{name}' is {step['status']!r}, "
                    f"expected one of {', '.join(STEP_STATUSES)}")
        for var, out in (step.get("outputs") or {}).items():
            if not isinstance(out, dict):
                return f"output '{var}' of step '{name}' is {_json_kind(out)}, not a JSON object"
        cell = (step.get("error") or {}).get("cell")
        if cell is not None and (isinstance(cell, bool) or not isinstance(cell, int)):
            return f"'error.cell' of step '{name}' is {_json_kind(cell)}, expected a whole number or null"
    return None


@dataclass
class UnreadableRun:
    """A listing entry for a run folder whose run.json cannot be read (see RunUnreadableError)."""

    run_id: str
    path: str
    reason: str
    message: str
    fix: str
    created_at: float
    status: str = "unreadable"

    @classmethod
    def from_error(cls, error: RunUnreadableError) -> UnreadableRun:
        return cls(error.run_id, str(error.path), error.problem, str(error), error.fix,
                   _created_from_id(error.run_id, error.path))

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "status": self.status, "path": self.path, "reason": self.reason,
                "message": self.message, "fix": self.fix, "created_at": self.created_at}


def _created_from_id(run_id: str, path: Path) -> float:
    """Creation time of a run from its id (``20261127T105501-...``), else run.json's mtime."""
    try:
        return float(calendar.timegm(time.strptime(run_id.partition("-")[0], "%Y%m%dT%H%M%S")))
    except ValueError:
        pass
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


# --------------------------------------------------------------------------- outputs helpers


def output_entry(record: OutputRecord, folder: str | Path) -> dict[str, Any]:
    """A ``StepState.outputs`` value: the record as a dict plus its absolute ``folder``."""
    return {**record.to_dict(), "folder": str(Path(folder).absolute())}


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (copy across devices), replacing ``dst`` atomically."""
    if dst.exists() and os.path.samefile(src, dst):
        return
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copy2(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def link_outputs(entry_outputs: dict[str, dict[str, Any]], dest_folder: str | Path) -> dict:
    """Hard-link (or copy) cached output files and their .meta.json into ``dest_folder``.

    Returns the outputs dict with every ``folder`` pointing at ``dest_folder``. Linking is safe
    because output files are never modified in place (they are always replaced).
    """
    dest = Path(dest_folder).absolute()
    dest.mkdir(parents=True, exist_ok=True)
    result: dict[str, dict[str, Any]] = {}
    for var, out in entry_outputs.items():
        record = OutputRecord.from_dict(out)
        src_folder = Path(out["folder"])
        src = src_folder / record.file
        try:
            _link_or_copy(src, dest / record.file)
        except FileNotFoundError:
            raise StoreError(
                f"cached output '{var}' vanished ({src}); run again with the step's cache off"
            ) from None
        meta_name = f"{record.name}.meta.json"
        if (src_folder / meta_name).exists():
            _link_or_copy(src_folder / meta_name, dest / meta_name)
        else:
            atomic_write_bytes(dest / meta_name, json.dumps(record.to_dict(), indent=1).encode())
        result[var] = {**out, "folder": str(dest)}
    return result


def _outputs_present(outputs: dict[str, dict[str, Any]]) -> bool:
    for out in outputs.values():
        try:
            size = (Path(out["folder"]) / out["file"]).stat().st_size
        except (OSError, KeyError, TypeError):
            return False
        if "size" in out and size != out["size"]:
            return False
    return True


# --------------------------------------------------------------------------- the store


def pid_running(pid: int | None) -> bool:
    """True if process `pid` exists and is not a zombie: a run left `running` by a runner for which
    this is False was interrupted (`scanflow runs`, the server extension)."""
    return process_liveness.alive(pid)


def shown_status(state: RunState, alive: bool | None = None) -> str:
    """The one status rule of `scanflow runs` (table and --json) and the server: a run left
    `running` whose runner is gone (``alive``, default: its pid is running) was `interrupted`."""
    if state.status != "running":
        return state.status
    if alive is None:
        alive = pid_running(state.pid)
    return "running" if alive else "interrupted"


def _check_name(value: str, what: str) -> str:
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value) or value in (".", ".."):
        raise StoreError(f"invalid {what} {value!r}: use letters, digits, '_', '-' and '.'")
    return value


class RunStore:
    """Local-folder run store rooted at ``root`` (created on first write)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().absolute()

    def __repr__(self) -> str:
        return f"RunStore({str(self.root)!r})"

    # -- paths

    def new_run_id(self) -> str:
        """A new run id, e.g. ``20261127T105501-3f9a1c`` (UTC time + random suffix).

        Ids sort by creation time (to the second). The run folder is created here, which
        reserves the id: two processes can never get the same one.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        while True:
            run_id = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.urandom(3).hex()}"
            try:
                (self.root / run_id).mkdir()
            except FileExistsError:
                continue
            return run_id

    def run_dir(self, run_id: str) -> Path:
        _check_name(run_id, "run id")
        if run_id == _CACHE_DIR:
            raise StoreError(f"'{_CACHE_DIR}' is reserved and cannot be a run id")
        return self.root / run_id

    def state_path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / _STATE_FILE

    def step_dir(self, run_id: str, step: str) -> Path:
        return self.run_dir(run_id) / _check_name(step, "step name")

    def outputs_dir(self, run_id: str, step: str) -> Path:
        return self.step_dir(run_id, step) / "outputs"

    # -- run state

    def write_state(self, state: RunState, *, durable: bool = True) -> None:
        """Write ``run.json`` atomically (temp file + os.replace: a crash leaves the old or the new
        file); `durable` also fsyncs it (≈5 ms), so it survives a power loss too."""
        path = self.state_path(state.run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        from scanflow_jupyter.redact import process_secrets, redact_json

        # errors may quote a tracking URI or a credential from the environment: never on disk
        data = json.dumps(redact_json(state.to_dict(), process_secrets()), indent=1).encode()
        atomic_write_bytes(path, data, fsync=durable)

    def read_state(self, run_id: str) -> RunState:
        """Read a run's state: :class:`RunNotFoundError` if the run does not exist,
        :class:`RunUnreadableError` if its run.json is garbage, truncated or of the wrong schema."""
        path = self.state_path(run_id)
        try:
            raw = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise RunNotFoundError(
                f"no run '{run_id}' in the run store {self.root}; "
                "see the existing runs with `scanflow runs`"
            ) from None
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                raise RunNotFoundError(f"no run '{run_id[:80]}…': the id is too long") from None
            raise RunUnreadableError(run_id, path, f"it cannot be read ({exc.strerror})") from None
        if not raw.strip():
            raise RunUnreadableError(run_id, path, "the file is empty")
        try:
            data = json.loads(raw)
        except RecursionError:
            raise RunUnreadableError(run_id, path, "it is not valid JSON (nested too deeply)") from None
        except ValueError as exc:
            raise RunUnreadableError(
                run_id, path, f"it is not valid JSON, truncated or overwritten? ({exc})"
            ) from None
        problem = state_problem(data, run_id)
        if problem:
            raise RunUnreadableError(run_id, path, problem)
        try:
            data = migrate_run_json(data)
        except SchemaVersionError as exc:
            raise RunUnreadableError(run_id, path, str(exc)) from None
        try:
            return RunState.from_dict(data)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise RunUnreadableError(run_id, path, f"{type(exc).__name__}: {exc}") from exc

    def list_runs(self, limit: int | None = None) -> list[RunState]:
        """Readable runs, newest first (by ``created_at``); folders without run.json are skipped."""
        return [r for r in self._scan(limit, unreadable=False) if isinstance(r, RunState)]

    def list_entries(self, limit: int | None = None) -> list[RunState | UnreadableRun]:
        """Like :meth:`list_runs`, but runs whose run.json is unreadable are listed as
        :class:`UnreadableRun` (status ``unreadable``) instead of being left out."""
        return self._scan(limit, unreadable=True)

    def _scan(self, limit: int | None, unreadable: bool) -> list[RunState | UnreadableRun]:
        try:
            names = [
                entry.name
                for entry in os.scandir(self.root)
                if entry.is_dir() and entry.name != _CACHE_DIR and _NAME_RE.fullmatch(entry.name)
            ]
        except FileNotFoundError:
            return []
        names.sort(reverse=True)
        runs: list[RunState | UnreadableRun] = []
        boundary: str | None = None  # timestamp part of the id that filled the limit
        for name in names:
            if boundary is not None and name.partition("-")[0] != boundary:
                break  # ids sort by second; runs of the same second are all read, then sorted
            try:
                runs.append(self.read_state(name))
            except RunUnreadableError as exc:
                if not unreadable:
                    continue
                runs.append(UnreadableRun.from_error(exc))
            except StoreError:  # no run.json (yet): a reserved id, not a run
                continue
            if limit is not None and boundary is None and len(runs) >= limit:
                boundary = name.partition("-")[0]
        runs.sort(key=lambda r: (r.created_at, r.run_id), reverse=True)
        return runs if limit is None else runs[:limit]

    # -- cache index

    def cache_path(self, key: str) -> Path:
        if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
            raise StoreError(f"invalid cache key {key!r}")
        return self.root / _CACHE_DIR / key[:2] / f"{key}.json"

    def cache_lookup(self, key: str) -> CacheEntry | None:
        """The entry for ``key``, or None if absent, unreadable, or any output file is gone."""
        path = self.cache_path(key)
        try:
            entry = CacheEntry.from_dict(json.loads(path.read_bytes()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        if entry.key != key or not _outputs_present(entry.outputs):
            return None
        return entry

    def cache_record(self, key: str, entry: CacheEntry) -> None:
        """Store ``entry`` under ``key`` (atomically; the last writer wins)."""
        if entry.key != key:
            raise StoreError(f"cache entry key {entry.key!r} does not match {key!r}")
        path = self.cache_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps(entry.to_dict(), indent=1).encode(), fsync=True)

    def link_outputs(
        self, entry_outputs: dict[str, dict[str, Any]], dest_folder: str | Path
    ) -> dict:
        """See :func:`link_outputs`."""
        return link_outputs(entry_outputs, dest_folder)
