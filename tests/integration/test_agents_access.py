"""Agent authentication end to end: real agent processes on 127.0.0.1, real HTTP, a real other user.

Finding 1 of issue #16: the agent API ran anyone's code (no token, any Host/Origin, text/plain
POSTs, any notebook). Finding 2 (agent side): credentials of MLFLOW_TRACKING_URI leaked into
agents.json and GET /status.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI
from tests.integration.test_agents import actuator, agent_cell, get, sensor, wait_for
from tests.integration.test_agents import agents_project as _agents_project  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration


@pytest.fixture
def agents(request: pytest.FixtureRequest) -> Any:
    """A project with an MLflow store whose agents are all stopped (and checked) at the end."""
    return request.getfixturevalue("_agents_project")


IMPORTS = "from scanflow_jupyter.agents import sensor, actuator\n"
ROUTES = [("GET", "/status"), ("GET", "/messages"), ("GET", "/health"), ("GET", "/openapi.json"),
          ("POST", "/sensors/probe"), ("POST", "/actuators/echo"), ("POST", "/actuators/run_pipeline"),
          ("GET", "/no-such-route")]


def _guarded_notebook(project: Any, allow: list[str] | None = None) -> Path:
    allow_line = f"allow_notebooks = {allow!r}\n" if allow is not None else ""
    return project.write_notebook("guarded", [
        "%scanflow_app guarded",
        agent_cell("%%agent planner --template planner", imports=IMPORTS + allow_line, body="""
            @sensor
            def probe(ctx):
                return 1

            @actuator
            def echo(ctx, payload):
                return payload
        """),
    ])


def _start(project: Any, nb: Path) -> int:
    from scanflow_jupyter.agents import control

    up = control.up(nb)
    assert up.exit_code == 0, up.to_dict()
    return up.agents[0].port


def _token(project: Any) -> str:
    return (project.home / "agent-token").read_text().strip()


def _call(port: int, method: str, path: str, headers: dict[str, str] | None = None, **kw: Any) -> Any:
    import httpx

    return httpx.request(method, f"http://127.0.0.1:{port}{path}", headers=headers or {}, timeout=10, **kw)


def test_every_route_but_healthz_needs_the_token_and_browsers_are_refused(agents, monkeypatch):
    project = agents
    monkeypatch.setenv("SCANFLOW_AGENT_ALLOWED_HOSTS", "planner.team.svc, planner")
    port = _start(project, _guarded_notebook(project))
    token = _token(project)
    good = {"Authorization": f"Bearer {token}"}

    for method, path in ROUTES:
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": f"Basic {token}"}):
            refused = _call(port, method, path, headers)
            assert refused.status_code == 401, (method, path, headers, refused.text)
            assert refused.headers["www-authenticate"] == "Bearer"
            error = refused.json()["error"]
            assert "Authorization: Bearer <token>" in error and ".scanflow/agent-token" in error
            assert token not in refused.text
    healthz = _call(port, "GET", "/healthz")
    assert healthz.status_code == 200 and healthz.json() == {"ok": True}  # open, and data-free
    assert _call(port, "GET", "/status", good).json()["name"] == "planner"
    assert _call(port, "POST", "/actuators/echo", good, json={"a": 1}).json()["result"] == {"a": 1}
    assert _call(port, "POST", "/actuators/echo", good).json()["result"] is None  # no body at all
    assert _call(port, "GET", "/docs", good).status_code == 404  # no browser UI

    # DNS rebinding: the browser sends the attacker's name as Host.
    for host in ("evil.example", "evil.example:80", f"127.0.0.1.evil.example:{port}", "[::2]"):
        rebound = _call(port, "GET", "/status", {**good, "Host": host})
        assert rebound.status_code == 403 and "does not answer to host" in rebound.json()["error"], host
    for host in ("localhost", f"localhost:{port}", f"[::1]:{port}", "planner.team.svc:8080", "planner"):
        assert _call(port, "GET", "/status", {**good, "Host": host}).status_code == 200, host
    # CSRF: a page POSTing to the agent (even if it somehow had the token).
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}):
        csrf = _call(port, "POST", "/actuators/echo", {**good, **headers}, json={})
        assert csrf.status_code == 403, (headers, csrf.text)
    assert _call(port, "GET", "/status", {**good, "Origin": f"http://127.0.0.1:{port}"}).status_code == 200
    for ctype, body in (("text/plain", '{"a": 1}'), ("application/x-www-form-urlencoded", "a=1"),
                        ("multipart/form-data; boundary=x", "--x--")):
        simple = _call(port, "POST", "/actuators/echo", {**good, "Content-Type": ctype}, content=body)
        assert simple.status_code == 415 and "application/json" in simple.json()["error"], ctype
    status = get(port)
    assert actuator(status, "echo")["runs"] == 2 and sensor(status, "probe")["runs"] == 0


@contextlib.contextmanager
def _traversable(path: Path) -> Iterator[None]:
    """Let other users traverse (not list) `path` and its parents, as in a real home folder."""
    chain = [p for p in (path, *path.parents) if p != Path("/")]
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in chain}
    try:
        for p in chain:
            os.chmod(p, modes[p] | 0o001)
        yield
    finally:
        for p, mode in modes.items():
            os.chmod(p, mode)


def _as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runuser", "-u", "nobody", "--", *argv], capture_output=True, text=True, timeout=30,
                          check=False)


def test_another_local_user_can_neither_read_the_token_nor_call_the_agents(agents, tmp_path):
    """The issue's attack, as the real user `nobody` (this suite runs as root, so runuser works)."""
    if os.geteuid() != 0 or not shutil.which("runuser") or not shutil.which("curl"):
        why = "this test needs root, runuser and curl: it plays a second local user (nobody) for real"
        if IN_CI:
            pytest.fail(why)
        pytest.skip(why)
    project = agents
    port = _start(project, _guarded_notebook(project))
    evil = tmp_path / "evil.ipynb"
    evil.write_text("{}")
    home = project.home
    assert stat.S_IMODE((home / "agent-token").stat().st_mode) == 0o600
    assert stat.S_IMODE((home / "agents.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((home / "agents").stat().st_mode) == 0o700
    with _traversable(home):
        assert _as_nobody("cat", str(evil)).returncode == 0  # control: nobody reaches this folder
        for secret in (home / "agent-token", home / "agents.json"):
            denied = _as_nobody("cat", str(secret))
            assert denied.returncode != 0 and "Permission denied" in denied.stderr, (secret, denied)
        assert _as_nobody("ls", str(home / "agents")).returncode != 0
        for argv in (["-X", "POST", f"http://127.0.0.1:{port}/actuators/run_pipeline", "-H",
                      "Content-Type: application/json", "-d", json.dumps({"notebook": str(evil)})],
                     [f"http://127.0.0.1:{port}/status"]):
            attack = _as_nobody("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", *argv)
            assert attack.stdout == "401", attack
    assert actuator(get(port), "run_pipeline")["runs"] == 0


def test_run_pipeline_runs_only_notebooks_of_the_project_or_its_allow_list(agents, tmp_path_factory):
    project = agents
    outside = tmp_path_factory.mktemp("outside")
    marker = outside / "ran.txt"
    evil = project.write_notebook("evil", [  # a real pipeline: it would leave the marker if it ran
        "%scanflow_app evil",
        f"%%executor pwn\nfrom pathlib import Path\nPath({str(marker)!r}).write_text('pwned')",
    ])
    shutil.move(evil, outside / "evil.ipynb")
    allowed = outside / "shared"
    allowed.mkdir()
    (allowed / "empty.ipynb").write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4,
                                                     "nbformat_minor": 5}))
    (project.root / "link.ipynb").symlink_to(outside / "evil.ipynb")
    port = _start(project, _guarded_notebook(project, allow=[str(allowed) + "/"]))
    good = {"Authorization": f"Bearer {_token(project)}"}

    for notebook in (str(outside / "evil.ipynb"), "../" + outside.name + "/evil.ipynb", "link.ipynb",
                     str(project.root / "sub" / ".." / ".." / outside.name / "evil.ipynb")):
        refused = _call(port, "POST", "/actuators/run_pipeline", good, json={"notebook": notebook})
        assert refused.status_code == 403, (notebook, refused.text)
        error = refused.json()["error"]
        assert "outside the project root" in error and "allow_notebooks = [" in error, error
    # An allowed folder passes the check: the runner itself answers (this notebook has no step).
    listed = _call(port, "POST", "/actuators/run_pipeline", good, json={"notebook": str(allowed / "empty.ipynb")})
    assert listed.status_code == 500 and "was not run" in listed.json()["error"], listed.text
    assert "no %%executor cell" in listed.json()["error"]
    assert not marker.exists()
    assert actuator(get(port), "run_pipeline")["errors"] == 5


