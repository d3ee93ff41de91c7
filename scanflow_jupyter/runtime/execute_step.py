"""Execute one step notebook inside a step container (the entry point of every step image).

    python -m scanflow_jupyter.runtime.execute_step --notebook IN.ipynb --output OUT.ipynb [--log LOG]

Runs the notebook in a fresh ipykernel (IPC transport: no TCP ports, even with the host's
network), saves the output notebook after every cell (a crash leaves what ran so far), adds
papermill's error banner on failure, and reports progress on stdout as one JSON line per event,
prefixed with `child_protocol.EVENT_PREFIX`: ``{"t": "cell", ...}`` after each cell, ``{"t": "outcome", ...}``
at the end. Exit code: 0 succeeded, 1 the step failed, 2 the executor itself failed.
The docker backend turns those lines into runner events; anything else on stdout/stderr is log.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from scanflow_jupyter.runtime.child_protocol import event_line
from scanflow_jupyter.runtime.figures import INLINE_BACKEND

STARTUP_TIMEOUT = 120.0


def _event(kind: str, **data: Any) -> None:
    sys.stdout.write(event_line(kind, **data))
    sys.stdout.flush()


def _write_atomic(path: Path, nb: dict[str, Any]) -> None:
    from scanflow_jupyter.data.files import atomic_write_bytes

    atomic_write_bytes(path, (json.dumps(nb, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))


def _stream_text(outputs: list[Any]) -> str:
    parts = []
    for out in outputs:
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif out.get("output_type") == "error":
            parts.append(f"{out.get('ename')}: {out.get('evalue')}\n")
    return "".join(parts)


def _source_cell(cell: Any) -> int | None:
    return (cell.get("metadata") or {}).get("scanflow", {}).get("source_cell")


def failure(nb: Any, output_path: Path, exc: BaseException) -> dict[str, Any]:
    """The error of a failed notebook, mapped to the user's cell; writes papermill's banner."""
    failing = None
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                failing = (cell, out)
                break
        if failing:
            break
    try:
        from papermill.exceptions import PapermillExecutionError
        from papermill.execute import raise_for_execution_errors

        try:
            raise_for_execution_errors(nb, str(output_path))
        except PapermillExecutionError:
            pass  # expected: the output notebook now carries the banner
        else:
            _write_atomic(output_path, nb)
    except ImportError:  # an image without papermill: keep the notebook as it ran
        _write_atomic(output_path, nb)
    if failing is None:
        return {"cell": None, "ename": type(exc).__name__, "evalue": str(exc), "traceback": []}
    cell, out = failing
    return {
        "cell": _source_cell(cell),
        "role": cell.metadata.get("scanflow", {}).get("role"),
        "ename": out.get("ename"),
        "evalue": out.get("evalue"),
        "traceback": list(out.get("traceback", [])),
    }


async def start_kernel(cwd: str) -> tuple[Any, Any]:
    """A fresh ipykernel (IPC transport) in `cwd` with the step's environment: (manager, ready client)."""
    from jupyter_client.manager import AsyncKernelManager

    from scanflow_jupyter.runtime.kernel_ready import wait_for_ready

    env = dict(os.environ)
    env["MPLBACKEND"] = INLINE_BACKEND  # figures and HTML reach output.ipynb, as in JupyterLab
    env["SCANFLOW_STEP"] = "1"
    sockets = tempfile.mkdtemp(prefix="scanflow-kernel-")
    km = AsyncKernelManager(kernel_name="python3", transport="ipc", ip=os.path.join(sockets, "k"))
    await km.start_kernel(cwd=cwd, env=env)
    kc = km.client()
    kc.start_channels()
    kc.allow_stdin = False
    try:
        await wait_for_ready(kc, STARTUP_TIMEOUT)
    except BaseException:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)
        raise
    return km, kc


async def execute(notebook: Path, output: Path, log_path: Path | None, cwd: str, attempt: int,
                  kernel: tuple[Any, Any] | None = None, shutdown: bool = True) -> dict[str, Any]:
    """Run the notebook; return the outcome {"status", "error"}.

    `kernel`: a (manager, client) pair from `start_kernel` (the warm launcher's), else a new one;
    `shutdown=False` leaves it running (the caller's process exits right after, and the kernel with it).
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, DeadKernelError

    nb = nbformat.reads(notebook.read_text(encoding="utf-8"), as_version=4)
    log = log_path.open("a", encoding="utf-8") if log_path else None
    if log:
        log.write(f"--- attempt {attempt} ({time.strftime('%Y-%m-%d %H:%M:%S')}, container) ---\n")
        log.flush()

    from scanflow_jupyter.redact import process_secrets, redact_json, redact_outputs

    secrets = process_secrets()  # what the container got as environment never lands in a file

    def cell_done(cell: Any, cell_index: int, **_: Any) -> None:
        redact_outputs(cell, secrets)
        text = _stream_text(cell.get("outputs", []))
        if text and log:
            log.write(text)
            log.flush()
        _write_atomic(output, nb)
        _event("cell", index=cell_index, cell=_source_cell(cell),
               role=cell.metadata.get("scanflow", {}).get("role"), text=text)

    try:
        km, kc = kernel if kernel is not None else await start_kernel(cwd)
    except BaseException:
        if log:
            log.close()
        raise
    try:
        client = NotebookClient(nb, km=km, timeout=None, allow_errors=False, record_timing=True,
                                shutdown_kernel="immediate", resources={"metadata": {"path": cwd}},
                                on_cell_executed=cell_done)
        client.kc = kc
        try:
            for index, cell in enumerate(nb.cells):
                await client.async_execute_cell(cell, index)
        except CellExecutionError as exc:
            return {"status": "failed", "error": redact_json(failure(nb, output, exc), secrets)}
        except DeadKernelError:
            _write_atomic(output, nb)
            return {"status": "failed", "error": {
                "cell": None, "ename": "DeadKernelError",
                "evalue": "the step's kernel died (killed by a signal, or out of memory: see --memory).",
                "traceback": []}}
        _write_atomic(output, nb)
        return {"status": "succeeded", "error": None}
    finally:
        if log:
            log.close()
        if shutdown:
            kc.stop_channels()
            try:
                await km.shutdown_kernel(now=True)
            except Exception:  # noqa: BLE001 - already gone
                pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scanflow_jupyter.runtime.execute_step",
                                     description="Execute a Scanflow step notebook in a fresh kernel.")
    parser.add_argument("--notebook", required=True, help="the step notebook (parameters injected)")
    parser.add_argument("--output", help="where to save the executed notebook (default: output.ipynb beside it)")
    parser.add_argument("--log", help="append the step's printed output to this file")
    parser.add_argument("--cwd", default=None, help="the kernel's working folder (default: the current one)")
    parser.add_argument("--attempt", type=int, default=1)
    args = parser.parse_args(argv)
    notebook = Path(args.notebook)
    output = Path(args.output) if args.output else notebook.with_name("output.ipynb")
    try:
        outcome = asyncio.run(execute(notebook, output, Path(args.log) if args.log else None,
                                      args.cwd or os.getcwd(), args.attempt))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - report the executor's own failure as an outcome
        from scanflow_jupyter.redact import process_secrets, redact_text

        evalue = redact_text(f"the step executor failed: {exc}", process_secrets())
        _event("outcome", status="failed", error={"cell": None, "ename": type(exc).__name__,
                                                  "evalue": evalue, "traceback": []})
        return 2
    _event("outcome", **outcome)
    return 0 if outcome["status"] == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
