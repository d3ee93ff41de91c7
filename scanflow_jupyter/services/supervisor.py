"""`scanflow services up|down|ls`: a notebook's services as background processes, restarted on crash.

Like the agents' supervisor (`agents.supervisor`): `up` writes each service's spec and starts
one detached supervisor per notebook. The supervisor binds a listening socket per service on
127.0.0.1 (a free port, or `--port`) and keeps it for the service's whole life, so the port
never changes and a request sent during a restart waits in the backlog. A crashed service
restarts with backoff (0.25 s … 30 s); a service whose cell or model cannot be loaded (exit 3)
is `failed` and not restarted. Services stop by themselves if their supervisor disappears.

Files under the Scanflow home: `services.json` (mode 0600; per notebook: app, supervisor pid,
per service port, url, pid, state, restarts, log) and per service `services/NAME/` with
`spec.json`, `boot.json`, `service.log` and the inference log `inference/`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from scanflow_jupyter.agents.registry import Registry, pid_alive
from scanflow_jupyter.agents.state import atomic_write_json
from scanflow_jupyter.agents.supervisor import (
    BACKOFF_S,
    STABLE_AFTER_S,
    STOP_GRACE_S,
    _daemonize,
    _signal_group,
    _wait_gone,
)
from scanflow_jupyter.services.server import EXIT_FAILED, listen, services_folder
from scanflow_jupyter.services.spec import service_specs

__all__ = ["ServiceRow", "ServicesRegistry", "down", "ls", "up"]

SUPERVISOR_MODULE = "scanflow_jupyter.services.supervisor"
SERVER_MODULE = "scanflow_jupyter.services.server"
SETTLED = ("running", "failed")


class ServicesRegistry(Registry):
    """`<home>/services.json`: the agents' registry format with `services` in place of `agents`."""

    def __init__(self, home: Path) -> None:
        super().__init__(home)
        self.path = self.home / "services.json"
        self.lock_path = self.home / "services.json.lock"


@dataclass
class ServiceRow:
    """One service as `ls` / `up` show it."""

    app: str
    name: str
    notebook: str
    state: str
    kind: str = "custom"
    model: str | None = None
    version: str | None = None
    port: int | None = None
    pid: int | None = None
    url: str | None = None
    restarts: int = 0
    log: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _home(home: Path | str | None) -> Path:
    from scanflow_jupyter.tracking import scanflow_home

    return Path(home).absolute() if home is not None else scanflow_home()


