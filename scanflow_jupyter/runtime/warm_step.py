"""The launcher of a warm step container: its kernel is ready before the step is asked for.

    python -m scanflow_jupyter.runtime.warm_step --request FIFO --cwd DIR

The docker backend starts a step's container ahead of the step (see `docker_warm`). This process
opens FIFO (a named pipe the backend keeps open for writing), imports what executing a step
needs, starts the step's fresh kernel exactly as `execute_step` does, and only then reads the one
request the backend writes when the step starts: a JSON line ``{"notebook", "output", "log",
"attempt"}``. It runs that notebook in that kernel, prints the same event lines and outcome as
`execute_step`, and exits at once (the container's end takes the kernel with it). One container,
one kernel, one step attempt: nothing is reused. End of file on FIFO (the runner went away) ends
the container without running anything. Exit codes as `execute_step`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from scanflow_jupyter.runtime.execute_step import _event, execute, start_kernel


def open_request(path: str) -> int:
    """The reading end of the request pipe, in blocking mode (never blocks to open: O_NONBLOCK)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    os.set_blocking(fd, True)
    return fd


def read_request(fd: int) -> dict[str, Any] | None:
    """One JSON line from the pipe; None at end of file (no writer left)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 65536)
        if not chunk:
            return None
        data += chunk
    return json.loads(data)


PRELOAD = "__import__('scanflow_jupyter.data.step_io')"  # what the generated cells import; binds no name


async def warm_up(kernel: tuple[Any, Any]) -> None:
    """Pay the first-use costs before the step: nbformat's validator, the kernel's first execution.

    The kernel only loads the module the step's generated cells import (as the local backend's
    zygote does), silently: no name bound, no output, no history, no execution count.
    """
    import nbformat

    nbformat.reads(nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("pass")])),
                   as_version=4)
    _km, kc = kernel
    reply = await kc.execute_interactive(PRELOAD, silent=True, store_history=False, allow_stdin=False,
                                         timeout=60, output_hook=lambda msg: None)
    if reply["content"].get("status") != "ok":
        raise RuntimeError(f"the warm kernel could not import the step runtime: {reply['content'].get('evalue')}")


async def serve(fd: int, cwd: str) -> tuple[dict[str, Any] | None, int]:
    """Start the kernel, wait for the request, run it: (outcome or None without a request, exit code)."""
    kernel = await start_kernel(cwd)
    await warm_up(kernel)
    _event("warm_ready")  # the backend hands the step over from now on
    request = await asyncio.to_thread(read_request, fd)
    if request is None:
        return None, 0
    outcome = await execute(Path(request["notebook"]), Path(request["output"]),
                            Path(request["log"]) if request.get("log") else None, cwd,
                            int(request.get("attempt", 1)), kernel=kernel, shutdown=False)
    return outcome, 0 if outcome["status"] == "succeeded" else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scanflow_jupyter.runtime.warm_step",
                                     description="Start a step kernel, then run the step notebook named on FIFO.")
    parser.add_argument("--request", required=True, help="the named pipe the request arrives on")
    parser.add_argument("--cwd", required=True, help="the kernel's working folder")
    args = parser.parse_args(argv)
    fd = open_request(args.request)
    try:
        outcome, code = asyncio.run(serve(fd, args.cwd))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - reported like execute_step's own failures
        from scanflow_jupyter.redact import process_secrets, redact_text

        evalue = redact_text(f"the step executor failed: {exc}", process_secrets())
        _event("outcome", status="failed", error={"cell": None, "ename": type(exc).__name__,
                                                  "evalue": evalue, "traceback": []})
        return 2
    if outcome is not None:
        _event("outcome", **outcome)
    return code


if __name__ == "__main__":
    sys.stdout.flush()
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # no interpreter teardown, no kernel shutdown: the container ends with this process
