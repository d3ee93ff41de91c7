"""The warm worker behind the server (#14): a real jupyter_server keeps a `scanflow run` process
ready (runner imported, kernel zygote started); a sidebar Run becomes that process. Real
processes throughout: the worker, its zygote, the run's kernels, the server itself."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.server.conftest import api, drain, write_notebook

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
HELLO = [
    "%load_ext scanflow_jupyter\n%scanflow_app hello",
    {"source": "word = 'first'", "tags": ["parameters"]},
    "%%executor say\nprint('said', word)",
]
SLEEPER = [
    "%load_ext scanflow_jupyter\n%scanflow_app sleeper",
    {"source": "secs = 1", "tags": ["parameters"]},
    "%%executor nap\nimport time\ntime.sleep(secs)",
]


def children(pid: int) -> list[int]:
    """Pids whose parent is `pid` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def zygote_of(pid: int) -> int | None:
    return next((c for c in children(pid) if "scanflow_jupyter.runtime.zygote" in cmdline(c)), None)


async def until(check: Any, what: str, timeout: float = 120) -> Any:
    """Poll `check()` until it returns something truthy (no timing is asserted: `timeout` only ends a hang)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if value:
            return value
        assert loop.time() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.1)


async def warm_worker(jp_fetch: Any, runs: Any, path: str) -> int:
    """Show the notebook as the sidebar does (GET app), then wait until its worker's zygote runs."""
    await api(jp_fetch, "app", params={"path": path}, expect=200)
    proc = await until(lambda: runs.warm.idle, "the idle warm worker")
    await until(lambda: zygote_of(proc.pid), "the warm worker's kernel zygote")
    return proc.pid


async def finished(jp_fetch: Any, run_id: str) -> dict[str, Any]:
    async def poll() -> dict[str, Any] | None:
        _, run = await api(jp_fetch, "runs", run_id, expect=200)
        return run if run["status"] != "running" else None

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    while (run := await poll()) is None:
        assert loop.time() < deadline, f"run {run_id} did not finish"
        await asyncio.sleep(0.2)
    return run


async def test_run_starts_in_the_warm_worker_and_reads_the_notebook_then(
        jp_fetch: Any, jp_root_dir: Path, jp_serverapp: Any) -> None:
    runs = jp_serverapp.web_app.settings["scanflow"].runs
    write_notebook(jp_root_dir, "hello.ipynb", HELLO)
    pid = await warm_worker(jp_fetch, runs, "hello.ipynb")
    zygote = zygote_of(pid)
    # the notebook changes after the worker is ready: the run must use the new text
    write_notebook(jp_root_dir, "hello.ipynb", [*HELLO[:2], "%%executor say\nprint('changed', word)"])
    _, started = await api(jp_fetch, "runs", method="POST", body={"path": "hello.ipynb", "parameters": {"word": "x"}},
                           expect=202)
    assert runs.warm.launched == 1
    state = runs.read(started["run_id"])
    assert state.pid == pid and state.started_by == "sidebar"  # the warm worker became the runner
    await finished(jp_fetch, started["run_id"])
    await drain(jp_serverapp)  # the runner records the run in MLflow before it exits
    _, run = await api(jp_fetch, "runs", started["run_id"], expect=200)
    assert run["status"] == "succeeded" and run["tracking"] == "synced", run
    _, logs = await api(jp_fetch, "runs", started["run_id"], "logs", params={"step": "say"}, expect=200)
    assert "changed x" in logs["log"]
    _, page = await api(jp_fetch, "mlflow", "runs", params={"experiment": "hello"}, expect=200)
    assert [r["tags"]["scanflow.run_id"] for r in page["runs"]] == [started["run_id"]]
    _, steps = await api(jp_fetch, "mlflow", "runs", params={"parent": page["runs"][0]["run_id"]}, expect=200)
    assert [s["tags"]["scanflow.step"] for s in steps["runs"]] == ["say"]
    assert not alive(pid) and not alive(zygote)  # the run's process and its zygote (with its kernels) are gone
    assert runs.managed[started["run_id"]].proc.returncode == 0


