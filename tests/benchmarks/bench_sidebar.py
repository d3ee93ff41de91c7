"""Sidebar Run → first step badge running, on the tutorial, measured in Chromium by Playwright.

Runs labextension/ui-tests/bench/first_badge.bench.ts (playwright.bench.config.js: the Galata server
and Debian's Chromium) on its own port; baseline = the same JupyterLab opening the notebook. A
benchmark, not a test: without Chromium, Galata's node modules or the built extension the row is
skipped with what to do.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.benchmarks.results import Row
from tests.benchmarks.util import BenchError, median

REPO = Path(__file__).resolve().parents[2]
UI = REPO / "labextension" / "ui-tests"
CHROMIUM = Path(os.environ.get("SCANFLOW_CHROMIUM", "/usr/bin/chromium"))
PORT = os.environ.get("SCANFLOW_BENCH_GALATA_PORT", "8898")  # not Galata's 8897: tests may run beside


def missing() -> str | None:
    """Why the row cannot run here (None: it can)."""
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set SCANFLOW_CHROMIUM)"
    if not (UI / "node_modules" / ".bin" / "playwright").exists():
        return f"no Galata node modules in {UI} (make setup-test)"
    if not (REPO / "scanflow_jupyter" / "labextension" / "package.json").exists():
        return "the lab extension is not built (make js)"
    return None


def sidebar(root: Path, reps: int, progress=print) -> list[Row]:  # noqa: ANN001 - run_all's progress printer
    why = missing()
    if why:
        progress(f"sidebar_run_first_badge skipped: {why}")
        return []
    out = root / "first-badge.json"
    env = {**os.environ, "SCANFLOW_BENCH_OUT": str(out), "SCANFLOW_BENCH_REPS": str(reps), "SCANFLOW_GALATA_PORT": PORT}
    proc = subprocess.run([str(UI / "node_modules" / ".bin" / "playwright"), "test", "-c", "playwright.bench.config.js"],
                          cwd=UI, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0 or not out.exists():
        raise BenchError(f"the Playwright benchmark failed (exit {proc.returncode}): {proc.stdout[-2000:]} {proc.stderr[-1000:]}")
    doc = json.loads(out.read_text(encoding="utf-8"))
    first = [ms / 1000 for ms in doc["first_badge_ms"]]
    opened = [ms / 1000 for ms in doc["open_ms"]]
    first_m, open_m = median(first), median(opened)
    stages = [st for st in doc.get("stages_ms", []) if st]
    where = "; ".join(f"{k} {median([st[k] / 1000 for st in stages]):.2f} s" for k in (stages[0] if stages else {}))
    return [Row("sidebar_run_first_badge", "sidebar Run → first step badge running (tutorial, in Chromium)",
                first_m, open_m, "open the notebook", first_m / open_m, "fraction", None,
                [f"median of {reps}; goal ≤ 1 s absolute (issue #14); measured in the page: Run click → a "
                 f"MutationObserver sees the first badge leave idle (statuses seen: {doc['first_status']}); "
                 "baseline = the same JupyterLab opening the notebook until its first cell is visible",
                 f"medians of the stages (page clock vs the run's events.jsonl): {where or 'not found'}"],
                {"first_badge_s": first, "open_notebook_s": opened, "stages_ms": stages})]
