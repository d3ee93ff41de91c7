"""Benchmark: online serving of one sklearn model — `scanflow serve` vs `mlflow models serve` (issue #12 item 5).

The model: a LogisticRegression on two features with a signature, registered twice (v1, v2) in a
sqlite MLflow registry (tests/services_support.register_models). Both servers serve the same
version on this machine, one worker each, and the same httpx client calls them:

* latency: sequential `dataframe_split` requests of one row, alternating between the two
  servers (so a load spike hits both), after a warm-up; p50 and p99;
* throughput: `THREADS` client threads send `THROUGHPUT_REQUESTS` requests to one server, then
  to the other; requests per second;
* hot swap: `scanflow serve` of `models:/clf@champion` paced at `SWAP_RATE` requests/s; the alias
  moves to v2 after `SWAP_AFTER_S`; the run lasts until v2 answered for `SWAP_TAIL_S` more
  seconds. Failed = any answer that is not 200 or a transport error. Goal: 0.

Goals: not slower than `mlflow models serve` on p50, p99 and throughput (ratio ≤ 1 / ≥ 1).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.benchmarks import notebooks as nbs
from tests.benchmarks.results import Row
from tests.benchmarks.util import BenchError, clean_env, median

LATENCY_SAMPLES = 400
WARMUP = 30
THREADS = 4
THROUGHPUT_REQUESTS = 1200
SWAP_RATE = 50.0
SWAP_AFTER_S = 3.0
SWAP_TAIL_S = 3.0
SWAP_LIMIT_S = 60.0
BODY = {"dataframe_split": {"columns": ["f1", "f2"], "data": [[1.5, -0.3]]}}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ok(client: Any, url: str, proc: subprocess.Popen[Any], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited with {proc.returncode} before answering {url}")
        try:
            if client.get(url).status_code == 200:
                return
        except Exception:  # noqa: BLE001 - not listening yet
            pass
        time.sleep(0.2)
    raise BenchError(f"{what} did not answer {url} within {timeout:.0f} s")


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _throughput(url: str) -> float:
    import httpx

    errors: list[str] = []
    per_thread = THROUGHPUT_REQUESTS // THREADS

    def work() -> None:
        with httpx.Client(timeout=30) as client:
            for _ in range(per_thread):
                r = client.post(url, json=BODY)
                if r.status_code != 200:
                    errors.append(f"{r.status_code} {r.text[:200]}")

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    if errors:
        raise BenchError(f"{len(errors)} failed requests to {url}: {errors[0]}")
    return per_thread * THREADS / seconds


def _hot_swap(client: Any, url: str, tracking: str, v2: str) -> dict[str, Any]:
    from tests.services_support import set_alias

    first = client.post(url, json=BODY).json()["predictions"]
    sent = failed = 0
    errors: list[str] = []
    swapped_at = v2_seen_at = None
    started = time.perf_counter()
    while True:
        now = time.perf_counter() - started
        if swapped_at is None and now >= SWAP_AFTER_S:
            set_alias(tracking, "clf", "champion", v2)
            swapped_at = now
        if v2_seen_at is not None and now >= v2_seen_at + SWAP_TAIL_S or now > SWAP_LIMIT_S:
            break
        try:
            r = client.post(url, json=BODY)
            ok = r.status_code == 200
            if ok and swapped_at is not None and v2_seen_at is None and r.json()["predictions"] != first:
                v2_seen_at = time.perf_counter() - started
            if not ok:
                errors.append(f"{r.status_code} {r.text[:200]}")
        except Exception as exc:  # noqa: BLE001 - a transport error is a failed request
            ok = False
            errors.append(f"{type(exc).__name__}: {exc}")
        sent += 1
        failed += not ok
        pause = started + sent / SWAP_RATE - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    if v2_seen_at is None:
        raise BenchError(f"the hot swap never reached the client within {SWAP_LIMIT_S:.0f} s")
    return {"sent": sent, "failed": failed, "errors": errors[:3], "rate": sent / (time.perf_counter() - started),
            "swap_visible_after_s": v2_seen_at - (swapped_at or 0.0)}


def serving(root: Path, reps: int) -> list[Row]:
    import httpx

    folder = root / "serving"
    folder.mkdir(parents=True, exist_ok=True)
    tracking = f"sqlite:///{folder / 'mlflow.db'}"
    # registered in a child process: MLflow's global tracking URI of this process stays as it is
    script = ("import json, sys; from tests.services_support import register_models, set_alias; "
              "v = register_models(sys.argv[1], 'clf', versions=2); set_alias(sys.argv[1], 'clf', 'champion', v[0]); "
              "print(json.dumps(v))")
    done = subprocess.run([sys.executable, "-c", script, tracking], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[2], env=clean_env())
    if done.returncode != 0:
        raise BenchError(f"registering the models failed: {done.stderr[-2000:]}")
    v1, v2 = json.loads(done.stdout.strip().splitlines()[-1])
    nb = nbs.write(nbs.notebook(["%%service clf --model models:/clf@champion"]), folder / "serving.ipynb")
    env = clean_env(MLFLOW_TRACKING_URI=tracking, SCANFLOW_HOME=str(folder / ".scanflow"), PYTHONUNBUFFERED="1")
    # `mlflow models serve` execs `uvicorn` from PATH: this interpreter's
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    sf_port, ml_port = _free_port(), _free_port()
    scanflow_cmd = [sys.executable, "-m", "scanflow_jupyter.cli", "serve", str(nb), "clf", "--port", str(sf_port),
                    "--poll", "1"]
    mlflow_cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/clf/{v1}", "-h", "127.0.0.1",
                  "-p", str(ml_port), "--env-manager", "local", "-w", "1"]
    log = (folder / "servers.log").open("ab")
    procs = [subprocess.Popen(cmd, cwd=folder, env=env, stdout=log, stderr=log) for cmd in (scanflow_cmd, mlflow_cmd)]
    client = httpx.Client(timeout=30)
    try:
        sf, ml = f"http://127.0.0.1:{sf_port}", f"http://127.0.0.1:{ml_port}"
        _wait_ok(client, f"{sf}/health", procs[0], "scanflow serve")
        _wait_ok(client, f"{ml}/ping", procs[1], "mlflow models serve")
        sf_pred, ml_pred = f"{sf}/predict", f"{ml}/invocations"
        a, b = client.post(sf_pred, json=BODY), client.post(ml_pred, json=BODY)
        if a.status_code != 200 or b.status_code != 200 or a.json() != b.json():
            raise BenchError(f"the two servers disagree: scanflow {a.status_code} {a.text[:200]}, "
                             f"mlflow {b.status_code} {b.text[:200]}")
        sf_s: list[float] = []
        ml_s: list[float] = []
        for i in range(WARMUP + LATENCY_SAMPLES * max(1, reps // 3)):
            for url, out in ((sf_pred, sf_s), (ml_pred, ml_s)) if i % 2 else ((ml_pred, ml_s), (sf_pred, sf_s)):
                started = time.perf_counter()
                r = client.post(url, json=BODY)
                elapsed = time.perf_counter() - started
                if r.status_code != 200:
                    raise BenchError(f"{url}: {r.status_code} {r.text[:200]}")
                if i >= WARMUP:
                    out.append(elapsed)
        sf_rps, ml_rps = _throughput(sf_pred), _throughput(ml_pred)
        _stop(procs[1])  # the swap runs alone
        swap = _hot_swap(client, sf_pred, tracking, v2)
    finally:
        client.close()
        for proc in procs:
            _stop(proc)
        log.close()
    p50, p99, m50, m99 = median(sf_s), _percentile(sf_s, 0.99), median(ml_s), _percentile(ml_s, 0.99)
    notes = [f"{len(sf_s)} sequential one-row dataframe_split requests per server, alternating, after {WARMUP} "
             f"warm-up pairs; throughput: {THREADS} client threads × {THROUGHPUT_REQUESTS // THREADS} requests: "
             f"scanflow {sf_rps:.0f} req/s, mlflow {ml_rps:.0f} req/s",
             "one worker process each; scanflow serve writes its inference log (every request) meanwhile",
             f"hot swap: {swap['sent']} requests at {swap['rate']:.1f} req/s, {swap['failed']} failed; version 2 "
             f"answered {swap['swap_visible_after_s']:.2f} s after the alias moved (--poll 1)"]
    extra = {"p50_s": p50, "p99_s": p99, "mlflow_p50_s": m50, "mlflow_p99_s": m99, "scanflow_rps": sf_rps,
             "mlflow_rps": ml_rps, "swap": swap}
    return [
        Row("serving_p50", "/predict latency p50, one sklearn model", p50, m50, "mlflow models serve p50",
            p50 / m50, "fraction", 1.0, notes, {"scanflow_s": sf_s, "mlflow_s": ml_s}, extra),
        Row("serving_p99", "/predict latency p99, one sklearn model", p99, m99, "mlflow models serve p99",
            p99 / m99, "fraction", 1.0, [], {}, {}),
        Row("serving_throughput", f"/predict throughput, {THREADS} client threads (s per request)", 1 / sf_rps,
            1 / ml_rps, "mlflow models serve", sf_rps / ml_rps, "speedup", 1.0, [], {}, {}),
        Row("serving_hot_swap", f"hot swap at {SWAP_RATE:g} req/s: failed requests (fraction)",
            swap["failed"] / max(1, swap["sent"]), 0.0, "0 failed", swap["failed"] / max(1, swap["sent"]),
            "fraction", 0.0, swap["errors"], {}, {}),
    ]