def _files(folder: Path) -> Iterator[Path]:
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            yield path


def test_agents_record_and_answer_no_credentials(agents, monkeypatch):
    import socket

    from scanflow_jupyter.redact import secret_values

    project = agents
    with socket.socket() as probe:  # a port nothing listens on: every MLflow call fails
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    uri = f"http://user:s3cr3tpw@127.0.0.1:{closed}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    secrets = secret_values({"MLFLOW_TRACKING_URI": uri})
    assert secrets == ["s3cr3tpw"]
    nb = project.write_notebook("leaky", [
        "%scanflow_app leaky",
        agent_cell("%%agent watcher", imports="import os\n" + IMPORTS, body="""
            @sensor(every="0.3s")
            def experiments(ctx):
                return len(ctx.mlflow.search_experiments())

            @actuator
            def boom(ctx, payload):
                raise RuntimeError("cannot reach " + os.environ["MLFLOW_TRACKING_URI"])
        """),
    ])
    port = _start(project, nb)
    good = {"Authorization": f"Bearer {_token(project)}"}
    failed = _call(port, "POST", "/actuators/boom", good, json={})
    assert failed.status_code == 500 and "http://***@127.0.0.1" in failed.json()["error"]
    status = wait_for(lambda: (s := get(port)) and sensor(s, "experiments")["last_error"] and s, 60,
                      "the sensor to fail on the unreachable store")
    wait_for(lambda: get(port)["tracking"]["failures"] >= 1, 60, "the call journal to fail too")
    assert status["tracking_uri"] == f"http://***@127.0.0.1:{closed}"
    answers = {"/status": _call(port, "GET", "/status", good).text,
               "/messages": _call(port, "GET", "/messages", good).text,
               "/boom": failed.text,
               "agents ls --json": project.cli("agents", "ls", "--json").stdout}
    registry = json.loads((project.home / "agents.json").read_text())
    entry = next(iter(registry["notebooks"].values()))
    assert entry["tracking_uri"] == f"http://***@127.0.0.1:{closed}"

    from scanflow_jupyter.agents import control

    control.down(nb)  # flush logs and state to disk first
    files = list(_files(project.home))
    assert any(p.name == "watcher.log" for p in files) and any(p.name == "messages.jsonl" for p in files)
    leaks = [name for name, text in answers.items() if any(s in text for s in secrets)]
    leaks += [str(p) for p in files if any(s.encode() in p.read_bytes() for s in secrets)]
    assert not leaks, f"the password of MLFLOW_TRACKING_URI was recorded or answered in: {leaks}"


def test_cli_prints_the_token_for_its_owner_and_refuses_an_unsafe_token_file(project):
    nb = _guarded_notebook(project)
    printed = project.cli("agents", "token")
    assert printed.returncode == 0, printed.stderr
    token_file = project.home / "agent-token"
    assert printed.stdout.strip() == token_file.read_text().strip()
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    os.chmod(token_file, 0o644)  # e.g. copied with a careless umask: others may have read it
    for argv in (("agents", "token"), ("agents", "up", str(nb))):
        refused = project.cli(*argv)
        assert refused.returncode == 2, (argv, refused.stdout, refused.stderr)
        assert "readable by other users (mode 0644)" in refused.stderr and "Fix:" in refused.stderr
        assert "Traceback" not in refused.stderr
    code, doc = project.cli_json("agents", "up", str(nb), "--json")
    assert code == 2 and doc["messages"][0]["code"] == "agent-token"
    assert not (project.home / "agents.json").exists()  # nothing was started
