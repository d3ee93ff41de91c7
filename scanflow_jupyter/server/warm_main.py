"""The warm worker process: `python -m scanflow_jupyter.server.warm_main` (started by the server).

It imports what `scanflow run` needs (the runner, the local backend, nbclient) and starts the
kernel zygote ahead of time, then waits for ONE request on stdin — a JSON line
`{"argv": ["run", NB, "--json", ...], "env": {...}, "cwd": "..."}` — and becomes that
`scanflow ARGV` process: same environment, folder, stdout/stderr, exit code and signals as
`python -m scanflow_jupyter.cli ARGV`. The notebook is read only then. While it waits it dies
with the server (PR_SET_PDEATHSIG); once it runs, it outlives the server like any run.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
PRELOAD = (
    "scanflow_jupyter.cli",
    "scanflow_jupyter.cli.pipeline",
    "scanflow_jupyter.cli.view",
    "scanflow_jupyter.runtime.runner",
    "scanflow_jupyter.runtime.local",
    "scanflow_jupyter.runtime.run_subscribers",
    "scanflow_jupyter.runtime.scheduler",
    "scanflow_jupyter.runtime.recorder_process",
    "scanflow_jupyter.runtime.cache",
    "scanflow_jupyter.notebook.compile",
    "scanflow_jupyter.tracking_sync",
    "scanflow_jupyter.tracking_store",
    "nbclient",
    "nbformat",
    "jupyter_client",
    "rich.console",
    "rich.live",
)


def _death_signal(signum: int) -> None:
    """Die with signal `signum` when the parent (the server) dies; 0 = no longer."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signum)
    except OSError:  # not Linux: the server's shutdown hook still stops an idle worker
        pass


def warm_up() -> None:
    """Import the run's modules and start the kernel zygote (from this, the run's main thread:
    its kernels die with this process)."""
    for name in PRELOAD:
        try:
            __import__(name)
        except ImportError as exc:  # the run then imports (and reports) it itself
            print(f"scanflow warm worker: cannot preload {name}: {exc}", file=sys.stderr)
    from scanflow_jupyter.runtime.fork_provisioner import start_shared_zygote

    start_shared_zygote()  # none in portable mode / with SCANFLOW_NO_ZYGOTE=1 (the runner starts none either)


def read_request() -> dict:
    """The one request (stdin closed without one: exit 0, the server stopped the worker)."""
    line = sys.stdin.readline()
    if not line.strip():
        raise SystemExit(0)
    request = json.loads(line)
    devnull = os.open(os.devnull, os.O_RDONLY)  # as the cold runner: stdin = /dev/null
    os.dup2(devnull, 0)
    os.close(devnull)
    return request


def main() -> None:
    _death_signal(signal.SIGKILL)
    warm_up()
    request = read_request()
    _death_signal(0)  # a run outlives the server, as a `scanflow run` child does
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    argv = [str(a) for a in request["argv"]]
    sys.argv = ["scanflow", *argv]
    from scanflow_jupyter.cli import main as cli_main

    cli_main(args=argv, prog_name="scanflow")


if __name__ == "__main__":
    main()
