"""Benchmark: `scanflow inspect` of a 1000-step chain vs the same command on a 10-step chain.

Validation must be linear in the number of steps (#14): the goal is ≤ 3× the 10-step time.
Both the `--json` document and the text view (a boxed table in plain lines, cli/inspect_view.py) are timed, each in fresh processes,
interleaved; the 2000-step chain is measured once as a check that growth stays linear.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from tests.benchmarks import notebooks
from tests.benchmarks.results import Row
from tests.benchmarks.util import PYTHON, BenchError, clean_env, median

SCANFLOW = [PYTHON, "-m", "scanflow_jupyter.cli"]


def _inspect(nb: Path, *extra: str) -> float:
    start = time.perf_counter()
    proc = subprocess.run([*SCANFLOW, "inspect", *extra, nb.name], cwd=nb.parent, env=clean_env(),
                          capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise BenchError(f"scanflow inspect {nb.name} exited {proc.returncode}: {proc.stderr[-1500:]}")
    return seconds


def inspect(root: Path, reps: int) -> list[Row]:
    folder = root / "inspect"
    small, large, huge = (notebooks.scanflow_chain(folder / f"chain{n}.ipynb", n) for n in (10, 1000, 2000))
    rows = []
    for mode, extra in (("json", ("--json",)), ("text", ())):
        _inspect(small, *extra)  # warm the file cache and the .pyc files, untimed
        s10, s1000 = [], []
        for _ in range(reps):  # interleaved
            s10.append(_inspect(small, *extra))
            s1000.append(_inspect(large, *extra))
        s2000 = _inspect(huge, *extra)
        a, b = median(s1000), median(s10)
        notes = [f"median of {reps} fresh processes each; 2000 steps once: {s2000:.2f} s "
                 f"({s2000 / a:.1f}× the 1000-step time; linear is 2×)"]
        if mode == "text":
            notes.append("the text view writes the table as plain fixed-width lines (cli/inspect_view.py), not a rich Table")
        rows.append(Row(f"inspect_1000_{mode}", f"`scanflow inspect{' --json' if extra else ''}`, 1000-step chain vs 10 steps",
                        a, b, "10-step chain", a / b, "fraction", 3.0, notes,
                        {"steps_10_s": s10, "steps_1000_s": s1000, "steps_2000_s": [s2000]}))
    return rows