async def test_crashed_worker_is_replaced(jp_fetch: Any, jp_root_dir: Path, jp_serverapp: Any) -> None:
    runs = jp_serverapp.web_app.settings["scanflow"].runs
    write_notebook(jp_root_dir, "hello.ipynb", HELLO)
    pid = await warm_worker(jp_fetch, runs, "hello.ipynb")
    zygote = zygote_of(pid)
    os.kill(pid, signal.SIGKILL)  # the worker crashes while idle
    await until(lambda: not alive(zygote), "the crashed worker's zygote to die with it")
    _, started = await api(jp_fetch, "runs", method="POST", body={"path": "hello.ipynb"}, expect=202)
    state = runs.read(started["run_id"])
    assert state.pid != pid and runs.warm.launched == 0  # a fresh worker ran it
    run = await finished(jp_fetch, started["run_id"])
    assert run["status"] == "succeeded", run
    await drain(jp_serverapp)
    # and the server keeps a new idle worker for the next run
    runs.warm_up()
    again = await warm_worker(jp_fetch, runs, "hello.ipynb")
    assert again not in (pid, state.pid)
    _, second = await api(jp_fetch, "runs", method="POST", body={"path": "hello.ipynb"}, expect=202)
    assert runs.read(second["run_id"]).pid == again and runs.warm.launched == 1
    assert (await finished(jp_fetch, second["run_id"]))["status"] == "succeeded"
    await drain(jp_serverapp)


async def test_changed_package_files_retire_the_worker(jp_fetch: Any, jp_root_dir: Path, jp_serverapp: Any) -> None:
    runs = jp_serverapp.web_app.settings["scanflow"].runs
    write_notebook(jp_root_dir, "hello.ipynb", HELLO)
    pid = await warm_worker(jp_fetch, runs, "hello.ipynb")
    source = REPO / "scanflow_jupyter" / "server" / "warm_main.py"
    now = time.time() + 1  # newer than anything the worker imported
    os.utime(source, (now, now))
    _, started = await api(jp_fetch, "runs", method="POST", body={"path": "hello.ipynb"}, expect=202)
    assert runs.read(started["run_id"]).pid != pid and runs.warm.launched == 0
    await until(lambda: not alive(pid), "the stale worker to be stopped")
    assert (await finished(jp_fetch, started["run_id"]))["status"] == "succeeded"
    await drain(jp_serverapp)


async def test_cancel_a_run_in_the_warm_worker(jp_fetch: Any, jp_root_dir: Path, jp_serverapp: Any) -> None:
    runs = jp_serverapp.web_app.settings["scanflow"].runs
    write_notebook(jp_root_dir, "sleeper.ipynb", SLEEPER)
    pid = await warm_worker(jp_fetch, runs, "sleeper.ipynb")
    _, started = await api(jp_fetch, "runs", method="POST", body={"path": "sleeper.ipynb", "parameters": {"secs": 300}},
                           expect=202)
    run_id = started["run_id"]
    assert runs.read(run_id).pid == pid

    async def step_started() -> bool:
        _, polled = await api(jp_fetch, "runs", run_id, "events", params={"format": "json"}, expect=200)
        return any(e["type"] == "step_started" for e in polled["events"])

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    while not await step_started():
        assert loop.time() < deadline, "the step never started"
        await asyncio.sleep(0.2)
    kernels = children(zygote_of(pid) or -1)
    assert kernels, "the step's kernel is a child of the worker's zygote"
    await api(jp_fetch, "runs", run_id, "cancel", method="POST", body={}, expect=202)
    run = await finished(jp_fetch, run_id)
    assert run["status"] == "killed" and run["steps"]["nap"]["status"] == "killed", run
    await drain(jp_serverapp)
    assert runs.managed[run_id].proc.returncode == 130
    assert not any(alive(k) for k in kernels)  # no kernel leaked


# ---------------------------------------------------------------- the server's end


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    token = "warm-worker-test"
    env = {k: v for k, v in os.environ.items() if k not in ("SCANFLOW_HOME", "MLFLOW_TRACKING_URI")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "server", f"--ServerApp.port={port}", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={token}", "--ServerApp.open_browser=False",
         "--ServerApp.allow_root=True", "--ServerApp.jpserver_extensions={'scanflow_jupyter.server': True}"],
        cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}/scanflow/api/app?path=hello.ipynb&token={token}"


def _wait_for(check: Any, what: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except OSError:
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)


def _idle_worker(server: subprocess.Popen[bytes], url: str) -> tuple[int, int]:
    """GET app (the sidebar's request) until the server has a warm worker with a zygote."""
    _wait_for(lambda: urllib.request.urlopen(url, timeout=30).status == 200, "the server to answer")

    def worker() -> int | None:
        return next((c for c in children(server.pid) if "scanflow_jupyter.server.warm_main" in cmdline(c)), None)

    pid = _wait_for(worker, "the warm worker")
    zygote = _wait_for(lambda: zygote_of(pid), "its zygote")
    return pid, zygote


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
def test_worker_dies_with_the_server(tmp_path: Path, how: signal.Signals) -> None:
    write_notebook(tmp_path, "hello.ipynb", HELLO)
    server, url = _start_server(tmp_path)
    try:
        pid, zygote = _idle_worker(server, url)
        server.send_signal(how)
        server.wait(timeout=60)
        _wait_for(lambda: not alive(pid) and not alive(zygote), "the worker and its zygote to end with the server")
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
