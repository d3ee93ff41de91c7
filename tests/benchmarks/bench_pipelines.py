"""Benchmarks 1-3: a 10-step chain, 8 parallel sleeps, and a rerun after editing one step.

Scanflow runs are measured in a fresh worker process each (`run_notebook` timed inside it, so
the kernel zygote and the MLflow recorder process are started by every timed run, as for any
new `scanflow run`); papermill baselines run in this process, after an untimed warm-up, with
`import papermill` already done.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.benchmarks import baselines
from tests.benchmarks import notebooks as nbs
from tests.benchmarks.results import Row
from tests.benchmarks.util import BenchError, clean_env, median, scanflow_home, timed, worker

CHAIN_STEPS = 10
SLEEP_STEPS = 8
BIN = Path(sys.executable).parent  # the venv running the benchmarks
SCANFLOW_CLI = BIN / "scanflow"


def scanflow_run(notebook: Path, home: Path, *, no_cache: bool = True, repeat: int = 1) -> dict[str, Any]:
    """Run `notebook` with run_notebook in a fresh worker process (`repeat` times in it)."""
    args = ["scanflow-run", str(notebook), "--repeat", str(repeat)] + (["--no-cache"] if no_cache else [])
    out = worker(*args, env=clean_env(SCANFLOW_HOME=str(home)))
    for run in out["runs"]:
        if run["status"] != "succeeded":
            raise BenchError(f"scanflow run of {notebook.name} ended {run['status']}: {run['steps']}")
    return out


def _timeline_note(runs: list[dict[str, Any]]) -> str:
    first = median([r["timeline"].get("first_step_started_s", 0.0) for r in runs])
    last = median([r["timeline"].get("last_step_ended_s", 0.0) for r in runs])
    tail = median([r["timeline"]["after_last_step_s"] for r in runs])
    return (f"scanflow timeline (medians): first step started at {first:.2f} s, last step ended at "
            f"{last:.2f} s, then {tail:.2f} s more until run_notebook returned (MLflow recording, clean-up)")


def chain(root: Path, reps: int) -> tuple[list[Row], dict[str, Any]]:
    """Benchmark 1. Returns the rows and the papermill chain figures (reused by benchmark 3)."""
    folder = root / "chain"
    sf_nb = nbs.scanflow_chain(folder / "chain.ipynb", CHAIN_STEPS)
    pm_nbs = [nbs.papermill_chain_step(folder / f"pm_step{i}.ipynb") for i in range(CHAIN_STEPS)]
    floor_nb = nbs.floor_chain(folder / "floor.ipynb", CHAIN_STEPS)
    sf_runs: list[dict[str, Any]] = []
    pm: list[float] = []
    pm_each: list[list[float]] = []
    floor: list[float] = []
    with scanflow_home(root, "chain") as home:
        scanflow_run(sf_nb, home)  # warm-up: creates the MLflow sqlite DB and the experiment
        baselines.chain(pm_nbs, folder / "pm-warmup")  # warm-up: first kernel start, disk caches
        baselines.single(floor_nb, folder / "floor-warmup")
        for rep in range(reps):  # interleaved, so drift hits every contender alike
            sf_runs.append(scanflow_run(sf_nb, home))
            seconds, each = timed(lambda r=rep: baselines.chain(pm_nbs, folder / f"pm{r}"))
            pm.append(seconds)
            pm_each.append(each)
            floor.append(timed(lambda r=rep: baselines.single(floor_nb, folder / f"floor{r}"))[0])
        # informative: run_notebook called repeatedly in ONE process (e.g. `%scanflow run` in a
        # kernel); the first call is dropped, later calls find the kernel zygote already started
        same_process = [r["seconds"] for r in scanflow_run(sf_nb, home, repeat=reps + 1)["runs"][1:]]
    sf = [r["seconds"] for r in sf_runs]
    sf_m, pm_m, floor_m = median(sf), median(pm), median(floor)
    every = [x for e in pm_each for x in e]
    stalls = sum(1 for x in every if x > 2.0)
    samples = {"scanflow_s": sf, "papermill_s": pm, "floor_s": floor}
    extra = {"scanflow_timelines": [r["timeline"] for r in sf_runs], "papermill_per_notebook_s": pm_each}
    rows = [
        Row("chain10_vs_papermill", f"{CHAIN_STEPS}-step chain vs sequential papermill", sf_m, pm_m,
            "papermill", pm_m / sf_m, "speedup", 3.0,
            [f"median of {reps}; scanflow = run_notebook(no_cache=True) timed inside a fresh process per run "
             "(kernel zygote and MLflow recorder start counted, interpreter start not)",
             "one untimed warm-up run of each contender first (MLflow sqlite DB + experiment creation excluded)",
             _timeline_note(sf_runs),
             f"papermill per notebook: median {median(every):.2f} s, slowest {max(every):.2f} s; {stalls} of "
             f"{len(every)} notebooks took > 2 s (a kernel that ignores the graceful shutdown request is "
             "killed after a wait; counted, since every papermill user gets them)"],
            samples, extra),
        Row("chain10_overhead_above_floor", f"{CHAIN_STEPS}-step chain: overhead above one-kernel floor", sf_m, floor_m,
            "floor", (sf_m - floor_m) / CHAIN_STEPS, "overhead", 0.15,
            [f"(scanflow - floor) / {CHAIN_STEPS}; floor = all {CHAIN_STEPS} bodies as cells of one notebook, one papermill run"],
            samples),
        Row("chain10_same_process", f"(info) {CHAIN_STEPS}-step chain, run_notebook repeated in one process",
            median(same_process), pm_m, "papermill", pm_m / median(same_process), "speedup", None,
            [f"median of {reps} calls after a first, untimed call in the same process (kernel zygote "
             "already running; the MLflow recorder process is still started by every run)"],
            {"scanflow_same_process_s": same_process, "papermill_s": pm}),
    ]
    return rows, {"papermill_s": pm_m, "papermill_samples": pm, "notebooks": pm_nbs, "folder": folder}


def sleep(root: Path, reps: int) -> list[Row]:
    """Benchmark 2: 8 independent sleep(1) steps, scanflow's default (adaptive) parallelism."""
    folder = root / "sleep"
    sf_nb = nbs.scanflow_sleep(folder / "sleep.ipynb", SLEEP_STEPS)
    pm_nbs = [nbs.papermill_sleep_step(folder / f"pm_nap{i}.ipynb") for i in range(SLEEP_STEPS)]
    sf_runs: list[dict[str, Any]] = []
    pm: list[float] = []
    with scanflow_home(root, "sleep") as home:
        scanflow_run(sf_nb, home)  # warm-up (fresh home: MLflow DB creation)
        for rep in range(reps):
            sf_runs.append(scanflow_run(sf_nb, home))
            pm.append(timed(lambda r=rep: baselines.sequential(pm_nbs, folder / f"pm{r}"))[0])
    sf = [r["seconds"] for r in sf_runs]
    sf_m, pm_m = median(sf), median(pm)
    cpus = os.cpu_count() or 1
    return [Row("sleep8_vs_papermill", f"{SLEEP_STEPS} × sleep(1), default parallelism (adaptive, {cpus} CPUs)",
                sf_m, pm_m, "papermill", pm_m / sf_m, "speedup", 2.4,
                [f"median of {reps}; {cpus} steps at a time always, more while the running ones wait "
                 f"(README: Parallelism); at {cpus} at a time the sleeps alone would take {SLEEP_STEPS / cpus:.0f} s",
                 _timeline_note(sf_runs)],
                {"scanflow_s": sf, "papermill_s": pm}, {"scanflow_timelines": [r["timeline"] for r in sf_runs]})]


