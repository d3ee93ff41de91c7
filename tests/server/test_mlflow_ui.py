"""`POST mlflow-ui`: the MLflow UI behind the sidebar's "Open in MLflow" links.

A real `jupyter server` process (the extension as installed) starts a real MLflow UI process for
the project's sqlite store; the UI answers, is reused, and is gone once the server stops.
Remote tracking URIs are linked to directly, without their credentials.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from scanflow_jupyter.mlflow_server import registry as tracker_registry
from tests.conftest import require
from tests.server.conftest import api

TOKEN = "mlflow-ui-test-token"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _request(url: str, method: str = "GET", body: Any = None, timeout: float = 180) -> tuple[int, str]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - local test server
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.fixture
def jupyter_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A real `jupyter server` (the installed Scanflow extension) on a free port, root `tmp_path/root`."""
    require("mlflow.server")
    monkeypatch.setenv("SCANFLOW_TRACKER_REGISTRY", str(tmp_path / "registry"))  # this test's trackers only
    root = tmp_path / "root"
    root.mkdir()
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "SCANFLOW_HOME")}
    env.update({"SCANFLOW_TRACKER_PORT": str(_free_port()),
                "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")})
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "server", "--no-browser", f"--port={port}", "--ServerApp.port_retries=0",
         f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={TOKEN}", "--ServerApp.ip=127.0.0.1", "--allow-root"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            if proc.poll() is not None:
                pytest.fail(f"jupyter server exited ({proc.returncode}): {(tmp_path / 'server.log').read_text()[-3000:]}")
            try:
                if _request(f"{base}/scanflow/api/config", timeout=5)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        else:
            pytest.fail(f"jupyter server did not answer: {(tmp_path / 'server.log').read_text()[-3000:]}")
        yield proc, base, root, tmp_path / "server.log"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        log.close()
        for entry in tracker_registry.entries():  # never leave a UI behind, even when the test failed
            if entry.home.startswith(str(root)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(entry.pid, signal.SIGKILL)


def test_ui_started_once_reused_and_stopped_with_the_server(jupyter_server: Any) -> None:
    proc, base, root, log = jupyter_server
    status, text = _request(f"{base}/scanflow/api/mlflow-ui", "POST", {})
    assert status == 200, text
    first = json.loads(text)
    assert first["remote"] is False and first["started"] is True
    assert first["url"].startswith("http://127.0.0.1:")
    pid = first["pid"]
    assert _alive(pid)
    assert (root / ".scanflow" / "tracker.json").is_file()  # the project's own store (.scanflow/mlflow.db)

    ui_status, page = _request(first["url"] + "/")
    assert ui_status == 200
    assert "<title>MLflow" in page  # MLflow's UI, not just its API

    status, text = _request(f"{base}/scanflow/api/mlflow-ui", "POST", {})
    assert status == 200, text
    second = json.loads(text)
    assert second["pid"] == pid and second["url"] == first["url"] and second["started"] is False

    proc.send_signal(signal.SIGTERM)  # what Ctrl-C / a service manager does: a clean shutdown
    assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
    for _ in range(200):
        if not _alive(pid):
            break
        time.sleep(0.1)
    assert not _alive(pid), f"the MLflow UI (pid {pid}) outlived the server"
    assert not (root / ".scanflow" / "tracker.json").exists()


async def test_remote_tracking_uri_links_without_credentials(jp_fetch: Any) -> None:
    uri = "https://alice:s3cr3t-pw@mlflow.example.com:8443/team/?token=tok123#frag"
    _, doc = await api(jp_fetch, "mlflow-ui", method="POST", body={"settings": {"tracking_uri": uri}}, expect=200)
    assert doc == {"url": "https://mlflow.example.com:8443/team", "remote": True, "started": False, "pid": None}


async def test_store_without_ui_is_refused_with_a_fix(jp_fetch: Any) -> None:
    uri = "postgresql://bob:hunter22@db.example.com/mlflow"
    status, doc = await api(jp_fetch, "mlflow-ui", method="POST", body={"settings": {"tracking_uri": uri}})
    assert status == 400
    assert "postgresql" in doc["message"] and doc["fix"]
    assert "hunter22" not in json.dumps(doc) and "bob" not in json.dumps(doc)
