"""Services of a notebook through the local services supervisor (blocking calls run in a thread).

`GET services?path=NB` lists them (state, url, pid, model, version served now, restarts, error);
`POST services {"path", "action": "start"|"stop", "names": [..]|null}` runs `services up|down`.
`POST services/predict {"path", "name", "payload"}` sends the sidebar's "try it" request to that
service's registered `/predict` from the server (the page never holds a service URL's token).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["TryError", "list_services", "start_services", "stop_services", "try_service"]


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


class TryError(Exception):
    """A "try it" request the server will not send: `status` is the HTTP status to answer with."""

    def __init__(self, status: int, text: str, fix: str = "") -> None:
        super().__init__(text)
        self.status, self.fix = status, fix


def try_service(home: Path, notebook: Path, name: str, payload: Any, timeout: float = 30.0) -> dict[str, Any]:
    """POST `payload` to the `/predict` of service `name` of `notebook`, as registered in `services.json`
    (no other URL is ever contacted). Returns `{"status": <service's HTTP status>, "answer": <its JSON>}`."""
    import json
    import urllib.error
    import urllib.request

    from scanflow_jupyter.services.supervisor import ls

    rows = [r for r in ls(home=home, notebook=str(notebook), fetch=False) if r.name == name]
    if not rows:
        raise TryError(404, f"no service {name!r} of {notebook.name} in {home / 'services.json'}",
                       "start it first (Start in the sidebar, or `scanflow services up`)")
    row = rows[0]
    if row.state != "running" or not row.url:
        raise TryError(409, f"service {name!r} is {row.state}, not running", "start it, then send again")
    data = json.dumps(payload).encode("utf-8")
    req = urllib.request.Request(f"{row.url.rstrip('/')}/predict", data=data, method="POST",  # noqa: S310 - registry
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - the registered local URL
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        raise TryError(502, f"service {name!r} at {row.url} did not answer: {exc}",
                       f"see its log: {row.log}" if row.log else "") from None
    try:
        answer: Any = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        answer = raw.decode("utf-8", "replace")[:4000]
    return {"status": status, "answer": answer}