def _cli_run(notebook: Path, home: Path) -> tuple[float, dict[str, Any]]:
    """Time `scanflow run NB --json` as a subprocess (interpreter start and imports included)."""
    start = time.perf_counter()
    proc = subprocess.run([str(SCANFLOW_CLI), "run", str(notebook), "--json"], cwd=notebook.parent,
                          env=clean_env(SCANFLOW_HOME=str(home)), capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - start
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise BenchError(f"scanflow run exited {proc.returncode}: {proc.stdout[-1500:]} {proc.stderr[-1500:]}") from None
    if proc.returncode != 0 or doc.get("status") != "succeeded":
        raise BenchError(f"scanflow run exited {proc.returncode}: {json.dumps(doc)[:1500]}")
    return seconds, doc


def rerun(root: Path, reps: int, papermill_full: dict[str, Any]) -> list[Row]:
    """Benchmark 3: edit only the last step's body, rerun with the CLI (9 steps cached)."""
    folder = root / "rerun"
    nb = nbs.scanflow_chain(folder / "chain.ipynb", CHAIN_STEPS)
    last = f"s{CHAIN_STEPS - 1}"
    prev = f"x{CHAIN_STEPS - 2}"
    out_var = f"x{CHAIN_STEPS - 1}"
    times, single = [], []
    with scanflow_home(root, "rerun") as home:
        _cli_run(nb, home)  # full run: fills the cache (and creates the MLflow DB)
        for rep in range(reps + 1):  # rep 0 is the untimed warm-up rerun
            # a different computation each time (comments/whitespace would not change the cache key)
            nbs.edit_step_body(nb, last, f"{out_var} = {prev} + 1 + {rep} * 0")
            seconds, doc = _cli_run(nb, home)
            statuses = {name: s["status"] for name, s in doc["steps"].items()}
            expected = {f"s{i}": "cached" for i in range(CHAIN_STEPS - 1)} | {last: "succeeded"}
            if statuses != expected:
                raise BenchError(f"rerun did not reuse 9 steps and run the last: {statuses}")
            if rep:
                times.append(seconds)
            single.append(_papermill_cli_one(papermill_full["notebooks"][-1], folder / f"pm-one{rep}"))
        # where the rerun's time goes: the same rerun through run_notebook, with its timeline
        nbs.edit_step_body(nb, last, f"{out_var} = {prev} + 1 + {reps + 1} * 0")
        probe = scanflow_run(nb, home, no_cache=False)
    sf_m, pm_m = median(times), papermill_full["papermill_s"]
    one_m = median(single[1:])
    return [
        Row("rerun_last_step", "rerun after editing step 10 (`scanflow run` CLI)", sf_m, pm_m,
            "papermill, all 10", sf_m / pm_m, "fraction", 0.15,
            [f"median of {reps} CLI subprocess runs (interpreter start + imports + 9 cached + 1 run);"
             " baseline = benchmark 1's sequential papermill full run; one untimed warm-up rerun first",
             f"the same rerun via run_notebook in a fresh process: the edited step started at "
             f"{probe['timeline'].get('first_step_started_s', 0):.2f} s, ended at "
             f"{probe['timeline'].get('last_step_ended_s', 0):.2f} s, the run returned at {probe['seconds']:.2f} s"],
            {"scanflow_cli_s": times, "papermill_full_s": papermill_full["papermill_samples"]},
            {"run_notebook_probe": {"seconds": probe["seconds"], "timeline": probe["timeline"],
                                    "steps": probe["steps"]}}),
        Row("rerun_vs_papermill_cli_one", "(info) same rerun vs `papermill` CLI on only the edited notebook",
            sf_m, one_m, "papermill CLI, 1 nb", sf_m / one_m, "fraction", None,
            ["what a user who knows which notebook changed could do by hand (fresh process each)"],
            {"scanflow_cli_s": times, "papermill_cli_one_s": single[1:]}),
    ]


def _papermill_cli_one(notebook: Path, work: Path) -> float:
    work.mkdir(parents=True, exist_ok=True)
    papermill = BIN / "papermill"
    args = [str(papermill), str(notebook), str(work / "out.ipynb"), "-p", "x", str(CHAIN_STEPS - 1),
            "-p", "out", str(work / "x.json"), "--no-progress-bar"]
    start = time.perf_counter()
    proc = subprocess.run(args, env=clean_env(), capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise BenchError(f"papermill CLI failed: {proc.stderr[-1500:]}")
    return seconds
