"""The per-user registry of running trackers (`scanflow tracker ls` / `down --all`), and leases.

Every tracker process writes one entry, ``<registry>/<pid>.json`` (folder 0700, file 0600), when
it starts, refreshes its ``last_activity`` while it serves, and removes it when it stops. The
registry is ``$SCANFLOW_TRACKER_REGISTRY``, else ``${XDG_CACHE_HOME:-~/.cache}/scanflow/trackers``.
Entries whose process is gone (or is no longer a tracker: pids are reused) are pruned by readers.

A *lease* (``<home>/tracker-lease.<pid>.<token>``) keeps a tracker from stopping for idleness
while the process that took it lives: a docker-backend run holds one, so a step that logs nothing
for longer than the idle timeout still finds its tracker. A lease names its process by pid and
create time (`process_liveness`). Stdlib + psutil (imported on first use): the CLI imports it cheaply.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scanflow_jupyter import process_liveness
from scanflow_jupyter.process_liveness import ProcessIdentity

SERVER_MODULE = "scanflow_jupyter.mlflow_server.app"
SERVER_MODULES = (SERVER_MODULE, "scanflow_jupyter.tracker_server")  # the module's name before 2026-12
LEASE_PREFIX = "tracker-lease."


def registry_dir() -> Path:
    """Where this user's tracker entries live (created 0700 on first write)."""
    env = os.environ.get("SCANFLOW_TRACKER_REGISTRY")
    if env:
        return Path(env).expanduser().absolute()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "scanflow" / "trackers"


@dataclass
class Entry:
    """One running tracker as its process recorded it."""

    pid: int
    port: int
    url: str
    home: str
    backend_store_uri: str
    log: str
    started_at: float
    idle_timeout: float  # seconds; 0 = never stops for idleness
    last_activity: float = field(default_factory=time.time)

    @property
    def folder(self) -> str:
        """The project folder: the parent of a `.scanflow` home, else the home itself."""
        home = Path(self.home)
        return str(home.parent if home.name == ".scanflow" else home)

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["folder"] = self.folder
        doc["idle_seconds"] = round(max(0.0, time.time() - self.last_activity), 1)
        return doc


def _write_private(path: Path, text: str) -> None:
    """Atomically write `text` to `path`, readable by this user only."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def write(entry: Entry) -> Path:
    """Record (or refresh) `entry` in the registry."""
    folder = registry_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(OSError):
        folder.chmod(0o700)
    path = folder / f"{entry.pid}.json"
    _write_private(path, json.dumps(asdict(entry), indent=1) + "\n")
    return path


def remove(pid: int) -> None:
    with contextlib.suppress(OSError):
        (registry_dir() / f"{pid}.json").unlink()


def cmdline(pid: int) -> list[str]:
    return process_liveness.command_line(pid)


def is_tracker_process(pid: int, home: str | None = None) -> bool:
    """Is `pid` a live tracker process (of `home`, when given)? Zombies count as gone."""
    args = cmdline(pid)
    if not any(m in args for m in SERVER_MODULES) or not process_liveness.alive(pid):
        return False
    if home is None:
        return True
    return "--home" in args and args[args.index("--home") + 1:][:1] == [home]


def entries(prune: bool = True) -> list[Entry]:
    """Every tracker of this user, oldest first; entries of dead processes are removed."""
    folder = registry_dir()
    found: list[Entry] = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            entry = Entry(**json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            if prune:
                with contextlib.suppress(OSError):
                    path.unlink()
            continue
        if not is_tracker_process(entry.pid, entry.home):
            if prune:
                with contextlib.suppress(OSError):
                    path.unlink()
            continue
        found.append(entry)
    return sorted(found, key=lambda e: e.started_at)


# ------------------------------------------------------------------ leases

def _lease_holder(doc: dict[str, Any]) -> ProcessIdentity | None:
    """The process a lease names (pid + create time); older leases hold `start`, the start time in
    clock ticks since boot (/proc stat field 22). None if the lease does not identify one process."""
    pid = int(doc["pid"])
    if doc.get("create_time") is not None:
        return ProcessIdentity(pid, float(doc["create_time"]))
    started = process_liveness.ticks_to_create_time(doc.get("start", ""))
    return None if started is None else ProcessIdentity(pid, started)


def take_lease(home: Path, pid: int | None = None) -> Path:
    """Keep `home`'s tracker from idling out while process `pid` (default: this one) lives."""
    holder = ProcessIdentity.of(pid or os.getpid())
    home.mkdir(parents=True, exist_ok=True)
    path = home / f"{LEASE_PREFIX}{holder.pid}.{secrets.token_hex(4)}"
    _write_private(path, json.dumps(holder.to_dict()))
    return path


def release_lease(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink()


def leases_held(home: Path) -> int:
    """Leases on `home` whose process still lives; stale ones are removed."""
    held = 0
    for path in home.glob(f"{LEASE_PREFIX}*"):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            holder = _lease_holder(doc)
            alive = holder is not None and holder.alive()
        except (OSError, ValueError, KeyError, TypeError):
            alive = False
        if alive:
            held += 1
        else:
            with contextlib.suppress(OSError):
                path.unlink()
    return held
