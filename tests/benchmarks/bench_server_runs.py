"""Benchmark: the sidebar's Runs list through the Scanflow server extension vs MLflow's own REST.

A sqlite MLflow store with 10 000 top-level runs (5 params, 3 metrics, 4 tags each), cached under
~/.cache/scanflow/bench/ by run count: one template run is made with MlflowClient, then its rows
(every table with a `run_uuid` column) are copied under fresh run ids in one sqlite transaction,
so the store is exactly what MLflow writes, only faster to fill.

Timed (median of N sequential requests on one keep-alive connection, after warm-up):
* scanflow: `GET <base>/scanflow/api/mlflow/runs?experiment=bench&max_results=100` on a real
  jupyter_server with the extension (token auth) — the first page of top-level runs;
* baseline: `POST /api/2.0/mlflow/runs/search` (max_results=100, same experiment and the same
  top-level filter `tags.mlflow.parentRunId IS NULL`) on a real `mlflow server --workers 1`
  serving the same store. Goal: ≤ 1.3×.

    python -m tests.benchmarks.bench_server_runs [--count 10000] [--requests 40]
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from tests.benchmarks.results import Row, table
from tests.benchmarks.util import BenchError, clean_env, median, temp_root

BIN = Path(sys.executable).parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "scanflow" / "bench"
PAGE = 100
TOP_LEVEL_FILTER = "tags.`mlflow.parentRunId` IS NULL"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_store(count: int) -> Path:
    """The cached sqlite store with `count` runs in experiment `bench` (built once)."""
    db = CACHE / f"mlflow-runs-{count}.db"
    if db.exists():
        return db
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = CACHE / f".mlflow-runs-{count}.{os.getpid()}.db"
    tmp.unlink(missing_ok=True)
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp.as_posix()}")
    exp = client.create_experiment("bench", artifact_location=str(CACHE / "bench-artifacts"))
    t0 = 1_700_000_000_000
    template = client.create_run(exp, run_name="template", start_time=t0)
    tid = template.info.run_id
    client.log_batch(tid, metrics=[Metric(k, 0.5, t0, 0) for k in ("accuracy", "loss", "scanflow.duration_s")],
                     params=[Param(k, "1") for k in ("lr", "epochs", "batch", "seed", "model")],
                     tags=[RunTag("scanflow.app", "bench"), RunTag("scanflow.run_id", "template"),
                           RunTag("scanflow.backend", "local"), RunTag("scanflow.kind", "pipeline")])
    client.set_terminated(tid, end_time=t0 + 5000)
    del client
    with sqlite3.connect(tmp) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        with_run = {t: [c[1] for c in conn.execute(f"PRAGMA table_info('{t}')")] for t in tables}
        with_run = {t: cols for t, cols in with_run.items() if "run_uuid" in cols}
        rows = {t: conn.execute(f"SELECT * FROM '{t}' WHERE run_uuid = ?", (tid,)).fetchall() for t in with_run}
        for i in range(1, count):
            rid = uuid.uuid4().hex
            for t, cols in with_run.items():
                out = []
                for row in rows[t]:
                    values = [rid if v == tid else (v.replace(tid, rid) if isinstance(v, str) else v) for v in row]
                    record = dict(zip(cols, values, strict=True))
                    if t == "runs":
                        record["start_time"], record["end_time"] = t0 + i * 1000, t0 + i * 1000 + 5000
                        record["name"] = f"run-{i}"
                    elif t in ("metrics", "latest_metrics") and record.get("key") == "accuracy":
                        record["value"] = (i % 997) / 997
                    elif t == "params":
                        record["value"] = str(i % 13)
                    elif t == "tags" and record.get("key") in ("scanflow.run_id", "mlflow.runName"):
                        record["value"] = f"run-{i}"
                    out.append(tuple(record[c] for c in cols))
                if out:
                    marks = ",".join("?" * len(cols))
                    conn.executemany(f"INSERT INTO '{t}' VALUES ({marks})", out)
        conn.commit()
        n = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
    if n != count:
        raise BenchError(f"the bench store has {n} runs, expected {count}")
    os.replace(tmp, db)
    return db


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 90) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{url} server exited {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise BenchError(f"{url} did not answer within {timeout:.0f} s: {log.read_text()[-3000:]}")


def _start(cmd: list[str], log: Path, cwd: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as fh:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def _measure(fn: Any, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def server_runs(root: Path, reps: int = 3, count: int = 10_000, requests: int = 40) -> list[Row]:
    """Latency of the first page of runs: extension vs MLflow REST (same store, same query)."""
    import httpx

    db = build_store(count)
    uri = f"sqlite:///{db.as_posix()}"
    work = root / "server-runs"
    work.mkdir(parents=True, exist_ok=True)
    env = clean_env(PYTHONUNBUFFERED="1")
    token = secrets.token_hex(16)
    jport, mport = _free_port(), _free_port()
    jupyter = _start([str(BIN / "jupyter"), "server", "--no-browser", "--allow-root", f"--port={jport}",
                      "--ip=127.0.0.1", f"--ServerApp.root_dir={work}", f"--IdentityProvider.token={token}",
                      "--ServerApp.jpserver_extensions={'scanflow_jupyter.server': True}",
                      f"--Scanflow.tracking_uri={uri}"], work / "jupyter.log", work, env)
    mlflow = _start([str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(mport), "--workers", "1",
                     "--backend-store-uri", uri, "--artifacts-destination", str(work / "artifacts")],
                    work / "mlflow.log", work, env)
    try:
        _wait_http(f"http://127.0.0.1:{jport}/api/status?token={token}", jupyter, work / "jupyter.log")
        _wait_http(f"http://127.0.0.1:{mport}/health", mlflow, work / "mlflow.log", timeout=180)
        ours = httpx.Client(base_url=f"http://127.0.0.1:{jport}", headers={"Authorization": f"token {token}"},
                            timeout=60)
        theirs = httpx.Client(base_url=f"http://127.0.0.1:{mport}", timeout=60)
        exp_id = theirs.get("/api/2.0/mlflow/experiments/get-by-name",
                            params={"experiment_name": "bench"}).json()["experiment"]["experiment_id"]

        def scanflow_page() -> None:
            r = ours.get("/scanflow/api/mlflow/runs", params={"experiment": "bench", "max_results": PAGE})
            if r.status_code != 200 or len(r.json()["runs"]) != PAGE:
                raise BenchError(f"scanflow API answered {r.status_code}: {r.text[:500]}")

        def mlflow_page() -> None:
            r = theirs.post("/api/2.0/mlflow/runs/search", json={"experiment_ids": [exp_id], "max_results": PAGE,
                                                                 "filter": TOP_LEVEL_FILTER})
            if r.status_code != 200 or len(r.json()["runs"]) != PAGE:
                raise BenchError(f"mlflow server answered {r.status_code}: {r.text[:500]}")

        for _ in range(5):  # warm-up: imports, connection pools, sqlite page cache
            scanflow_page()
            mlflow_page()
        ours_s: list[float] = []
        theirs_s: list[float] = []
        for _ in range(max(1, reps)):  # interleaved blocks, so load changes hit both alike
            ours_s += _measure(scanflow_page, requests // max(1, reps) or 1)
            theirs_s += _measure(mlflow_page, requests // max(1, reps) or 1)
        ours.close()
        theirs.close()
    finally:
        _stop(jupyter)
        _stop(mlflow)
    o, t = median(ours_s), median(theirs_s)
    notes = [f"{count} runs in one sqlite store ({db}); first page of {PAGE} top-level runs; "
             f"{len(ours_s)} requests each, medians; mlflow server --workers 1, same filter"]
    return [Row("server_runs", f"Runs list, first {PAGE} of {count} (server extension)", o, t,
                "mlflow server REST runs/search", o / t, "fraction", 1.3, notes,
                {"scanflow": ours_s, "baseline": theirs_s}, {"count": count})]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    root = temp_root()
    rows = server_runs(root, args.reps, args.count, args.requests)
    print(table(rows))
    for row in rows:
        for note in row.notes:
            print(f"  {note}")
        print(f"  ratio (scanflow / mlflow): {row.ratio:.3f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
