"""The agents' supervisor process: `python -m scanflow_jupyter.agents.daemon --notebook NB --home H`.

One per notebook, started detached by `agents.control.up`. It keeps each agent of the notebook
running (`agents.service --fd`) with the shared machinery of `scanflow_jupyter.supervision`:
a socket per agent kept across restarts, restarts with backoff, states published into
`agents.json`. An agent refused while loading (exit 3, boot file `refused`) is not restarted;
one that crashes before it was ever ready is reported `failed` (and restarted).
"""

from __future__ import annotations

import sys
from pathlib import Path

from scanflow_jupyter import supervision
from scanflow_jupyter.agents.control import DAEMON_MODULE, SERVICE_MODULE, agents_folder
from scanflow_jupyter.agents.registry import Registry

__all__ = ["AgentsDaemon", "main"]


class AgentsDaemon(supervision.Daemon):
    """Keeps the agents of one notebook running (one process per notebook)."""

    kind = "agent"
    section = "agents"
    title = "supervisor"
    child_module = SERVICE_MODULE
    given_up = "refused"
    fail_unready = True

    def __init__(self, notebook: Path, home: Path) -> None:
        super().__init__(notebook, home, Registry(home))
        self.app = self.entry.get("app") or notebook.stem
        folder = agents_folder(home, self.app)
        self.children = [supervision.Child(self, name, folder / name, Path(a.get("log") or folder / f"{name}.log"))
                         for name, a in (self.entry.get("agents") or {}).items() if a.get("state") != "refused"]


def main(argv: list[str] | None = None) -> int:
    args = supervision.daemon_args(DAEMON_MODULE, argv)
    notebook, home = Path(args.notebook), Path(args.home)
    entry = Registry(home).notebook(str(notebook)) or {}
    if args.daemon:
        supervision.daemonize(Path(entry.get("log") or agents_folder(home, notebook.stem) / "supervisor.log"))
    return AgentsDaemon(notebook, home).run()


if __name__ == "__main__":
    sys.exit(main())
