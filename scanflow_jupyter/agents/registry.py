"""`.scanflow/agents.json`: which agents run where, shared by the supervisors, the CLI and peers.

Layout (version 1)::

    {"version": 1,
     "notebooks": {"/abs/nb.ipynb": {
         "app": "churn", "supervisor_pid": 123, "started_at": 1.7e9, "tracking_uri": "...",
         "log": ".../supervisor.log",
         "agents": {"monitor": {"cell": 3, "template": "monitor", "port": 41234,
                                "url": "http://127.0.0.1:41234", "pid": 456, "state": "running",
                                "started_at": 1.7e9, "restarts": 0, "log": ".../monitor.log",
                                "message": null}}}}}

Writers take an exclusive `flock` on `agents.json.lock`, read, change and replace the file
atomically; readers just read (they always see a whole file). The file is private to its owner
(mode 0600) and holds no credentials: `tracking_uri` is recorded redacted.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from scanflow_jupyter.agents.state import atomic_write_json
from scanflow_jupyter.redact import redact_uri

__all__ = ["PeerNotFound", "Registry", "pid_alive"]

REGISTRY_NAME = "agents.json"


class PeerNotFound(LookupError):
    """`ctx.call(agent, ...)` named an agent that is not running; the message lists those that are."""


def pid_alive(pid: int | None, marker: str | None = None) -> bool:
    """True if process `pid` runs (and is not a zombie); with `marker`, its command line must
    contain it (protects against a recycled pid)."""
    if not pid:
        return False
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own exited child
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return False
        if marker is not None:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            return marker in cmdline
    except (OSError, IndexError):
        pass
    return True


class Registry:
    """The agents registry of one Scanflow home."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self.path = self.home / REGISTRY_NAME
        self.lock_path = self.home / (REGISTRY_NAME + ".lock")

    def read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            data = {}
        if not isinstance(data, dict):
            data = {}
        data.setdefault("version", 1)
        data.setdefault("notebooks", {})
        return data

    @contextlib.contextmanager
    def edit(self) -> Iterator[dict[str, Any]]:
        """Lock, read, let the caller change the dict, write it back atomically."""
        self.home.mkdir(parents=True, exist_ok=True)
        with os.fdopen(os.open(self.lock_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                data = self.read()
                yield data
                for entry in data["notebooks"].values():  # entries written by older versions too
                    if isinstance(entry, dict) and entry.get("tracking_uri"):
                        entry["tracking_uri"] = redact_uri(str(entry["tracking_uri"]))
                atomic_write_json(self.path, data, private=True)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def notebook(self, notebook: str) -> dict[str, Any] | None:
        return self.read()["notebooks"].get(notebook)

    def update_agent(self, notebook: str, agent: str, **fields: Any) -> None:
        with self.edit() as data:
            entry = data["notebooks"].get(notebook)
            if entry is None:
                return
            entry.setdefault("agents", {}).setdefault(agent, {}).update(fields)

    def find_peer(self, agent: str, *, app: str | None = None, notebook: str | None = None) -> dict[str, Any]:
        """The registry entry of running agent `agent` (or `app/agent`): this notebook's first,
        then this app's, then a unique match anywhere."""
        wanted_app, _, name = agent.rpartition("/")
        notebooks = self.read()["notebooks"]
        candidates: list[tuple[int, str, dict[str, Any]]] = []
        for nb, entry in notebooks.items():
            found = (entry.get("agents") or {}).get(name)
            if not found or found.get("state") in ("refused", "stopped") or not found.get("port"):
                continue
            if wanted_app and entry.get("app") != wanted_app:
                continue
            rank = 0 if nb == notebook else 1 if entry.get("app") == app else 2
            candidates.append((rank, nb, {**found, "app": entry.get("app"), "notebook": nb}))
        candidates.sort(key=lambda c: c[0])
        if candidates and (len(candidates) == 1 or candidates[0][0] < candidates[1][0]):
            return candidates[0][2]
        running = sorted(f"{e.get('app')}/{n}" for e in notebooks.values() for n, a in (e.get("agents") or {}).items()
                         if a.get("port") and a.get("state") not in ("refused", "stopped"))
        if candidates:
            names = ", ".join(str(c[2]["app"]) + "/" + name for c in candidates)
            raise PeerNotFound(f"agent name '{agent}' is ambiguous: {names}. Call it as 'app/agent'.")
        raise PeerNotFound(f"no running agent '{agent}' in {self.path}; running: {', '.join(running) or 'none'}. "
                           "Start it with `scanflow agents up NOTEBOOK`.")