def up(notebook: str | Path, names: list[str] | None = None, *, home: Path | str | None = None,
       port: int | None = None, timeout: float = 120.0, options: dict[str, Any] | None = None,
       env: dict[str, str] | None = None) -> list[ServiceRow]:
    """Start (or restart) the services of `notebook` and wait until each runs or failed.
    Raises NotebookReadError / ServiceSpecError for a bad notebook or name, ValueError for `port`
    with several services."""
    from scanflow_jupyter.tracking import resolve_tracking_uri

    home_dir = _home(home)
    nb = Path(notebook).expanduser().resolve()
    specs = service_specs(nb, names)
    if port is not None and len(specs) > 1:
        raise ValueError(f"--port needs one service, and {nb.name} has {len(specs)}: name one "
                         f"(`scanflow services up {nb.name} NAME --port {port}`).")
    down(nb, home=home_dir)
    child_env = dict(os.environ if env is None else env)
    child_env["SCANFLOW_HOME"] = str(home_dir)
    child_env["MLFLOW_TRACKING_URI"] = child_env.get("MLFLOW_TRACKING_URI") or resolve_tracking_uri(home_dir)
    child_env["PYTHONUNBUFFERED"] = "1"
    services: dict[str, Any] = {}
    for spec in specs:
        folder = services_folder(home_dir, spec.name)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write_json(folder / "spec.json", {**spec.to_dict(), "options": options or {}}, private=True)
        with contextlib.suppress(FileNotFoundError):
            (folder / "boot.json").unlink()
        services[spec.name] = {"kind": spec.kind, "model": spec.model, "state": "starting", "restarts": 0,
                               "log": str(folder / "service.log"), "port": port}
    registry = ServicesRegistry(home_dir)
    with registry.edit() as data:
        data["notebooks"][str(nb)] = {"app": specs[0].app, "supervisor_pid": None, "started_at": time.time(),
                                      "log": str(home_dir / "services" / f"supervisor-{specs[0].app}.log"),
                                      "services": services}
    proc = subprocess.run([sys.executable, "-m", SUPERVISOR_MODULE, "--notebook", str(nb), "--home", str(home_dir),
                           "--daemon"], env=child_env, cwd=nb.parent, capture_output=True, text=True, timeout=60,
                          check=False)
    try:
        pid = int(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RuntimeError(f"the services supervisor did not start (exit {proc.returncode}): "
                           f"{proc.stderr.strip()[-2000:]}") from None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = registry.notebook(str(nb)) or {}
        if all(s.get("state") in SETTLED for s in (entry.get("services") or {}).values()):
            break
        if not pid_alive(pid, SUPERVISOR_MODULE):
            break
        time.sleep(0.05)
    return ls(home=home_dir, notebook=str(nb))


def down(notebook: str | Path | None = None, *, home: Path | str | None = None, timeout: float = 15.0) -> list[str]:
    """Stop the services of `notebook` (of every notebook if None); returns `app/name` of each."""
    registry = ServicesRegistry(_home(home))
    wanted = str(Path(notebook).expanduser().resolve()) if notebook is not None else None
    entries = {nb: e for nb, e in registry.read()["notebooks"].items() if wanted is None or nb == wanted}
    stopped: list[str] = []
    supervisors, children = [], []
    for entry in entries.values():
        spid = entry.get("supervisor_pid")
        if pid_alive(spid, SUPERVISOR_MODULE):
            os.kill(spid, signal.SIGTERM)
            supervisors.append((spid, SUPERVISOR_MODULE))
        for name, svc in (entry.get("services") or {}).items():
            stopped.append(f"{entry.get('app')}/{name}")
            if svc.get("pid"):
                children.append((int(svc["pid"]), SERVER_MODULE))
    for pid, _ in _wait_gone(supervisors, timeout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    left = [(p, m) for p, m in children if pid_alive(p, m)]
    for pid, _ in left:
        _signal_group(pid, signal.SIGTERM)
    for pid, _ in _wait_gone(left, STOP_GRACE_S):
        _signal_group(pid, signal.SIGKILL)
    if entries:
        with registry.edit() as data:
            for nb in entries:
                data["notebooks"].pop(nb, None)
    return stopped


def fetch_metadata(url: str, timeout: float = 1.0) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/metadata", timeout=timeout) as resp:  # noqa: S310 - ours
            return json.loads(resp.read().decode("utf-8"))
    except (urllib.error.URLError, OSError, ValueError):
        return None


def ls(*, home: Path | str | None = None, notebook: str | None = None, fetch: bool = True) -> list[ServiceRow]:
    """Every service in the registry (of one notebook if given), with the version it serves now."""
    registry = ServicesRegistry(_home(home))
    rows: list[ServiceRow] = []
    for nb, entry in registry.read()["notebooks"].items():
        if notebook is not None and nb != notebook:
            continue
        supervised = pid_alive(entry.get("supervisor_pid"), SUPERVISOR_MODULE)
        for name, svc in (entry.get("services") or {}).items():
            state = svc.get("state", "?")
            state = state if supervised or state == "failed" else "stopped"
            rows.append(ServiceRow(app=entry.get("app", "?"), name=name, notebook=nb, state=state,
                                   kind=svc.get("kind", "custom"), model=svc.get("model"), version=svc.get("version"),
                                   port=svc.get("port"), pid=svc.get("pid") if supervised else None,
                                   url=svc.get("url"), restarts=int(svc.get("restarts") or 0), log=svc.get("log"),
                                   error=svc.get("message")))
    live = [r for r in rows if r.state == "running" and r.url] if fetch else []
    if live:
        with ThreadPoolExecutor(max_workers=min(8, len(live))) as pool:
            for row, meta in zip(live, pool.map(lambda r: fetch_metadata(r.url), live), strict=True):
                if meta is None:
                    row.error = row.error or "does not answer /metadata"
                else:
                    row.version = meta.get("version")
                    row.error = meta.get("poll_error") or row.error
    return rows


# -- the supervisor process -------------------------------------------------------------------


class _Managed:
    """One supervised service: its socket (kept across restarts), process and restart bookkeeping."""

    def __init__(self, sup: Supervisor, name: str, fields: dict[str, Any]) -> None:
        self.sup, self.name = sup, name
        self.dir = services_folder(sup.home, name)
        self.log = Path(fields.get("log") or self.dir / "service.log")
        self.sock = listen("127.0.0.1", int(fields.get("port") or 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.state = "starting"
        self.started_at = self.restart_at = 0.0
        self.restarts = self.crashes = 0

    def spawn(self) -> None:
        boot = self.dir / "boot.json"
        with contextlib.suppress(FileNotFoundError):
            boot.unlink()
        with open(self.log, "ab") as log:
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting service {self.name} on {self.url}"
                      f" (start {self.restarts + 1}) ---\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", SERVER_MODULE, "--spec", str(self.dir / "spec.json"), "--fd",
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
        if self.state == "failed":
            return
        if self.proc is not None and self.proc.poll() is not None:
            code, boot, self.proc = self.proc.returncode, self._boot(), None
            if code == EXIT_FAILED and boot.get("state") == "failed":
                self.state = "failed"
                self.sup.publish(self.name, state="failed", pid=None, message=boot.get("message"))
                return
            self.crashes = 1 if now - self.started_at >= STABLE_AFTER_S else self.crashes + 1
            delay = BACKOFF_S[min(self.crashes, len(BACKOFF_S)) - 1]
            self.restart_at = now + delay
            how = f"signal {-code}" if code < 0 else f"exit code {code}"
            self.state = "restarting"
            self.sup.publish(self.name, state="restarting", pid=None, last_exit=how, last_exit_at=now)
            with contextlib.suppress(OSError), open(self.log, "ab") as log:
                log.write(f"--- service {self.name} exited ({how}); restarting in {delay:g} s ---\n".encode())
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
                self.sup.publish(self.name, state="running", ready_at=now, version=boot.get("version"))

    def stop(self) -> subprocess.Popen[bytes] | None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            return proc
        return None


class Supervisor:
    """Keeps the services of one notebook running."""

    def __init__(self, notebook: Path, home: Path) -> None:
        self.notebook, self.home = notebook, home
        self.registry = ServicesRegistry(home)
        entry = self.registry.notebook(str(notebook)) or {}
        self.stopping = False
        self.services = [_Managed(self, name, fields) for name, fields in (entry.get("services") or {}).items()]

    def publish(self, name: str, **fields: Any) -> None:
        with self.registry.edit() as data:
            entry = data["notebooks"].get(str(self.notebook))
            if entry is None or entry.get("supervisor_pid") not in (None, os.getpid()):
                return  # replaced by a newer `up`
            entry["supervisor_pid"] = os.getpid()
            entry.setdefault("services", {}).setdefault(name, {}).update(fields)

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda *_: setattr(self, "stopping", True))
        with self.registry.edit() as data:
            entry = data["notebooks"].get(str(self.notebook))
            if entry is not None:
                entry["supervisor_pid"] = os.getpid()
        print(f"services supervisor {os.getpid()} for {self.notebook}: {', '.join(s.name for s in self.services)}",
              flush=True)
        for svc in self.services:
            svc.spawn()
        while not self.stopping:
            now = time.time()
            for svc in self.services:
                svc.tick(now)
            time.sleep(0.05)
        stopping = [(s, p) for s in self.services if (p := s.stop()) is not None]
        deadline = time.monotonic() + STOP_GRACE_S
        for _svc, proc in stopping:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=2)
        for svc in self.services:
            svc.sock.close()
        with self.registry.edit() as data:
            entry = data["notebooks"].get(str(self.notebook))
            if entry is not None and entry.get("supervisor_pid") == os.getpid():
                data["notebooks"].pop(str(self.notebook), None)
        print(f"services supervisor {os.getpid()} stopped", flush=True)
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {SUPERVISOR_MODULE}")
    parser.add_argument("--notebook", required=True)
    parser.add_argument("--home", required=True)
    parser.add_argument("--daemon", action="store_true", help="detach (print the supervisor's pid)")
    args = parser.parse_args(argv)
    notebook, home = Path(args.notebook), Path(args.home)
    entry = ServicesRegistry(home).notebook(str(notebook)) or {}
    if args.daemon:
        _daemonize(Path(entry.get("log") or home / "services" / "supervisor.log"))
    try:
        supervisor = Supervisor(notebook, home)
    except OSError as exc:  # a taken --port
        print(f"services supervisor: cannot listen: {exc}", flush=True)
        with ServicesRegistry(home).edit() as data:
            for svc in ((data["notebooks"].get(str(notebook)) or {}).get("services") or {}).values():
                svc.update(state="failed", message=f"cannot listen on port {svc.get('port')}: {exc.strerror}")
        return 1
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
