"""Benchmark 6: two local agents — sensor-to-actuator latency (p50, p95) and idle memory.

Agent `pinger` has a sensor that calls `ctx.call("ponger", "pong", {"sent": time.time()})`;
`ponger`'s actuator answers `time.time()` at its start. Latency = actuator start − sensor's
send time (same clock: one machine). Each sample is one `POST /sensors/ping` from this process.
Baseline, measured in the same run: this process POSTing straight to `/actuators/pong` (the
floor: one HTTP hop into an agent, without the sensor's peer lookup and call plumbing).

Memory: resident set (VmRSS) of each agent process once idle (after its MLflow client was
opened), and of the supervisor, from /proc.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from tests.benchmarks import notebooks as nbs
from tests.benchmarks.results import Row
from tests.benchmarks.util import BenchError, median, scanflow_home

SAMPLES = 60
WARMUP = 5

PINGER = '''%%agent pinger
import time
from scanflow_jupyter.agents import sensor

@sensor
def ping(ctx):
    sent = time.time()
    reply = ctx.call("ponger", "pong", {"sent": sent})
    return {"latency_s": reply["received"] - sent, "roundtrip_s": time.time() - sent}'''

PONGER = '''%%agent ponger
import time
from scanflow_jupyter.agents import actuator

@actuator
def pong(ctx, payload):
    return {"received": time.time()}'''


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmRSS for pid {pid}")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def agents(root: Path, reps: int) -> list[Row]:
    import httpx

    from scanflow_jupyter.agents import control
    from scanflow_jupyter.agents.auth import auth_headers
    from scanflow_jupyter.agents.registry import Registry

    folder = root / "agents"
    nb = nbs.write(nbs.notebook(["%scanflow_app bench-agents", PINGER, PONGER]), folder / "ping.ipynb")
    with scanflow_home(root, "agents") as home:
        started = time.perf_counter()
        up = control.up(nb, home=home)
        up_s = time.perf_counter() - started
        try:
            if up.exit_code != 0:
                raise BenchError(f"agents did not start: {up.to_dict()}")
            ports = {a.name: a.port for a in up.agents}
            pids = {a.name: a.pid for a in up.agents}
            token = control.project_token(home)  # agents refuse requests without the project's token
            client = httpx.Client(timeout=30, headers=auth_headers(token))
            ping_url = f"http://127.0.0.1:{ports['pinger']}/sensors/ping"
            pong_url = f"http://127.0.0.1:{ports['ponger']}/actuators/pong"
            sensor_s, direct_s = [], []
            for i in range(WARMUP + SAMPLES * max(1, reps // 3)):  # interleaved
                out = client.post(ping_url).json()
                if not out.get("ok"):
                    raise BenchError(f"ping sensor failed: {out}")
                sent = time.time()
                direct = client.post(pong_url, json={"sent": sent}).json()
                if i >= WARMUP:
                    sensor_s.append(out["value"]["latency_s"])
                    direct_s.append(direct["result"]["received"] - sent)
            time.sleep(3)  # idle: journals flushed, nothing scheduled
            agent_mb = [_rss_mb(pid) for pid in pids.values()]
            entry = Registry(home).notebook(str(nb.resolve())) or {}
            supervisor_mb = _rss_mb(int(entry["supervisor_pid"])) if entry.get("supervisor_pid") else float("nan")
            client.close()
        finally:
            control.down(nb, home=home)
    p50, p95 = median(sensor_s), _percentile(sensor_s, 0.95)
    d50, d95 = median(direct_s), _percentile(direct_s, 0.95)
    memory = statistics.mean(agent_mb)
    notes = [f"{len(sensor_s)} samples, interleaved; latency = the actuator's start minus the sensor's send time",
             f"resident memory per idle agent: {memory:.0f} MB (agents: "
             + ", ".join(f"{n} {m:.0f} MB" for n, m in zip(pids, agent_mb, strict=True))
             + f"); supervisor {supervisor_mb:.0f} MB",
             f"`agents up` of the two agents took {up_s:.2f} s (until both answered /status)"]
    extra = {"p50_s": p50, "p95_s": p95, "direct_p50_s": d50, "direct_p95_s": d95, "agent_rss_mb": agent_mb,
             "agent_rss_mb_mean": memory, "supervisor_rss_mb": supervisor_mb, "up_s": up_s}
    samples = {"sensor_to_actuator_s": sensor_s, "direct_http_s": direct_s}
    return [
        Row("agents_latency_p50", "sensor→actuator latency, two local agents (p50)", p50, d50,
            "direct HTTP POST p50", p50 / d50, "fraction", None, notes, samples, extra),
        Row("agents_latency_p95", "sensor→actuator latency, two local agents (p95)", p95, d95,
            "direct HTTP POST p95", p95 / d95, "fraction", None, [], {}, {}),
    ]
