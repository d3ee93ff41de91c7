"""Run every benchmark and print the table (`make bench`, or `python -m tests.benchmarks.run_all`).

Ratios only compare figures measured in this same run; nothing here asserts on time.
Results also go to tests/benchmarks/results/latest.json.

    python -m tests.benchmarks.run_all [--only chain,sleep,rerun,cache_check,array,load_ext,inspect,docker,agents,...] [--reps 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Callable
from typing import Any

from tests.benchmarks import (
    baselines,
    bench_agents,
    bench_cache,
    bench_data,
    bench_docker,
    bench_inspect,
    bench_k8s_compile,
    bench_k8s_deploy,
    bench_pipelines,
    bench_ploomber,
    bench_server_runs,
    bench_serving,
    bench_sidebar,
    bench_startup,
)
from tests.benchmarks.results import Row, table, write_json
from tests.benchmarks.util import BenchError, cpu_busy, temp_root

ALL = ("chain", "sleep", "rerun", "cache_check", "array", "load_ext", "inspect", "docker", "agents", "server_runs",
       "serving", "k8s_compile", "k8s", "ploomber", "sidebar")


def _progress(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.run_all", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(ALL), help="comma-separated subset of: " + ", ".join(ALL))
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions per pipeline measurement (median)")
    parser.add_argument("--startup-reps", type=int, default=5, help="fresh processes per start-up probe (median)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (notebooks, run stores)")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(ALL))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")

    started = time.perf_counter()
    busy_before = cpu_busy()
    root = temp_root()
    rows: list[Row] = []
    failed: dict[str, str] = {}  # benchmark -> why it could not finish (the others still run)
    chain_info: dict[str, Any] | None = None
    baselines.KERNEL_LOG = root / "papermill-kernels.log"
    busy_text = "unknown" if busy_before is None else f"{busy_before:.0%}"
    _progress(f"workspace {root}; {os.cpu_count()} CPUs; {args.reps} timed reps per measurement; "
              f"CPUs busy before start: {busy_text}")
    try:
        # Import papermill before anything is timed: the baseline process has it loaded already.
        import papermill  # noqa: F401

        chain_rows: list[Row] = []
        rerun_rows: list[Row] = []
        if "chain" in chosen or "rerun" in chosen or "ploomber" in chosen:
            _progress("1/5 10-step chain: scanflow vs sequential papermill vs one-kernel floor")
            chain_rows, chain_info = bench_pipelines.chain(root, args.reps)
            if "chain" in chosen:
                rows += chain_rows
        if "sleep" in chosen:
            _progress("2/5 8 × sleep(1): scanflow (default max_parallel) vs sequential papermill")
            rows += bench_pipelines.sleep(root, args.reps)
        if "rerun" in chosen:
            assert chain_info is not None
            _progress("3/5 rerun after editing step 10: `scanflow run` CLI vs papermill full run")
            rerun_rows = bench_pipelines.rerun(root, args.reps, chain_info)
            rows += rerun_rows
        if "ploomber" in chosen:
            _progress("ploomber: Ploomber 0.23 (own venv) on the same chain and rerun workloads")
            rows += bench_ploomber.ploomber(root, args.reps, chain_rows[0] if chain_rows else None,
                                            rerun_rows[0] if rerun_rows else None, progress=_progress)
        if "sidebar" in chosen:
            _section(rows, failed, "sidebar", "sidebar: Run → first step badge running on the tutorial (Playwright, Chromium)",
                     lambda: bench_sidebar.sidebar(root, args.reps, progress=_progress))
        if "cache_check" in chosen:
            _section(rows, failed, "cache_check", "cache check: no-op rerun of the tutorial with a 100 MB --deps folder vs without",
                     lambda: bench_cache.cache_check(root, args.reps))
        if "array" in chosen:
            _section(rows, failed, "array", "4/5 100 MB numpy array: serializer path vs np.save + np.load",
                     lambda: bench_data.array(root, args.reps))
        if "load_ext" in chosen:
            _section(rows, failed, "load_ext", "5/5 %load_ext scanflow_jupyter vs import mlflow",
                     lambda: bench_startup.load_ext(args.startup_reps))
        if "inspect" in chosen:
            _section(rows, failed, "inspect", "inspect: `scanflow inspect` of a 1000-step chain vs 10 steps (text and --json)",
                     lambda: bench_inspect.inspect(root, args.reps))
        if "docker" in chosen:
            _section(rows, failed, "docker", "6/6 images: base, cold build, rebuild after one edit; docker vs local per-step overhead",
                     lambda: bench_docker.docker(root, args.reps, progress=_progress))
        if "agents" in chosen:
            _section(rows, failed, "agents", "agents: sensor→actuator latency between two local agents, idle memory",
                     lambda: bench_agents.agents(root, args.reps))
        if "server_runs" in chosen:
            _section(rows, failed, "server_runs", "server extension: Runs list of 10 000 MLflow runs vs mlflow server REST",
                     lambda: bench_server_runs.server_runs(root, args.reps))
        if "serving" in chosen:
            _section(rows, failed, "serving", "serving: /predict p50/p99 and req/s, scanflow serve vs mlflow models serve; hot swap at 50 req/s",
                     lambda: bench_serving.serving(root, args.reps))
        if "k8s_compile" in chosen:
            _section(rows, failed, "k8s_compile", "k8s: compile a 100-step pipeline to an Argo Workflow",
                     lambda: bench_k8s_compile.k8s_compile(root, args.reps))
        if "k8s" in chosen:
            _section(rows, failed, "k8s", "k8s: 5-agent environment deploy vs kubectl apply --server-side",
                     lambda: bench_k8s_deploy.k8s_deploy(root, args.reps, progress=_progress))
    finally:
        if args.keep:
            _progress(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    total = time.perf_counter() - started

    print()
    print(table(rows))
    print()
    for row in rows:
        for note in row.notes:
            print(f"  {row.key}: {note}")
    print("  Each scanflow measurement set uses a fresh SCANFLOW_HOME and starts with one untimed warm-up run,")
    print("  so one-off costs (MLflow sqlite DB + experiment creation) are excluded; papermill is imported and")
    print("  warmed up before timing. Ratios compare figures of this same run.")
    if busy_before is not None and busy_before > 0.2:
        print(f"  WARNING: {busy_before:.0%} of the CPUs were busy just before the benchmarks started:"
              " other processes were running, so figures are noisier than on an idle machine.")
    path = write_json(rows, {"total_seconds": total, "reps": args.reps, "startup_reps": args.startup_reps,
                             "only": chosen, "cpu_busy_before_start": busy_before,
                             "load_average_1min_at_end": os.getloadavg()[0]})
    met = [r.met for r in rows if r.met is not None]
    print(f"\n{sum(met)}/{len(met)} goals met; whole benchmark took {total:.0f} s; results in {path}")
    for name, why in failed.items():
        print(f"FAILED benchmark {name}: {why}", file=sys.stderr)
    return 1 if failed else 0


def _section(rows: list[Row], failed: dict[str, str], name: str, label: str, measure: Callable[[], list[Row]]) -> None:
    """Run one benchmark; if it cannot finish (BenchError), say so and go on with the others."""
    _progress(label)
    try:
        rows += measure()
    except BenchError as exc:
        failed[name] = str(exc)
        _progress(f"  {name} FAILED: {exc}")


if __name__ == "__main__":
    sys.exit(main())
