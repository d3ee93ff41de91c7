"""Real runs through the API: a real jupyter_server starts `scanflow run` subprocesses that run
real kernels; the SSE stream, the run store, the logs and MLflow are checked from the API."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.server.conftest import api, copy_example, drain, write_notebook

pytestmark = pytest.mark.integration

SLEEPER = [
    "%load_ext scanflow_jupyter\n%scanflow_app sleeper",
    {"source": "secs = 1", "tags": ["parameters"]},
    "%%executor nap\nimport time\ntime.sleep(secs)",
]


def parse_sse(text: str) -> list[dict[str, Any]]:
    events = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if "data" in fields:
            event = json.loads(fields["data"])
            assert int(fields["id"]) == event["seq"]
            events.append(event)
    return events


async def sse(jp_fetch: Any, run_id: str, after: int | None = None) -> list[dict[str, Any]]:
    params = {"after": after} if after is not None else None
    resp = await jp_fetch("scanflow", "api", "runs", run_id, "events", params=params, request_timeout=600)
    assert resp.code == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    return parse_sse(resp.body.decode())


async def wait_status(jp_fetch: Any, run_id: str, timeout: float = 120) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        _, run = await api(jp_fetch, "runs", run_id, expect=200)
        if run["status"] != "running" or loop.time() > deadline:
            return run
        await asyncio.sleep(0.2)


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


async def test_run_end_to_end(jp_fetch: Any, jp_root_dir: Path, jp_serverapp: Any) -> None:
    copy_example(jp_root_dir, "diamond.ipynb", "nbs/diamond.ipynb")
    _, started = await api(jp_fetch, "runs", method="POST", body={"path": "nbs/diamond.ipynb"}, expect=202)
    run_id = started["run_id"]
    assert started["status"] == "running" and started["managed"] is True
    assert started["notebook"] == "nbs/diamond.ipynb" and started["backend"] == "local"
    assert set(started["steps"]) == {"load", "features", "stats", "train"}

    events = await sse(jp_fetch, run_id)
    types = [e["type"] for e in events]
    assert types[0] == "run_started" and types[-1] == "run_finished", types
    assert events[-1]["data"]["status"] == "succeeded"
    assert {e["step"] for e in events if e["type"] == "step_succeeded"} == {"load", "features", "stats", "train"}
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert all(e["run_id"] == run_id for e in events)
    later = await sse(jp_fetch, run_id, after=len(events) - 2)
    assert [e["seq"] for e in later] == [len(events) - 1, len(events)]
    _, polled = await api(jp_fetch, "runs", run_id, "events", params={"after": 3, "format": "json"}, expect=200)
    assert polled["finished"] is True and [e["seq"] for e in polled["events"]] == list(range(4, len(events) + 1))

    _, listed = await api(jp_fetch, "runs", expect=200)
    run = next(r for r in listed["runs"] if r["run_id"] == run_id)
    assert run["status"] == "succeeded" and run["mlflow_run_id"] and run["duration_s"] > 0
    assert run["tracking"] == "synced" and run["warnings"] == [], run
    assert {n: s["status"] for n, s in run["steps"].items()} == dict.fromkeys(("load", "features", "stats", "train"), "succeeded")
    assert all(isinstance(s["cell"], int) and s["attempts"] == 1 for s in run["steps"].values())
    _, mine = await api(jp_fetch, "runs", params={"path": "nbs/diamond.ipynb"}, expect=200)
    assert [r["run_id"] for r in mine["runs"]] == [run_id]
    copy_example(jp_root_dir, "diamond.ipynb", "other.ipynb")
    _, other = await api(jp_fetch, "runs", params={"path": "other.ipynb"}, expect=200)
    assert other["runs"] == []

    _, logs = await api(jp_fetch, "runs", run_id, "logs", params={"step": "train"}, expect=200)
    assert logs["step"] == "train" and isinstance(logs["log"], str)
    assert logs["output_notebook"] == f".scanflow/runs/{run_id}/train/output.ipynb"
    assert (jp_root_dir / logs["output_notebook"]).is_file()
    await api(jp_fetch, "runs", run_id, "logs", params={"step": "nope"}, expect=404)
    await api(jp_fetch, "runs", run_id, "logs", expect=400)
    _, conflict = await api(jp_fetch, "runs", run_id, "cancel", method="POST", body={}, expect=409)
    assert "succeeded" in conflict["message"]

    # MLflow: the parent run (top level) and its step runs
    _, exps = await api(jp_fetch, "mlflow", "experiments", expect=200)
    assert "diamond" in [e["name"] for e in exps["experiments"]]
    _, page = await api(jp_fetch, "mlflow", "runs", params={"experiment": "diamond"}, expect=200)
    assert [r["run_id"] for r in page["runs"]] == [run["mlflow_run_id"]]
    parent = page["runs"][0]
    assert parent["tags"]["scanflow.run_id"] == run_id and parent["status"] == "FINISHED"
    assert "scanflow.duration_s" in parent["metrics"]
    assert all(k.startswith("scanflow.") for k in parent["tags"])
    _, steps = await api(jp_fetch, "mlflow", "runs", params={"parent": parent["run_id"]}, expect=200)
    assert sorted(r["tags"]["scanflow.step"] for r in steps["runs"]) == ["features", "load", "stats", "train"]
    _, nested = await api(jp_fetch, "mlflow", "runs", params={"nested": "true"}, expect=200)
    assert len(nested["runs"]) == 5
    _, bad = await api(jp_fetch, "mlflow", "runs", params={"filter": "metrics.x >>> 1"}, expect=400)
    assert bad["message"]

    # server "restart": the run store still lists the run; a dead runner's run is interrupted
    ext = jp_serverapp.web_app.settings["scanflow"]
    ext.runs.managed.clear()
    state_path = jp_root_dir / ".scanflow" / "runs" / run_id / "run.json"
    state = json.loads(state_path.read_text())
    state.update(status="running", finished_at=None, pid=dead_pid())
    state["steps"]["train"].update(status="running", finished_at=None, duration_s=None)
    state_path.write_text(json.dumps(state))
    _, shown = await api(jp_fetch, "runs", run_id, expect=200)
    assert shown["status"] == "interrupted" and shown["managed"] is False
    journal = jp_root_dir / ".scanflow" / "runs" / run_id / "events.jsonl"
    lines = journal.read_text().splitlines(keepends=True)
    journal.write_text("".join(line for line in lines if '"run_finished"' not in line))
    loop = asyncio.get_running_loop()
    began = loop.time()
    assert await sse(jp_fetch, run_id, after=len(lines) - 1) == [], "an interrupted run's stream ends"
    assert loop.time() - began < 5
    _, polled = await api(jp_fetch, "runs", run_id, "events", params={"format": "json"}, expect=200)
    assert polled["finished"] is False and polled["status"] == "interrupted"
    await api(jp_fetch, "runs", run_id, "cancel", method="POST", body={}, expect=409)
    shutil.rmtree(jp_root_dir / ".scanflow" / "runs" / "cache")  # train must execute, not hit the cache
    _, resumed = await api(jp_fetch, "runs", method="POST", body={"resume": run_id}, expect=202)
    assert resumed["resumed_from"] == run_id and resumed["run_id"] != run_id
    events = await sse(jp_fetch, resumed["run_id"])
    assert events[-1]["type"] == "run_finished" and events[-1]["data"]["status"] == "succeeded"
    _, after = await api(jp_fetch, "runs", resumed["run_id"], expect=200)
    statuses = {n: s["status"] for n, s in after["steps"].items()}
    assert statuses == {"load": "cached", "features": "cached", "stats": "cached", "train": "succeeded"}, statuses
    await drain(jp_serverapp)


FAILING = [
    "%load_ext scanflow_jupyter\n%scanflow_app failing",                              # cell 1
    {"source": "n = 1", "tags": ["parameters"]},                                      # cell 2
    "%%executor ok --outputs x\nx = n",                                              # cell 3
    {"cell_type": "markdown", "source": "The next step fails."},                      # cell 4
    "%%executor boom --inputs x\ny = x + 1\nraise ValueError('no')",                 # cell 5
]


async def test_failed_run_shows_one_based_cells(jp_fetch: Any, jp_root_dir: Path, jp_serverapp: Any) -> None:
    """REST contract: every `cell` is the 1-based number of the user's notebook cell."""
    write_notebook(jp_root_dir, "failing.ipynb", FAILING)
    _, started = await api(jp_fetch, "runs", method="POST", body={"path": "failing.ipynb"}, expect=202)
    events = await sse(jp_fetch, started["run_id"])
    failed = [e for e in events if e["type"] == "step_failed"]
    assert [(e["step"], e["data"]["cell"], e["data"]["ename"]) for e in failed] == [("boom", 5, "ValueError")]
    _, run = await api(jp_fetch, "runs", started["run_id"], expect=200)
    assert run["status"] == "failed"
    assert {n: s["cell"] for n, s in run["steps"].items()} == {"ok": 3, "boom": 5}
    assert run["steps"]["boom"]["error"]["cell"] == 5 and run["steps"]["ok"]["error"] is None
    _, app = await api(jp_fetch, "app", params={"path": "failing.ipynb"}, expect=200)
    assert {n["id"]: n["cell"] for n in app["nodes"]} == {"ok": 3, "boom": 5}
    await drain(jp_serverapp)


