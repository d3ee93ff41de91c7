"""The agents' client API: `agents up/down/ls` and `/status` — agents as processes on 127.0.0.1.

`up(notebook)` checks the notebook's agents (refusing bad ones with the cell and the fix),
writes a spec per agent, and starts one detached supervisor process for the notebook
(`agents.daemon`, built on `scanflow_jupyter.supervision`). The supervisor binds a listening
socket per agent on a free port of 127.0.0.1 and keeps it for the agent's whole life, starts each agent with that socket (`agents.service --fd`), and restarts a
crashed agent with backoff (0.25 s, 0.5 s, 1 s, … 30 s; back to 0.25 s once it ran 30 s).
Because the socket outlives the agent, its port never changes and a request sent during a
restart waits in the socket's backlog instead of failing. Agents persist their schedules and
watermarks (`agents.state`), so a restarted agent continues where it stopped.

Files under the Scanflow home: `agent-token` (`agents.auth`, mode 0600), `agents.json` (the
registry, `agents.registry`, mode 0600), and in the owner-only folder `agents/` (mode 0700) per
app `agents/<app>/supervisor.log`, `agents/<app>/<agent>.log` (one log per agent, appended across
restarts), `agents/<app>/<agent>/{spec.json,state.json,messages.jsonl,boot.json}`.

`down(notebook)` stops the supervisor (SIGTERM), which stops its agents (SIGTERM, then SIGKILL
of the agent's process group after 10 s). Agents also stop by themselves if their supervisor
disappears. `ls()` lists every agent of the home with its live `/status`.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scanflow_jupyter import supervision
from scanflow_jupyter.agents import auth
from scanflow_jupyter.agents.registry import Registry, pid_alive
from scanflow_jupyter.agents.state import atomic_write_json
from scanflow_jupyter.redact import redact_uri

__all__ = ["AgentRow", "DownResult", "UpResult", "agents_folder", "down", "fetch_status", "ls", "probe_status", "project_token", "up"]

DAEMON_MODULE = "scanflow_jupyter.agents.daemon"
SERVICE_MODULE = "scanflow_jupyter.agents.service"
SETTLED = ("running", "refused", "failed")


def agents_folder(home: Path, app: str) -> Path:
    return Path(home) / "agents" / app


def _private_folder(folder: Path) -> None:
    """Create `folder` readable by its owner only (agent code, state, messages and logs live there)."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(OSError):
        os.chmod(folder, 0o700)


# -- results -------------------------------------------------------------------------------


@dataclass
class AgentRow:
    """One agent as `ls` shows it."""

    app: str
    name: str
    notebook: str
    state: str
    cell: int | None = None
    template: str | None = None
    port: int | None = None
    pid: int | None = None
    url: str | None = None
    uptime_s: float | None = None
    restarts: int = 0
    sensors: list[dict[str, Any]] = field(default_factory=list)
    actuators: list[str] = field(default_factory=list)
    last_value: str | None = None
    last_error: str | None = None
    log: str | None = None
    message: dict[str, Any] | None = None  # why it was refused / failed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class UpResult:
    """What `up` did: agents started, refused (cell + fix), failed to start, other findings."""

    notebook: str
    app: str
    supervisor_pid: int | None
    agents: list[AgentRow] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def running(self) -> list[AgentRow]:
        return [a for a in self.agents if a.state == "running"]

    @property
    def failed(self) -> list[AgentRow]:
        return [a for a in self.agents if a.state != "running"]

    @property
    def exit_code(self) -> int:
        """0 every agent runs; 1 some agent was refused or failed; 2 nothing could start."""
        if not self.agents and not self.refused:
            return 2
        return 0 if not self.refused and not self.failed else 1

    def to_dict(self) -> dict[str, Any]:
        return {"notebook": self.notebook, "app": self.app, "supervisor_pid": self.supervisor_pid,
                "agents": [a.to_dict() for a in self.agents], "refused": self.refused,
                "warnings": self.warnings, "exit_code": self.exit_code}


@dataclass
class DownResult:
    notebooks: list[str] = field(default_factory=list)
    agents: list[str] = field(default_factory=list)
    killed: list[int] = field(default_factory=list)  # pids that needed SIGKILL

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class NoAgents(ValueError):
    """The notebook declares no `%%agent` cell."""


# -- up / down / ls (the CLI's and the magics' API) -----------------------------------------


def _home(home: Path | str | None) -> Path:
    from scanflow_jupyter.tracking import scanflow_home

    return Path(home).absolute() if home is not None else scanflow_home()


