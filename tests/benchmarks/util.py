"""Small helpers shared by the benchmarks: timing, medians, subprocesses, fresh stores."""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
# A user's MLFLOW_TRACKING_URI would send every measurement to their tracking server.
_DROP_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "SCANFLOW_NO_ZYGOTE",
             "SCANFLOW_PORTABLE")  # figures are of the default (zygote) kernel start


class BenchError(RuntimeError):
    """A measurement did not do what it was meant to (a step failed, a subprocess crashed)."""


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Run `fn()`, return (seconds, result)."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROP_ENV}
    env.update(extra)
    return env


@contextlib.contextmanager
def scanflow_home(root: Path, name: str) -> Iterator[Path]:
    """A fresh SCANFLOW_HOME for one measurement set, set in this process while in use."""
    home = root / f"home-{name}"
    home.mkdir(parents=True, exist_ok=False)
    old = os.environ.get("SCANFLOW_HOME")
    os.environ["SCANFLOW_HOME"] = str(home)
    try:
        yield home
    finally:
        if old is None:
            os.environ.pop("SCANFLOW_HOME", None)
        else:
            os.environ["SCANFLOW_HOME"] = old


def run_json(args: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
             timeout: float = 300) -> dict[str, Any]:
    """Run a command that prints one JSON object as its last stdout line; return it."""
    proc = subprocess.run(args, cwd=cwd or REPO, env=env or clean_env(), capture_output=True,
                          text=True, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        raise BenchError(f"{' '.join(args)} exited {proc.returncode} without a JSON result:\n"
                         f"stdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-2000:]}") from None


def worker(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> dict[str, Any]:
    """Run `python -m tests.benchmarks.worker ARGS...` in a fresh process; return its JSON."""
    start = time.perf_counter()
    result = run_json([PYTHON, "-m", "tests.benchmarks.worker", *args], env=env, timeout=timeout)
    result["process_wall_s"] = time.perf_counter() - start
    if "error" in result:
        raise BenchError(f"worker {' '.join(args)}: {result['error']}")
    return result


def sync_disk() -> None:
    """Flush dirty pages so one measurement's write-back does not slow the next (untimed)."""
    if hasattr(os, "sync"):
        os.sync()


def cpu_busy(seconds: float = 1.0) -> float | None:
    """Fraction of all CPUs busy over the next `seconds` (Linux /proc/stat), None elsewhere."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields), idle

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    spent = total1 - total0
    return None if spent <= 0 else 1.0 - (idle1 - idle0) / spent


def temp_root() -> Path:
    return Path(tempfile.mkdtemp(prefix="scanflow-bench-"))
