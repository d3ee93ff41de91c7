"""Agents of a notebook through the local supervisor (blocking calls run in a thread)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections import deque
from pathlib import Path
from typing import Any

from scanflow_jupyter.cell_numbers import shown

MESSAGES = 20
# supervisor states → REST states ("running" | "stopped" | "crashed"; others pass through)
_STATES = {"failed": "crashed", "restarting": "crashed"}


def _messages(home: Path, app: str, agent: str) -> list[dict[str, Any]]:
    """The last MESSAGES lines of the agent's messages.jsonl."""
    from scanflow_jupyter.agents.control import agents_folder

    path = agents_folder(home, app) / agent / "messages.jsonl"
    lines: deque[str] = deque(maxlen=MESSAGES)
    with contextlib.suppress(OSError), path.open(encoding="utf-8", errors="replace") as fh:
        lines.extend(fh)
    out = []
    for line in lines:
        with contextlib.suppress(json.JSONDecodeError):
            out.append(json.loads(line))
    return out


def agent_dict(row: Any, home: Path, status: dict[str, Any] | None = None) -> dict[str, Any]:
    raw = {s.get("name"): s for s in (status or {}).get("sensors", [])}
    return {
        "name": row.name, "app": row.app, "status": _STATES.get(row.state, row.state), "state": row.state,
        "url": row.url, "pid": row.pid, "uptime_s": row.uptime_s, "cell": shown(row.cell), "template": row.template,
        "restarts": row.restarts, "last_value": row.last_value, "last_error": row.last_error,
        "message": row.message,
        "sensors": [{"name": s.get("name"), "schedule": s.get("schedule"),
                     "last_run": raw.get(s.get("name"), {}).get("last_run"),
                     "next_run": raw.get(s.get("name"), {}).get("next_run"),
                     "last_value": s.get("last_value"), "last_error": s.get("last_error")} for s in row.sensors],
        "messages": _messages(home, row.app, row.name),
    }


def list_agents(home: Path, notebook: Path | None) -> list[dict[str, Any]]:
    """Every agent of `notebook` (all of the home if None), with its live `/status`."""
    from concurrent.futures import ThreadPoolExecutor

    from scanflow_jupyter.agents.control import _summarise, ls, probe_status, project_token

    rows = ls(home=home, notebook=str(notebook) if notebook else None, fetch=False)
    live = [r for r in rows if r.state == "running" and r.url]
    statuses: dict[int, dict[str, Any] | None] = {}
    if live:
        token = project_token(home)  # the agents' token: this server runs as the user who started them
        with ThreadPoolExecutor(max_workers=min(8, len(live))) as pool:
            for row, (status, why) in zip(live, pool.map(lambda r: probe_status(r.url, token=token), live),
                                          strict=True):
                statuses[id(row)] = status
                if status is None:
                    row.last_error = row.last_error or why
                else:
                    _summarise(row, status)
    return [agent_dict(r, home, statuses.get(id(r))) for r in rows]


def start_agents(home: Path, notebook: Path, tracking_uri: str | None) -> dict[str, Any]:
    """`scanflow agents up`: returns the agents and the refused ones (cell + fix)."""
    from scanflow_jupyter.agents.control import up

    env = dict(os.environ)
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    result = up(notebook, home=home, env=env)
    refused = [{**r, "cell": shown(r.get("cell"))} if isinstance(r, dict) else r for r in result.refused]
    warnings = [{**w, "cell": shown(w.get("cell"))} if isinstance(w, dict) else w for w in result.warnings]
    return {"agents": list_agents(home, notebook), "refused": refused, "warnings": warnings}


def stop_agents(home: Path, notebook: Path) -> dict[str, Any]:
    from scanflow_jupyter.agents.control import down

    down(notebook, home=home)
    return {"agents": list_agents(home, notebook), "refused": [], "warnings": []}


async def in_thread(fn: Any, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)