def up(notebook: str | Path, *, home: Path | str | None = None, timeout: float = 60.0,
       env: dict[str, str] | None = None) -> UpResult:
    """Start the agents of `notebook` (restarting them if already up) and wait until each runs,
    is refused, or failed to start. Raises NotebookReadError / NoAgents for a bad notebook,
    auth.AgentTokenError for an unsafe token file."""
    from scanflow_jupyter.agents.loader import agent_spec, plan_agents
    from scanflow_jupyter.tracking import resolve_tracking_uri

    home_dir = _home(home)
    nb = Path(notebook).expanduser().resolve()
    plan = plan_agents(nb)
    if not plan.agents and not plan.refused:
        raise NoAgents(f"{nb.name} declares no %%agent cell, so there is no agent to start.")
    child_env = dict(os.environ if env is None else env)
    auth.agent_token(home_dir, env=child_env)  # create it now, before any agent or client needs it
    registry = Registry(home_dir)
    down(nb, home=home_dir)
    app = plan.app
    _private_folder(home_dir / "agents")
    folder = agents_folder(home_dir, app.name)
    for agent in plan.agents:
        agent_dir = folder / agent.name
        atomic_write_json(agent_dir / "spec.json", agent_spec(agent, app))
        with contextlib.suppress(FileNotFoundError):
            (agent_dir / "boot.json").unlink()
    child_env["SCANFLOW_HOME"] = str(home_dir)
    # the caller's environment decides (the server passes the sidebar's tracking URI in `env`)
    child_env["MLFLOW_TRACKING_URI"] = child_env.get("MLFLOW_TRACKING_URI") or resolve_tracking_uri(home_dir)
    child_env["PYTHONUNBUFFERED"] = "1"
    if plan.agents:
        _create_sqlite_store(child_env["MLFLOW_TRACKING_URI"], child_env)
    now = time.time()
    agents: dict[str, Any] = {}
    for agent in plan.agents:
        agents[agent.name] = {"cell": agent.cell, "template": agent.template, "state": "starting",
                              "log": str(folder / f"{agent.name}.log"), "restarts": 0}
    for refusal in plan.refused:
        agents[refusal.agent] = {"cell": refusal.cell, "state": "refused", "message": refusal.to_dict()}
    with registry.edit() as data:
        data["notebooks"][str(nb)] = {"app": app.name, "team": app.team, "supervisor_pid": None,
                                      "started_at": now, "tracking_uri": redact_uri(child_env["MLFLOW_TRACKING_URI"]),
                                      "log": str(folder / "supervisor.log"), "agents": agents}
    pid = None
    if plan.agents:
        folder.mkdir(parents=True, exist_ok=True)
        pid = supervision.start_daemon(DAEMON_MODULE, nb, home_dir, child_env, "agent supervisor")
        supervision.wait_settled(registry, str(nb), "agents", SETTLED, pid, DAEMON_MODULE, timeout)
    result = UpResult(str(nb), app.name, pid,
                      refused=[r.to_dict() for r in plan.refused],
                      warnings=[vars(m) for m in plan.warnings])
    rows = {r.name: r for r in ls(home=home_dir, notebook=str(nb))}
    for agent in plan.agents:
        row = rows.get(agent.name)
        if row is None:
            continue
        if row.state == "refused" and row.message:  # refused while loading, in the agent process
            result.refused.append({"agent": row.name, "cell": row.message.get("cell", row.cell),
                                   "code": row.message.get("code"), "text": row.message.get("text"),
                                   "fix": row.message.get("fix")})
        else:
            result.agents.append(row)
    for row in result.failed:
        if row.message is None:
            row.message = {"text": f"agent '{row.name}' is {row.state}", "fix": f"see its log {row.log}",
                           "log_tail": _tail(row.log)}
    return result


