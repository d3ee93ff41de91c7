"""Measurements that must run in a fresh Python process; each prints one JSON line.

    python -m tests.benchmarks.worker scanflow-run NOTEBOOK [--no-cache] [--max-parallel N] [--repeat N]
    python -m tests.benchmarks.worker scanflow-dump FOLDER NBYTES
    python -m tests.benchmarks.worker scanflow-load FOLDER
    python -m tests.benchmarks.worker numpy-save PATH NBYTES
    python -m tests.benchmarks.worker numpy-load PATH

Only the operation itself is timed (time.perf_counter inside the process); the imports it
needs are done first, as the long-lived baseline process has them too.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def _array(nbytes: int) -> Any:
    import numpy as np

    return np.arange(max(1, nbytes // 8), dtype=np.float64)


def scanflow_run(notebook: str, no_cache: bool, max_parallel: int | None, repeat: int = 1) -> dict[str, Any]:
    """Time run_notebook; with `repeat` > 1, call it that many times in this one process."""
    runs = [_one_run(notebook, no_cache, max_parallel) for _ in range(max(1, repeat))]
    return {**runs[0], "runs": runs}


def _one_run(notebook: str, no_cache: bool, max_parallel: int | None) -> dict[str, Any]:
    from scanflow_jupyter.runtime.runner import run_notebook

    marks: dict[str, float] = {}
    ends = ("step_succeeded", "step_failed", "step_cached", "step_skipped", "step_killed")

    def on_event(event: Any) -> None:
        now = time.perf_counter() - start
        if event.type == "step_started":
            marks.setdefault("first_step_started_s", now)
        elif event.type in ends:
            marks["last_step_ended_s"] = now

    start = time.perf_counter()
    result = run_notebook(notebook, no_cache=no_cache, max_parallel=max_parallel, on_event=on_event)
    seconds = time.perf_counter() - start
    # after the last step ended, the run still waits for MLflow recording and kernel clean-up
    marks["after_last_step_s"] = seconds - marks.get("last_step_ended_s", seconds)
    return {"seconds": seconds, "status": result.status, "timeline": marks,
            "steps": {name: s.to_dict() for name, s in result.steps.items()}}


def scanflow_dump(folder: str, nbytes: int) -> dict[str, Any]:
    from scanflow_jupyter.data.serializers import dump_value

    arr = _array(nbytes)
    start = time.perf_counter()
    record = dump_value("arr", arr, Path(folder))
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "record": record.to_dict()}


def scanflow_load(folder: str) -> dict[str, Any]:
    import numpy as np  # noqa: F401 - the step kernel has numpy loaded by the time it loads

    from scanflow_jupyter.data.serializers import load_value, read_record

    start = time.perf_counter()
    arr = load_value(Path(folder), read_record(Path(folder), "arr"))
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "nbytes": int(arr.nbytes), "last": float(arr[-1])}


def numpy_save(path: str, nbytes: int) -> dict[str, Any]:
    import numpy as np

    arr = _array(nbytes)
    start = time.perf_counter()
    np.save(path, arr)
    seconds = time.perf_counter() - start
    return {"seconds": seconds}


def numpy_load(path: str) -> dict[str, Any]:
    import numpy as np

    start = time.perf_counter()
    arr = np.load(path)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "nbytes": int(arr.nbytes), "last": float(arr[-1])}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.worker")
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("scanflow-run")
    run.add_argument("notebook")
    run.add_argument("--no-cache", action="store_true")
    run.add_argument("--max-parallel", type=int, default=None)
    run.add_argument("--repeat", type=int, default=1)
    for name in ("scanflow-dump", "numpy-save"):
        p = sub.add_parser(name)
        p.add_argument("path")
        p.add_argument("nbytes", type=int)
    for name in ("scanflow-load", "numpy-load"):
        sub.add_parser(name).add_argument("path")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "scanflow-run":
            out = scanflow_run(args.notebook, args.no_cache, args.max_parallel, args.repeat)
        elif args.cmd == "scanflow-dump":
            out = scanflow_dump(args.path, args.nbytes)
        elif args.cmd == "numpy-save":
            out = numpy_save(args.path, args.nbytes)
        elif args.cmd == "scanflow-load":
            out = scanflow_load(args.path)
        else:
            out = numpy_load(args.path)
    except Exception as exc:  # noqa: BLE001 - reported to the parent as JSON
        out = {"error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
