"""The baselines every user has: papermill's Python API, one process, one notebook after another."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tests.benchmarks.util import BenchError

# Kernels inherit this process's stderr; their start-up warnings go here instead of the table.
KERNEL_LOG: Path | None = None


@contextlib.contextmanager
def _kernel_stderr() -> Iterator[None]:
    if KERNEL_LOG is None:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    fd = os.open(KERNEL_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
    os.close(fd)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _execute(src: Path, dst: Path, parameters: dict | None = None) -> float:
    """papermill.execute_notebook with its defaults (progress bar off); returns seconds."""
    import papermill as pm

    start = time.perf_counter()
    with _kernel_stderr():
        pm.execute_notebook(str(src), str(dst), parameters=parameters or {}, progress_bar=False,
                            log_output=False)
    return time.perf_counter() - start


def chain(notebooks: list[Path], work: Path) -> list[float]:
    """Run the chain notebooks one after another, passing x through a small JSON file.

    Returns the seconds of each notebook.
    """
    work.mkdir(parents=True, exist_ok=True)
    x, each = 0, []
    for i, nb in enumerate(notebooks):
        out = work / f"x{i}.json"
        each.append(_execute(nb, work / f"out{i}.ipynb", {"x": x, "out": str(out)}))
        x = json.loads(out.read_text(encoding="utf-8"))
    if x != len(notebooks):
        raise BenchError(f"papermill chain ended with x={x}, expected {len(notebooks)}")
    return each


def sequential(notebooks: list[Path], work: Path) -> list[float]:
    work.mkdir(parents=True, exist_ok=True)
    return [_execute(nb, work / f"out{i}.ipynb") for i, nb in enumerate(notebooks)]


def single(notebook: Path, work: Path) -> float:
    work.mkdir(parents=True, exist_ok=True)
    return _execute(notebook, work / "out.ipynb")