async def test_cancel_long_step(jp_fetch: Any, jp_root_dir: Path, jp_serverapp: Any) -> None:
    write_notebook(jp_root_dir, "sleeper.ipynb", SLEEPER)
    _, started = await api(jp_fetch, "runs", method="POST", body={"path": "sleeper.ipynb", "parameters": {"secs": 30}},
                           expect=202)
    run_id = started["run_id"]
    assert started["params"] == {"secs": 30}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    while True:  # wait until the step runs (polling fallback)
        _, polled = await api(jp_fetch, "runs", run_id, "events", params={"format": "json"}, expect=200)
        if any(e["type"] == "step_started" for e in polled["events"]) or loop.time() > deadline:
            break
        await asyncio.sleep(0.2)
    assert any(e["type"] == "step_started" for e in polled["events"]), polled
    began = loop.time()
    _, cancelled = await api(jp_fetch, "runs", run_id, "cancel", method="POST", body={}, expect=202)
    assert cancelled["run_id"] == run_id and cancelled["status"] in ("killed", "running")
    run = await wait_status(jp_fetch, run_id, 60)
    assert run["status"] == "killed" and run["steps"]["nap"]["status"] == "killed"
    if loop.time() - began >= 25:  # the timeline says where the time went
        _, polled = await api(jp_fetch, "runs", run_id, "events", params={"format": "json"}, expect=200)
        timeline = [(round(e["time"] - polled["events"][0]["time"], 2), e["type"], e.get("step")) for e in polled["events"]]
        raise AssertionError(f"the 30 s step must be stopped, not waited for (cancel sent at "
                             f"{began:.1f}, now {loop.time():.1f}); events: {timeline}")
    managed = jp_serverapp.web_app.settings["scanflow"].runs.managed[run_id]
    # the process ends once MLflow has the KILLED run: a first run on a busy machine imports mlflow first
    await asyncio.wait_for(managed.proc.wait(), 120)
    assert managed.proc.returncode == 130
    events = await sse(jp_fetch, run_id)
    assert events[-1]["type"] == "run_finished" and events[-1]["data"]["status"] == "killed"
    await api(jp_fetch, "runs", run_id, "cancel", method="POST", body={}, expect=409)
    _, page = await api(jp_fetch, "mlflow", "runs", params={"experiment": "sleeper"}, expect=200)
    assert page["runs"][0]["params"] == {"secs": "30"} and page["runs"][0]["status"] == "KILLED"
    await drain(jp_serverapp)
