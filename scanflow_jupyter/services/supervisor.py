"""`scanflow services up|down|ls`: a notebook's services as background processes, restarted on crash.

Like the agents' (`agents.control`; both run on `scanflow_jupyter.supervision`): `up` writes each service's spec and starts
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

import contextlib
import json
import os
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from scanflow_jupyter import supervision
from scanflow_jupyter.agents.state import atomic_write_json
from scanflow_jupyter.services.server import services_folder
from scanflow_jupyter.services.spec import service_specs

__all__ = ["ServiceRow", "ServicesRegistry", "down", "ls", "up"]

SUPERVISOR_MODULE = "scanflow_jupyter.services.supervisor"
SERVER_MODULE = "scanflow_jupyter.services.server"
SETTLED = ("running", "failed")


class ServicesRegistry(supervision.SupervisedRegistry):
    """`<home>/services.json`: the agents' registry format with `services` in place of `agents`."""

    def __init__(self, home: Path) -> None:
        super().__init__(home, "services.json")


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
    pid = supervision.start_daemon(SUPERVISOR_MODULE, nb, home_dir, child_env, "services supervisor")
    supervision.wait_settled(registry, str(nb), "services", SETTLED, pid, SUPERVISOR_MODULE, timeout)
    return ls(home=home_dir, notebook=str(nb))


def down(notebook: str | Path | None = None, *, home: Path | str | None = None, timeout: float = 15.0) -> list[str]:
    """Stop the services of `notebook` (of every notebook if None); returns `app/name` of each."""
    registry = ServicesRegistry(_home(home))
    wanted = str(Path(notebook).expanduser().resolve()) if notebook is not None else None
    entries, _killed = supervision.stop_notebooks(registry, wanted, section="services",
                                                  daemon_module=SUPERVISOR_MODULE, child_module=SERVER_MODULE,
                                                  timeout=timeout)
    return [f"{e.get('app')}/{name}" for e in entries.values() for name in (e.get("services") or {})]


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
        supervised = supervision.pid_alive(entry.get("supervisor_pid"), SUPERVISOR_MODULE)
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


class ServicesDaemon(supervision.Daemon):
    """Keeps the services of one notebook running; a service that cannot load (exit 3) is `failed`."""

    kind = "service"
    section = "services"
    title = "services supervisor"
    child_module = SERVER_MODULE
    given_up = "failed"
    ready_keys = ("version",)

    def __init__(self, notebook: Path, home: Path) -> None:
        super().__init__(notebook, home, ServicesRegistry(home))
        self.children = [supervision.Child(self, name, services_folder(home, name),
                                           Path(f.get("log") or services_folder(home, name) / "service.log"),
                                           int(f.get("port") or 0))
                         for name, f in (self.entry.get("services") or {}).items()]


def main(argv: list[str] | None = None) -> int:
    args = supervision.daemon_args(SUPERVISOR_MODULE, argv)
    notebook, home = Path(args.notebook), Path(args.home)
    entry = ServicesRegistry(home).notebook(str(notebook)) or {}
    if args.daemon:
        supervision.daemonize(Path(entry.get("log") or home / "services" / "supervisor.log"))
    try:
        supervisor = ServicesDaemon(notebook, home)
    except OSError as exc:  # a taken --port
        print(f"services supervisor: cannot listen: {exc}", flush=True)
        with ServicesRegistry(home).edit() as data:
            for svc in ((data["notebooks"].get(str(notebook)) or {}).get("services") or {}).values():
                svc.update(state="failed", message=f"cannot listen on port {svc.get('port')}: {exc.strerror}")
        return 1
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
