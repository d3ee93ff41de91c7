"""Benchmark 4: passing a 100 MB numpy array between two steps vs np.save + np.load.

The serializer path a step pair pays is `dump_value` in the producing kernel plus `load_value`
in a fresh consuming kernel; it is measured directly, each half in its own fresh process, like
`np.save` then `np.load` of the same array in the same folder. Dirty pages are flushed (untimed)
before every timed operation. The whole two-step pipeline is also measured end to end, minus the same
pipeline passing a tiny array, as an informative figure.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.benchmarks import notebooks as nbs
from tests.benchmarks.bench_pipelines import scanflow_run
from tests.benchmarks.results import Row
from tests.benchmarks.util import BenchError, median, scanflow_home, sync_disk, worker

NBYTES = 100 * 1000 * 1000
TINY = 80
PAIR_REPS = 11


def _scanflow_pair(folder: Path) -> tuple[float, float]:
    shutil.rmtree(folder, ignore_errors=True)
    sync_disk()
    dump = worker("scanflow-dump", str(folder), str(NBYTES))
    sync_disk()
    load = worker("scanflow-load", str(folder))
    if load["nbytes"] != NBYTES:
        raise BenchError(f"scanflow loaded {load['nbytes']} bytes, expected {NBYTES}")
    return dump["seconds"], load["seconds"]


def _numpy_pair(path: Path) -> tuple[float, float]:
    path.unlink(missing_ok=True)
    sync_disk()
    save = worker("numpy-save", str(path), str(NBYTES))
    sync_disk()
    load = worker("numpy-load", str(path))
    if load["nbytes"] != NBYTES:
        raise BenchError(f"np.load read {load['nbytes']} bytes, expected {NBYTES}")
    return save["seconds"], load["seconds"]


def array(root: Path, reps: int) -> list[Row]:
    pipeline_reps = reps
    reps = max(reps, PAIR_REPS)  # each pair costs well under a second, and 15-200 ms figures are noisy
    folder = root / "array"
    folder.mkdir(parents=True, exist_ok=True)
    _scanflow_pair(folder / "sf-warmup")  # warm-up: page cache of numpy & co., first allocation
    _numpy_pair(folder / "np-warmup.npy")
    sf_dump, sf_load, np_save, np_load = [], [], [], []
    for rep in range(reps):
        d, lo = _scanflow_pair(folder / f"sf{rep}")
        s, nl = _numpy_pair(folder / f"np{rep}.npy")
        sf_dump.append(d)
        sf_load.append(lo)
        np_save.append(s)
        np_load.append(nl)
        shutil.rmtree(folder / f"sf{rep}", ignore_errors=True)  # 100 MB each: keep the disk tidy
        (folder / f"np{rep}.npy").unlink(missing_ok=True)
    # Each operation has a fast mode and rare 0.1-0.3 s outliers (write-back / page allocation on
    # this VM) that hit either contender at random: sum the per-operation medians.
    sf_m = median(sf_dump) + median(sf_load)
    np_m = median(np_save) + median(np_load)
    rows = [Row("array100mb_serializer", "100 MB array: dump_value + load_value vs np.save + np.load",
                sf_m, np_m, "np.save+load", sf_m / np_m, "fraction", 1.5,
                [f"sum of per-operation medians of {reps}; each operation in a fresh process; dump {median(sf_dump):.3f} s "
                 f"(content digest while writing) + load {median(sf_load):.3f} s vs save {median(np_save):.3f} s "
                 f"+ load {median(np_load):.3f} s"],
                {"scanflow_dump_s": sf_dump, "scanflow_load_s": sf_load, "np_save_s": np_save, "np_load_s": np_load})]
    rows.append(_pipeline(root, pipeline_reps, np_m))
    shutil.rmtree(folder, ignore_errors=True)
    return rows


def _step_seconds(run: dict) -> float:
    return sum(float(step["duration_s"] or 0.0) for step in run["steps"].values())


def _pipeline(root: Path, reps: int, np_m: float) -> Row:
    folder = root / "array-pipeline"
    big = nbs.scanflow_array(folder / "big.ipynb", NBYTES)
    tiny = nbs.scanflow_array(folder / "tiny.ipynb", TINY)
    big_runs, tiny_runs = [], []
    with scanflow_home(root, "array") as home:
        scanflow_run(tiny, home)  # warm-up (MLflow DB creation)
        for _ in range(reps):
            big_runs.append(scanflow_run(big, home))
            tiny_runs.append(scanflow_run(tiny, home))
        shutil.rmtree(home / "runs", ignore_errors=True)
    b_steps, t_steps = [_step_seconds(r) for r in big_runs], [_step_seconds(r) for r in tiny_runs]
    b_wall, t_wall = [r["seconds"] for r in big_runs], [r["seconds"] for r in tiny_runs]
    delta = median(b_steps) - median(t_steps)
    return Row("array100mb_pipeline_delta", "(info) 2-step pipeline, steps' time: 100 MB minus tiny array",
               delta, np_m, "np.save+load", delta / np_m, "fraction", None,
               [f"sum of the two steps' durations, median: {median(b_steps):.2f} s (100 MB) - "
                f"{median(t_steps):.2f} s (tiny); includes creating the array (np.arange) in the producing "
                "step, which np.save+load does untimed",
                f"whole-run wall time, median: {median(b_wall):.2f} s (100 MB) vs {median(t_wall):.2f} s (tiny); "
                "too noisy for the difference to mean much"],
               {"big_steps_s": b_steps, "tiny_steps_s": t_steps, "big_pipeline_s": b_wall,
                "tiny_pipeline_s": t_wall})
