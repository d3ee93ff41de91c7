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
(mode 0600) and holds no credentials: `tracking_uri` is recorded redacted
(`supervision.SupervisedRegistry`, shared with `services.json`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scanflow_jupyter.supervision import SupervisedRegistry, pid_alive

__all__ = ["PeerNotFound", "Registry", "pid_alive"]

REGISTRY_NAME = "agents.json"


class PeerNotFound(LookupError):
    """`ctx.call(agent, ...)` named an agent that is not running; the message lists those that are."""


class Registry(SupervisedRegistry):
    """The agents registry of one Scanflow home (`agents.json`)."""

    def __init__(self, home: Path) -> None:
        super().__init__(home, REGISTRY_NAME)

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
