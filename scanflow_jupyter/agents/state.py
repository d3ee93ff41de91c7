"""What an agent remembers across restarts: sensor schedules, watermarks, last values, messages.

One folder per agent (`<scanflow home>/agents/<app>/<agent>/`): `state.json` (written
atomically, so a SIGKILL at any moment leaves the previous or the next version, never half a
file) and `messages.jsonl` (append-only; the newest lines are loaded at start).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

__all__ = ["AgentState", "MessageLog", "atomic_write_json", "jsonable"]

MAX_VALUE_CHARS = 2000
MESSAGES_KEPT = 500
MESSAGES_FILE_MAX_BYTES = 2_000_000


def atomic_write_json(path: Path, data: Any, *, private: bool = False) -> None:
    """Write JSON to a temporary file next to `path`, then rename it over `path`.

    A killed process leaves the old or the new file, never a mix (no fsync: power loss is not
    what this guards against, and a sensor saving twice a second should not wait for the disk).
    `private`: the file is created with mode 0600 (never readable by other users, even briefly).
    """
    from scanflow_jupyter.data.files import atomic_write_bytes

    path.parent.mkdir(parents=True, exist_ok=True)
    raw = json.dumps(data, indent=1, default=str).encode("utf-8")
    if not private:
        atomic_write_bytes(path, raw)
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o600)
            fh.write(raw)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def jsonable(value: Any, limit: int = MAX_VALUE_CHARS) -> Any:
    """`value` as plain JSON data (MLflow runs and model versions summarised), cut to `limit` chars."""
    data = _plain(value, depth=0)
    try:
        text = json.dumps(data)
    except (TypeError, ValueError):
        data = repr(value)
        text = json.dumps(data)
    if len(text) > limit:
        return {"truncated": True, "preview": text[: limit - 40]}
    return data


def _plain(value: Any, depth: int) -> Any:
    if depth > 6:
        return repr(value)[:200]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    info = getattr(value, "info", None)
    if info is not None and hasattr(info, "run_id"):  # mlflow.entities.Run
        data = getattr(value, "data", None)
        return {"run_id": info.run_id, "experiment_id": getattr(info, "experiment_id", None),
                "status": getattr(info, "status", None),
                "metrics": dict(getattr(data, "metrics", {}) or {})}
    if hasattr(value, "version") and hasattr(value, "name") and hasattr(value, "run_id"):
        return {"model": value.name, "version": str(value.version), "run_id": value.run_id}
    if isinstance(value, dict):
        return {str(k): _plain(v, depth + 1) for k, v in list(value.items())[:200]}
    if isinstance(value, (list, tuple, set, frozenset, deque)):
        return [_plain(v, depth + 1) for v in list(value)[:200]]
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and getattr(value, "shape", None) == ():
        with contextlib.suppress(Exception):
            return _plain(item(), depth + 1)
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        with contextlib.suppress(Exception):
            return _plain(to_dict(), depth + 1)
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        with contextlib.suppress(Exception):
            return _plain(tolist(), depth + 1)
    return repr(value)[:MAX_VALUE_CHARS]


class MessageLog:
    """The agent's recent messages (calls, events, `ctx.log`), in memory and in a JSONL file."""

    def __init__(self, path: Path, keep: int = MESSAGES_KEPT) -> None:
        self.path = path
        self._items: deque[dict[str, Any]] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self._next_id = 1
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except OSError:
            return
        for line in lines[-self._items.maxlen:] if self._items.maxlen else lines:
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash
            self._items.append(item)
        if self._items:
            self._next_id = int(self._items[-1].get("id", 0)) + 1
        if self.path.stat().st_size > MESSAGES_FILE_MAX_BYTES:  # keep the file bounded
            tmp = self.path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(json.dumps(i) + "\n" for i in self._items), encoding="utf-8")
            os.replace(tmp, self.path)

    def add(self, kind: str, name: str | None = None, **fields: Any) -> dict[str, Any]:
        with self._lock:
            item = {"id": self._next_id, "at": time.time(), "kind": kind, "name": name,
                    **{k: v for k, v in fields.items() if v is not None}}
            self._next_id += 1
            self._items.append(item)
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(item, default=str) + "\n")
            except OSError:
                pass  # the in-memory copy is still served by /messages
        return item

    def list(self, since: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        with self._lock:
            items = [i for i in self._items if int(i.get("id", 0)) > since]
        return items[-limit:] if limit > 0 else items

    def __len__(self) -> int:
        return len(self._items)


class AgentState:
    """The persisted state of one agent: `sensors[name]` and `actuators[name]` dicts."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / "state.json"
        self._lock = threading.RLock()
        data = self._read()
        self.data: dict[str, Any] = {
            "first_started": data.get("first_started") or time.time(),
            "starts": int(data.get("starts", 0)) + 1,
            "sensors": dict(data.get("sensors") or {}),
            "actuators": dict(data.get("actuators") or {}),
        }
        self.messages = MessageLog(self.folder / "messages.jsonl")

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, json.JSONDecodeError):
            return {}

    def sensor(self, name: str) -> dict[str, Any]:
        with self._lock:
            return self.data["sensors"].setdefault(name, {"runs": 0, "errors": 0})

    def actuator(self, name: str) -> dict[str, Any]:
        with self._lock:
            return self.data["actuators"].setdefault(name, {"runs": 0, "errors": 0})

    def update(self, section: str, name: str, **fields: Any) -> dict[str, Any]:
        """Set fields of one sensor/actuator entry and save the whole state."""
        with self._lock:
            entry = self.data[section].setdefault(name, {"runs": 0, "errors": 0})
            entry.update(fields)
            self.save()
            return dict(entry)

    def save(self) -> None:
        with self._lock:
            atomic_write_json(self.path, self.data)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return json.loads(json.dumps(self.data, default=str))