def _create_sqlite_store(tracking_uri: str, env: dict[str, str]) -> None:
    """Create/upgrade a sqlite tracking store before the agents start (`tracking_store.
    ensure_sqlite_store`: once, under its file lock), in a child process so this one does not
    import mlflow; a store that is already current costs a stdlib check only."""
    from scanflow_jupyter.tracking_store import sqlite_path, store_ready

    if sqlite_path(tracking_uri) is None or store_ready(tracking_uri):
        return
    code = ("import sys; from scanflow_jupyter.tracking_store import ensure_sqlite_store; "
            "ensure_sqlite_store(sys.argv[1])")
    proc = subprocess.run([sys.executable, "-c", code, tracking_uri], env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    if proc.returncode != 0:  # the agents report the store's problem in their /status
        print(f"scanflow: could not create the MLflow store {tracking_uri}: {proc.stderr.strip()[-500:]}",
              file=sys.stderr)


def _tail(path: str | None, lines: int = 15) -> str:
    if not path:
        return ""
    try:
        return "\n".join(Path(path).read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def down(notebook: str | Path | None = None, *, home: Path | str | None = None,
         timeout: float = 15.0) -> DownResult:
    """Stop the agents of `notebook` (all notebooks of the home if None) and their supervisors."""
    registry = Registry(_home(home))
    wanted = str(Path(notebook).expanduser().resolve()) if notebook is not None else None
    entries, killed = supervision.stop_notebooks(registry, wanted, section="agents", daemon_module=DAEMON_MODULE,
                                                 child_module=SERVICE_MODULE, timeout=timeout)
    result = DownResult(notebooks=list(entries), killed=killed)
    for entry in entries.values():
        result.agents += [f"{entry.get('app')}/{name}" for name, agent in (entry.get("agents") or {}).items()
                          if agent.get("state") != "refused"]
    return result


NO_ANSWER = "does not answer /status"


def probe_status(url: str, timeout: float = 1.0, *, token: str | None = None) -> tuple[dict[str, Any] | None, str]:
    """GET `url`/status with the project's agent token: `(status, "")`, or `(None, why not)`."""
    request = urllib.request.Request(f"{url.rstrip('/')}/status", headers=auth.auth_headers(token))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 - our agent
            return json.loads(resp.read().decode("utf-8")), ""
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            return None, (f"refused this project's agent token (HTTP {exc.code}): it was started with another "
                          "token; restart it with `scanflow agents up NOTEBOOK`")
        return None, f"{NO_ANSWER} (HTTP {exc.code})"
    except (urllib.error.URLError, OSError, ValueError):
        return None, NO_ANSWER


def fetch_status(url: str, timeout: float = 1.0, *, token: str | None = None) -> dict[str, Any] | None:
    """GET `url`/status with the project's agent token (None if the agent does not answer or
    refuses the token)."""
    return probe_status(url, timeout, token=token)[0]


def project_token(home: Path) -> str | None:
    """The agent token clients of `home` send (None if there is none yet or it is unsafe)."""
    try:
        return auth.agent_token(home, create=False)
    except auth.AgentTokenError:
        return None


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _summarise(row: AgentRow, status: dict[str, Any]) -> None:
    row.uptime_s = status.get("uptime_s")
    row.pid = status.get("pid", row.pid)
    row.sensors = [{"name": s["name"], "schedule": (s.get("trigger") or {}).get("short") or s.get("schedule"),
                    "state": s.get("state"),
                    "runs": s.get("runs"), "last_value": s.get("last_value"), "last_error": s.get("last_error")}
                   for s in status.get("sensors", [])]
    row.actuators = [a["name"] for a in status.get("actuators", [])]
    calls = status.get("sensors", []) + status.get("actuators", [])
    ran = [c for c in calls if c.get("last_run") and "last_value" in c and c.get("last_value") is not None]
    if ran:
        latest = max(ran, key=lambda c: c["last_run"])
        row.last_value = f"{latest['name']}: {_short(latest['last_value'])}"
    failed = [c for c in calls if c.get("last_error")]
    if failed:
        latest = max(failed, key=lambda c: c.get("last_error_at") or 0)
        suffix = "" if latest.get("state") == "error" else " (recovered)"
        row.last_error = f"{latest['name']}: {_short(latest['last_error'], 80)}{suffix}"


def ls(*, home: Path | str | None = None, notebook: str | None = None, fetch: bool = True,
       timeout: float = 1.0) -> list[AgentRow]:
    """Every agent in the registry (of one notebook if given), with its live status."""
    registry = Registry(_home(home))
    rows: list[AgentRow] = []
    for nb, entry in registry.read()["notebooks"].items():
        if notebook is not None and nb != notebook:
            continue
        supervised = pid_alive(entry.get("supervisor_pid"), DAEMON_MODULE)
        for name, agent in (entry.get("agents") or {}).items():
            state = agent.get("state", "?")
            if not supervised and state != "refused":
                state = "stopped"
            rows.append(AgentRow(app=entry.get("app", "?"), name=name, notebook=nb, state=state,
                                 cell=agent.get("cell"), template=agent.get("template"), port=agent.get("port"),
                                 pid=agent.get("pid") if state != "stopped" else None, url=agent.get("url"),
                                 restarts=int(agent.get("restarts") or 0), log=agent.get("log"),
                                 message=agent.get("message"),
                                 uptime_s=(time.time() - agent["started_at"]) if agent.get("started_at")
                                 and state == "running" else None))
    live = [r for r in rows if r.state == "running" and r.url] if fetch else []
    if live:
        token = project_token(registry.home)
        with ThreadPoolExecutor(max_workers=min(8, len(live))) as pool:
            for row, (status, why) in zip(live, pool.map(lambda r: probe_status(r.url, timeout, token=token), live),
                                          strict=True):
                if status is None:
                    row.last_error = row.last_error or why
                else:
                    _summarise(row, status)
    return rows
