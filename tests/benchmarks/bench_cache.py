"""Cost of the cache check: a no-op rerun of the tutorial with a 100 MB `--deps` folder.

Two copies of the tutorial notebook in one run: as shipped, and with `--deps bigdata` (100 files
of 1 MiB each) on every executor. Each gets one full run (fills the cache and the file-digest
stat cache), one untimed no-op rerun, then `reps` timed no-op reruns of each, interleaved
(`scanflow run --json` CLI subprocesses, every step `cached`). The ratio compares the two medians of this run. An
informative row shows a rerun after the stat cache is deleted (every file hashed again).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from tests.benchmarks.bench_pipelines import _cli_run
from tests.benchmarks.results import Row
from tests.benchmarks.util import BenchError, median, scanflow_home

TUTORIAL = Path(__file__).resolve().parents[2] / "tutorials" / "mnist" / "mnist.ipynb"
DEPS_FILES, DEPS_FILE_BYTES = 100, 1 << 20


def _with_deps(src: Path, dst: Path, folder: str) -> Path:
    """A copy of the notebook whose every %%executor line also declares `--deps folder`."""
    nb = json.loads(src.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] == "code" and source.startswith("%%executor "):
            first, _, rest = source.partition("\n")
            cell["source"] = f"{first} --deps {folder}\n{rest}"
    dst.write_text(json.dumps(nb, indent=1), encoding="utf-8")
    return dst


def _all_cached(doc: dict[str, Any], what: str) -> None:
    statuses = {name: s["status"] for name, s in doc["steps"].items()}
    if set(statuses.values()) != {"cached"}:
        raise BenchError(f"{what}: a no-op rerun executed steps: {statuses}")


def cache_check(root: Path, reps: int) -> list[Row]:
    folder = root / "cache-check"
    folder.mkdir(parents=True)
    plain = folder / "plain" / "mnist.ipynb"
    plain.parent.mkdir()
    shutil.copy(TUTORIAL, plain)
    deps_dir = folder / "deps"
    (deps_dir / "bigdata").mkdir(parents=True)
    for i in range(DEPS_FILES):
        (deps_dir / "bigdata" / f"part-{i:03d}.bin").write_bytes(os.urandom(DEPS_FILE_BYTES))
    with_deps = _with_deps(TUTORIAL, deps_dir / "mnist.ipynb", "bigdata")
    if not re.search(r"--deps bigdata", with_deps.read_text(encoding="utf-8")):
        raise BenchError("the tutorial has no %%executor line to add --deps to")

    times: dict[str, list[float]] = {"plain": [], "deps": []}
    notebooks = {"plain": plain, "deps": with_deps}
    with scanflow_home(root, "cache-plain") as plain_home, scanflow_home(root, "cache-deps") as deps_home:
        homes = {"plain": plain_home, "deps": deps_home}
        for name, nb in notebooks.items():
            _cli_run(nb, homes[name])  # full run: fills the cache and the stat cache
            _all_cached(_cli_run(nb, homes[name])[1], name)  # untimed warm-up rerun
        for _ in range(reps):  # interleaved, so both see the same machine load
            for name, nb in notebooks.items():
                seconds, doc = _cli_run(nb, homes[name])
                _all_cached(doc, name)
                times[name].append(seconds)
        for name, nb in notebooks.items():
            _check_seconds(nb, homes[name])  # untimed: this process's environment is remembered
        check = {name: [_check_seconds(nb, homes[name]) for _ in range(max(reps, 5))] for name, nb in notebooks.items()}
        (deps_home / "runs" / "cache" / "files.json").unlink()
        cold, doc = _cli_run(with_deps, deps_home)
        _all_cached(doc, "deps, stat cache deleted")
    medians = {name: median(values) for name, values in times.items()}
    samples = {f"{name}_s": values for name, values in times.items()}
    size = DEPS_FILES * DEPS_FILE_BYTES // (1 << 20)
    ratio = medians["deps"] / medians["plain"]
    return [
        Row("cache_check_deps", f"no-op rerun of the tutorial with a {size} MB --deps folder on every step",
            medians["deps"], medians["plain"], "same rerun, no --deps", ratio, "fraction", 1.15,
            [f"median of {reps} `scanflow run --json` CLI subprocesses each, interleaved (all steps cached); "
             f"{DEPS_FILES} files × 1 MiB, checked by (size, mtime_ns, inode) against .scanflow/runs/cache/files.json",
             f"difference: {medians['deps'] - medians['plain']:+.2f} s per rerun"],
            samples),
        Row("cache_check_deps_cold", f"(info) the same rerun after deleting the stat cache (hashes {size} MB per step)",
            cold, medians["plain"], "same rerun, no --deps", cold / medians["plain"], "fraction", None,
            ["one run; every step's --deps files are read and hashed (XXH3-128) again"],
            {"cold_s": [cold]}),
        Row("cache_check_alone", "(info) the cache check alone: every step's key ingredients, in-process, stat cache warm",
            median(check["deps"]), median(check["plain"]), "same check, no --deps",
            median(check["deps"]) / median(check["plain"]), "fraction", None,
            ["StepKeys.ingredients for all executors (code, parameters read, --deps, modules, data files, "
             "distributions), median of the repetitions"],
            {"deps_s": check["deps"], "plain_s": check["plain"]}),
    ]


def _check_seconds(notebook: Path, home: Path) -> float:
    """Seconds to compute the key ingredients of every step of `notebook` (what a run does before reusing)."""
    from scanflow_jupyter.notebook.parser import parse_notebook
    from scanflow_jupyter.runtime.cache import StepKeys

    app = parse_notebook(notebook)
    start = time.perf_counter()
    keys = StepKeys(app, app.parameters, home / "runs")
    for ex in app.executors:
        keys.ingredients(ex, {})
    keys.save()  # as a run does when it ends
    return time.perf_counter() - start
