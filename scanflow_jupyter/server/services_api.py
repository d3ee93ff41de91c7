"""Services of a notebook through the local services supervisor (blocking calls run in a thread).

`GET services?path=NB` lists them (state, url, pid, model, version served now, restarts, error);
`POST services {"path", "action": "start"|"stop", "names": [..]|null}` runs `services up|down`.
The sidebar's "try it" request goes to the service's own URL (its `/predict` is open).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["list_services", "start_services", "stop_services"]


def list_services(home: Path, notebook: Path | None) -> list[dict[str, Any]]:
    from scanflow_jupyter.services.supervisor import ls

    return [r.to_dict() for r in ls(home=home, notebook=str(notebook) if notebook else None)]


def start_services(home: Path, notebook: Path, names: list[str] | None, tracking_uri: str | None) -> dict[str, Any]:
    """`scanflow services up` (the project's agent token is created first: `POST /reload` needs it)."""
    import os

    from scanflow_jupyter.agents.auth import agent_token
    from scanflow_jupyter.services.supervisor import up

    env = dict(os.environ)
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    agent_token(home, env=env)
    rows = up(notebook, names, home=home, env=env)
    return {"services": [r.to_dict() for r in rows]}


def stop_services(home: Path, notebook: Path) -> dict[str, Any]:
    from scanflow_jupyter.services.supervisor import down

    return {"stopped": down(notebook, home=home), "services": list_services(home, notebook)}
