"""The local supervisor: `agents up/down/ls` — agents as processes on 127.0.0.1.

`up(notebook)` checks the notebook's agents (refusing bad ones with the cell and the fix),
writes a spec per agent, and starts one detached supervisor process for the notebook. The
supervisor binds a listening socket per agent on a free port of 127.0.0.1 and keeps it for the
agent's whole life, starts each agent with that socket (`agents.service --fd`), and restarts a
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

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scanflow_jupyter.agents import auth
from scanflow_jupyter.agents.registry import Registry, pid_alive
from scanflow_jupyter.agents.state import atomic_write_json
from scanflow_jupyter.redact import redact_uri

__all__ = ["AgentRow", "DownResult", "UpResult", "agents_folder", "down", "fetch_status", "ls", "probe_status", "project_token", "up"]

SUPERVISOR_MODULE = "scanflow_jupyter.agents.supervisor"
SERVICE_MODULE = "scanflow_jupyter.agents.service"
BACKOFF_S = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
STABLE_AFTER_S = 30.0
STOP_GRACE_S = 10.0
EXIT_REFUSED = 3  # agents.service.EXIT_REFUSED (not imported: it would pull in FastAPI)
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
        proc = subprocess.run([sys.executable, "-m", SUPERVISOR_MODULE, "--notebook", str(nb), "--home",
                               str(home_dir), "--daemon"], env=child_env, cwd=nb.parent, capture_output=True,
                              text=True, timeout=60, check=False)
        try:
            pid = int(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise RuntimeError(f"the agent supervisor did not start (exit {proc.returncode}): "
                               f"{proc.stderr.strip()[-2000:]}") from None
        _wait_settled(registry, str(nb), pid, timeout)
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


def _wait_settled(registry: Registry, notebook: str, supervisor_pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = registry.notebook(notebook) or {}
        states = [a.get("state") for a in (entry.get("agents") or {}).values()]
        if all(s in SETTLED for s in states):
            return
        if not pid_alive(supervisor_pid, SUPERVISOR_MODULE):
            return
        time.sleep(0.05)


def _tail(path: str | None, lines: int = 15) -> str:
    if not path:
        return ""
    try:
        return "\n".join(Path(path).read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)  # agents lead their own process group
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _wait_gone(pids: list[tuple[int, str]], timeout: float) -> list[tuple[int, str]]:
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [(p, m) for p, m in alive if pid_alive(p, m)]
        if alive:
            time.sleep(0.05)
    return alive


def down(notebook: str | Path | None = None, *, home: Path | str | None = None,
         timeout: float = 15.0) -> DownResult:
    """Stop the agents of `notebook` (all notebooks of the home if None) and their supervisors."""
    registry = Registry(_home(home))
    wanted = str(Path(notebook).expanduser().resolve()) if notebook is not None else None
    entries = {nb: e for nb, e in registry.read()["notebooks"].items() if wanted is None or nb == wanted}
    result = DownResult()
    supervisors: list[tuple[int, str]] = []
    agents: list[tuple[int, str]] = []
    for nb, entry in entries.items():
        result.notebooks.append(nb)
        spid = entry.get("supervisor_pid")
        if pid_alive(spid, SUPERVISOR_MODULE):
            os.kill(spid, signal.SIGTERM)
            supervisors.append((spid, SUPERVISOR_MODULE))
        for name, agent in (entry.get("agents") or {}).items():
            if agent.get("state") != "refused":
                result.agents.append(f"{entry.get('app')}/{name}")
            if agent.get("pid"):
                agents.append((int(agent["pid"]), SERVICE_MODULE))
    for pid, _marker in _wait_gone(supervisors, timeout):
        result.killed.append(pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    left = [(p, m) for p, m in agents if pid_alive(p, m)]
    for pid, _ in left:  # the supervisor was gone or did not finish: stop its agents here
        _signal_group(pid, signal.SIGTERM)
    for pid, _ in _wait_gone(left, STOP_GRACE_S):
        result.killed.append(pid)
        _signal_group(pid, signal.SIGKILL)
    _wait_gone([(p, m) for p, m in agents + supervisors], 2.0)
    if entries:
        with registry.edit() as data:
            for nb in entries:
                data["notebooks"].pop(nb, None)
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
        supervised = pid_alive(entry.get("supervisor_pid"), SUPERVISOR_MODULE)
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


# -- the supervisor process -------------------------------------------------------------------


class _Managed:
    """One supervised agent: its socket, its current process, its restart bookkeeping."""

    def __init__(self, sup: Supervisor, name: str, log: str) -> None:
        self.sup = sup
        self.name = name
        self.dir = agents_folder(sup.home, sup.app) / name
        self.log = Path(log)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # else Nagle + delayed ACK: +40 ms per call
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.state = "starting"
        self.started_at = 0.0
        self.restarts = 0
        self.crashes = 0
        self.restart_at = 0.0

    def spawn(self) -> None:
        boot = self.dir / "boot.json"
        with contextlib.suppress(FileNotFoundError):
            boot.unlink()
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting agent {self.name} on {self.url}"
                      f" (start {self.restarts + 1}) ---\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", SERVICE_MODULE, "--spec", str(self.dir / "spec.json"), "--fd",
                 str(self.sock.fileno()), "--boot", str(boot), "--parent", str(os.getpid())],
                pass_fds=(self.sock.fileno(),), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.sup.notebook.parent, start_new_session=True)
        self.started_at = time.time()
        self.state = "starting"
        self.sup.publish(self.name, state="starting", pid=self.proc.pid, port=self.port, url=self.url,
                         restarts=self.restarts, started_at=self.started_at)

    def _boot(self) -> dict[str, Any]:
        try:
            return json.loads((self.dir / "boot.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def tick(self, now: float) -> None:
        if self.state in ("refused", "stopped"):
            return
        if self.proc is not None and self.proc.poll() is not None:
            code = self.proc.returncode
            boot = self._boot()
            self.proc = None
            if code == EXIT_REFUSED and boot.get("state") == "refused":
                self.state = "refused"
                self.sup.publish(self.name, state="refused", pid=None, message=boot.get("message"))
                return
            ran = now - self.started_at
            self.crashes = 1 if ran >= STABLE_AFTER_S else self.crashes + 1
            delay = BACKOFF_S[min(self.crashes, len(BACKOFF_S)) - 1]
            self.restart_at = now + delay
            how = f"signal {-code}" if code < 0 else f"exit code {code}"
            # an agent that never became ready is reported as failed (up stops waiting for it)
            self.state = "restarting" if self.state == "running" or self.restarts else "failed"
            self.sup.publish(self.name, state=self.state, pid=None, last_exit=how, last_exit_at=now,
                             next_start_at=self.restart_at)
            with contextlib.suppress(OSError), open(self.log, "ab") as log:
                log.write(f"--- agent {self.name} exited ({how}); restarting in {delay:g} s ---\n".encode())
            return
        if self.proc is None:
            if now >= self.restart_at:
                self.restarts += 1
                self.spawn()
            return
        if self.state != "running":
            boot = self._boot()
            if boot.get("pid") == self.proc.pid and boot.get("state") == "ready":
                self.state = "running"
                self.sup.publish(self.name, state="running", ready_at=now)

    def stop(self) -> subprocess.Popen[bytes] | None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            return proc
        return None


class Supervisor:
    """Keeps the agents of one notebook running (one process per notebook)."""

    def __init__(self, notebook: Path, home: Path) -> None:
        self.notebook = notebook
        self.home = home
        self.registry = Registry(home)
        entry = self.registry.notebook(str(notebook)) or {}
        self.app = entry.get("app") or notebook.stem
        self.stopping = False
        self.agents = [_Managed(self, name, a.get("log") or str(agents_folder(home, self.app) / f"{name}.log"))
                       for name, a in (entry.get("agents") or {}).items() if a.get("state") != "refused"]

    def publish(self, name: str, **fields: Any) -> None:
        with self.registry.edit() as data:
            entry = data["notebooks"].get(str(self.notebook))
            if entry is None or entry.get("supervisor_pid") not in (None, os.getpid()):
                return  # replaced by a newer `up`
            entry["supervisor_pid"] = os.getpid()
            entry.setdefault("agents", {}).setdefault(name, {}).update(fields)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.stopping = True

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        with self.registry.edit() as data:
            entry = data["notebooks"].get(str(self.notebook))
            if entry is not None:
                entry["supervisor_pid"] = os.getpid()
        print(f"supervisor {os.getpid()} for {self.notebook}: agents {', '.join(a.name for a in self.agents)}",
              flush=True)
        for agent in self.agents:
            agent.spawn()
        while not self.stopping:
            now = time.time()
            for agent in self.agents:
                agent.tick(now)
            time.sleep(0.05)
        self.shutdown()
        return 0

    def shutdown(self) -> None:
        stopping = [(a, p) for a in self.agents if (p := a.stop()) is not None]
        deadline = time.monotonic() + STOP_GRACE_S
        for agent, proc in stopping:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"agent {agent.name} (pid {proc.pid}) ignored SIGTERM: killing it", flush=True)
                _signal_group(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=2)
        for agent in self.agents:
            agent.sock.close()
        with self.registry.edit() as data:
            entry = data["notebooks"].get(str(self.notebook))
            if entry is not None and entry.get("supervisor_pid") == os.getpid():
                data["notebooks"].pop(str(self.notebook), None)
        print(f"supervisor {os.getpid()} stopped", flush=True)


def _daemonize(log: Path) -> None:
    """Fork: the parent prints the child's pid and exits; the child leaves the caller's session."""
    pid = os.fork()
    if pid > 0:
        print(pid, flush=True)
        os._exit(0)
    os.setsid()
    log.parent.mkdir(parents=True, exist_ok=True)
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    os.close(null)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {SUPERVISOR_MODULE}")
    parser.add_argument("--notebook", required=True)
    parser.add_argument("--home", required=True)
    parser.add_argument("--daemon", action="store_true", help="detach (print the supervisor's pid)")
    args = parser.parse_args(argv)
    notebook, home = Path(args.notebook), Path(args.home)
    entry = Registry(home).notebook(str(notebook)) or {}
    if args.daemon:
        _daemonize(Path(entry.get("log") or agents_folder(home, notebook.stem) / "supervisor.log"))
    return Supervisor(notebook, home).run()


if __name__ == "__main__":
    sys.exit(main())
