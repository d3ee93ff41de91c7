"""Helpers of the credential-leak tests: a real MLflow server reached with credentials, and a grep.

MLflow's server without its auth app ignores basic-auth credentials, so a URI with
``user:password@`` works against it at run time; the tests then look for the password in
everything that was recorded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

USER = "scanflow-user"
PASSWORD = "S3cr3tValue-7d41c9"  # noqa: S105 - the secret the tests look for


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def mlflow_server(folder: Path, startup_s: float = 180) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1 with its store in `folder`; yields its URL WITH credentials."""
    folder.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    script = Path(sys.executable).parent / "mlflow"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "mlflow"]
    cmd += ["server", "--backend-store-uri", f"sqlite:///{folder / 'server.db'}", "--serve-artifacts",
            "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1"]
    log = (folder / "server.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, cwd=folder)
    try:
        deadline = time.monotonic() + startup_s  # readiness wait, not an assertion on time
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:  # noqa: S310
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start (exit {proc.poll()}):\n"
                                   + (folder / "server.log").read_text(errors="replace")[-3000:])
            time.sleep(0.3)
        yield f"http://{USER}:{PASSWORD}@127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def files_containing(root: Path, secrets: Iterable[str]) -> list[str]:
    """`path: secret` for every file under `root` whose bytes contain one of `secrets`."""
    wanted = [s.encode() for s in secrets]
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        data = path.read_bytes()
        found += [f"{path}: {s.decode()}" for s in wanted if s in data]
    return found


def processes_containing(secrets: Iterable[str]) -> list[str]:
    """`pid: argv` of every process whose command line holds one of `secrets` (argv is world-readable)."""
    wanted = [s.encode() for s in secrets]
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if any(s in cmdline for s in wanted):
            shown = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{entry.name}: {shown}")
    return found


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(URI with credentials, folder of its store and artifacts) of a real MLflow server."""
    from tests.conftest import require

    require("mlflow.server")
    folder = tmp_path_factory.mktemp("mlflow-server")
    with mlflow_server(folder) as uri:
        yield uri, folder

