"""Ploomber 0.23 beside papermill: the same 10-step chain and rerun-after-editing-step-10 workloads.

Ploomber lives in its own venv, `~/.cache/scanflow/bench-venvs/ploomber` (created on first use with
`pip install "ploomber==0.23.*" ipykernel`, then reused), so it never touches the project's
environment. Each task is a percent-format script run by Ploomber's papermill-based
NotebookRunner; the x value passes through a JSON product. Timed: `ploomber build --force` (full
chain) and `ploomber build` after editing the last task (Ploomber reruns only outdated tasks), as
subprocesses (interpreter start included, as for the `scanflow run` CLI of the rerun row).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from tests.benchmarks.results import Row
from tests.benchmarks.util import BenchError, clean_env, median

VENV = Path.home() / ".cache" / "scanflow" / "bench-venvs" / "ploomber"
SPEC = "ploomber==0.23.*"
STEPS = 10


def ensure_venv(progress=print) -> Path:  # noqa: ANN001 - run_all's progress printer
    """The Ploomber venv's python (the venv is created on first use; `.installed` marks it complete)."""
    python = VENV / "bin" / "python"
    if (VENV / ".installed").exists():
        return python
    progress(f"creating the Ploomber venv {VENV} ({SPEC}; once)")
    subprocess.run(["python3", "-m", "venv", "--clear", str(VENV)], check=True, timeout=300)
    proc = subprocess.run([str(python), "-m", "pip", "install", "-q", SPEC, "ipykernel"], capture_output=True,
                          text=True, timeout=900)
    if proc.returncode != 0:
        raise BenchError(f"could not install {SPEC} into {VENV}: {proc.stderr[-1500:]} (needs PyPI; retry)")
    (VENV / ".installed").write_text(SPEC + "\n", encoding="utf-8")
    return python


def _task(i: int, edit: int | None = None) -> str:
    upstream = "None" if i == 0 else f'["t{i - 1}"]'
    body = ("x = 0 + 1" if i == 0 else
            f'x = json.load(open(upstream["t{i - 1}"]["data"]))["x"] + 1' + (f" + {edit} * 0" if edit is not None else ""))
    return (f'# %% tags=["parameters"]\nupstream = {upstream}\nproduct = None\n\n'
            f'# %%\nimport json\n{body}\njson.dump({{"x": x}}, open(product["data"], "w"))\n')


def write_pipeline(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["tasks:"]
    for i in range(STEPS):
        (folder / f"t{i}.py").write_text(_task(i), encoding="utf-8")
        lines += [f"  - source: t{i}.py", "    product:", f"      nb: out/t{i}.ipynb", f"      data: out/t{i}.json"]
    spec = folder / "pipeline.yaml"
    spec.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return spec


def _build(python: Path, folder: Path, *, force: bool) -> float:
    # the `ploomber` console script, through the venv's python (its entry point: ploomber_cli.cli)
    cli = "import sys; from ploomber_cli.cli import cmd_router; sys.argv[0] = 'ploomber'; sys.exit(cmd_router())"
    args = [str(python), "-c", cli, "build", "--entry-point", "pipeline.yaml"]
    args += ["--force"] if force else []
    start = time.perf_counter()
    proc = subprocess.run(args, cwd=folder, env=clean_env(), capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise BenchError(f"ploomber build failed in {folder}: {proc.stdout[-1500:]} {proc.stderr[-1500:]}")
    return seconds


def ploomber(root: Path, reps: int, chain_row: Row | None, rerun_row: Row | None, progress=print) -> list[Row]:  # noqa: ANN001
    """Rows comparing the scanflow figures of this same run (chain, rerun) with Ploomber's."""
    python = ensure_venv(progress)
    folder = root / "ploomber"
    write_pipeline(folder)
    _build(python, folder, force=True)  # warm-up: first kernel start, Ploomber's metadata
    full = [_build(python, folder, force=True) for _ in range(reps)]
    rerun = []
    for rep in range(reps + 1):  # rep 0: untimed warm-up rerun
        (folder / f"t{STEPS - 1}.py").write_text(_task(STEPS - 1, edit=rep + 1), encoding="utf-8")
        seconds = _build(python, folder, force=False)
        if rep:
            rerun.append(seconds)
    full_m, rerun_m = median(full), median(rerun)
    rows = [Row("ploomber_chain10_info", "(info) Ploomber 0.23 `ploomber build --force`, 10-step chain", full_m, full_m,
                "itself", 1.0, "fraction", None, [f"median of {reps} CLI runs after one warm-up (venv {VENV})"],
                {"ploomber_s": full})]
    if chain_row is not None:
        rows.append(Row("chain10_vs_ploomber", f"{STEPS}-step chain vs Ploomber 0.23 (`ploomber build --force`)",
                        chain_row.scanflow_s, full_m, "ploomber", full_m / chain_row.scanflow_s, "speedup", None,
                        ["scanflow figure = chain10_vs_papermill's, measured in this run; Ploomber timed as a CLI "
                         "subprocess (interpreter start counted, scanflow's is not)"],
                        {"scanflow_s": chain_row.samples.get("scanflow_s", []), "ploomber_s": full}))
    if rerun_row is not None:
        rows.append(Row("rerun_vs_ploomber", "rerun after editing step 10 vs Ploomber incremental `ploomber build`",
                        rerun_row.scanflow_s, rerun_m, "ploomber rerun", rerun_row.scanflow_s / rerun_m, "fraction",
                        None, ["both CLI subprocesses; Ploomber reruns only the edited (outdated) task; "
                               "scanflow figure = rerun_last_step's, measured in this run"],
                        {"scanflow_cli_s": rerun_row.samples.get("scanflow_cli_s", []), "ploomber_s": rerun}))
    return rows
