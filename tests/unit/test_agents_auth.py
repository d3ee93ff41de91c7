"""agents.auth: the project's agent token file, and which requests an agent refuses."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from scanflow_jupyter.agents import auth
from tests.conftest import IN_CI

TOKEN = "a-token-of-the-project-0123456789"
LOOPBACK = auth.allowed_hosts({})
GOOD = {"host": "127.0.0.1:8000", "authorization": f"Bearer {TOKEN}"}


def refuse(method: str = "GET", path: str = "/status", **headers: str) -> tuple[int, str] | None:
    merged = {**GOOD, **{k.replace("_", "-"): v for k, v in headers.items()}}
    return auth.refusal(method, path, {k: v for k, v in merged.items() if v is not None}, token=TOKEN,
                        hosts=LOOPBACK)


def test_token_file_is_created_once_with_mode_0600_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        first = auth.agent_token(tmp_path / "home", env={})
    finally:
        os.umask(old)
    path = tmp_path / "home" / "agent-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(first) >= 40
    assert auth.agent_token(tmp_path / "home", env={}) == first
    assert not [p for p in path.parent.iterdir() if p.name != "agent-token"]  # no temp file left
    assert auth.agent_token(tmp_path / "other", create=False, env={}) is None
    assert not (tmp_path / "other").exists()
    assert auth.agent_token(tmp_path / "home", env={auth.TOKEN_ENV: "from-the-secret-0123456789"}) == \
        "from-the-secret-0123456789"


def test_processes_creating_the_token_at_once_agree(tmp_path):
    code = ("import sys; from pathlib import Path; from scanflow_jupyter.agents.auth import agent_token; "
            "print(agent_token(Path(sys.argv[1]), env={}))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
             for _ in range(6)]
    tokens = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(tokens) == 1 and tokens == {(tmp_path / "agent-token").read_text().strip()}


def test_unsafe_token_files_are_refused_with_the_fix(tmp_path):
    path = tmp_path / "agent-token"
    path.write_text(TOKEN)
    os.chmod(path, 0o644)
    with pytest.raises(auth.AgentTokenError, match=r"readable by other users \(mode 0644\).*rm "):
        auth.agent_token(tmp_path, env={})
    os.chmod(path, 0o600)
    assert auth.agent_token(tmp_path, env={}) == TOKEN
    path.write_text("short")
    with pytest.raises(auth.AgentTokenError, match="empty or too short"):
        auth.agent_token(tmp_path, env={})
    path.unlink()
    path.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(auth.AgentTokenError, match="cannot read"):
        auth.agent_token(tmp_path, env={})


def test_a_token_file_planted_by_another_user_is_refused(tmp_path):
    if os.geteuid() != 0:
        why = "this test needs root: it gives the token file to another real user (nobody)"
        if IN_CI:
            pytest.fail(why)
        pytest.skip(why)
    path = tmp_path / "agent-token"
    path.write_text(TOKEN)
    os.chmod(path, 0o600)
    os.chown(path, 65534, 65534)
    with pytest.raises(auth.AgentTokenError, match="belongs to another user"):
        auth.agent_token(tmp_path, env={})


def test_token_comparison():
    assert auth.token_matches(f"Bearer {TOKEN}", TOKEN) and auth.token_matches(f"bearer  {TOKEN} ", TOKEN)
    for header in (None, "", TOKEN, f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer ", f"Bearer {TOKEN[:-1]}"):
        assert not auth.token_matches(header, TOKEN), header
    assert not auth.token_matches("Bearer ", "")
    assert auth.auth_headers(None) == {} and auth.auth_headers("t") == {"Authorization": "Bearer t"}


def test_host_names_and_allowed_hosts():
    assert [auth.host_name(h) for h in ("127.0.0.1:80", "LocalHost", "[::1]:8080", "[::1]", "name.", "", None)] == \
        ["127.0.0.1", "localhost", "::1", "::1", "name", None, None]
    hosts = auth.allowed_hosts({auth.ALLOWED_HOSTS_ENV: " planner.ns.svc , Planner:8080,,",
                                "SCANFLOW_AGENT_URLS": '{"a": "http://a.ns.svc:8080", "b": 3}'}, extra=["x"])
    assert hosts == {"127.0.0.1", "localhost", "::1", "planner.ns.svc", "planner", "a.ns.svc", "x"}
    assert auth.allowed_hosts({"SCANFLOW_AGENT_URLS": "not json"}) == LOOPBACK


def test_requests_with_the_token_from_a_loopback_name_are_served():
    assert refuse() is None
    assert refuse(host="localhost") is None and refuse(host="[::1]:9") is None
    assert refuse(origin="http://localhost:8888") is None and refuse(sec_fetch_site="same-origin") is None
    assert refuse("POST", content_type="application/json; charset=utf-8", content_length="2") is None
    assert refuse("POST") is None and refuse("POST", content_length="0") is None


def test_healthz_is_open_and_everything_else_needs_the_token():
    assert auth.refusal("GET", "/healthz", {}, token=TOKEN, hosts=LOOPBACK) is None
    for path in ("/status", "/health", "/messages", "/openapi.json", "/sensors/x", "/actuators/x", "/", "/healthz/"):
        status, message = refuse(path=path, authorization=None)
        assert status == 401 and "was missing" in message and TOKEN not in message
    status, message = refuse(authorization="Bearer nope-nope-nope-nope")
    assert status == 401 and "did not match" in message and "scanflow agents token" in message


def test_browser_attacks_are_refused_before_the_token_is_looked_at():
    for host in ("evil.example", "evil.example:8000", "127.0.0.1.nip.io", "[::2]:80", "", None):
        assert refuse(host=host)[0] == 403, host
    for origin in ("http://evil.example", "null", "http://127.0.0.1.evil.example", "file://"):
        assert refuse(origin=origin)[0] == 403, origin
    assert refuse(sec_fetch_site="cross-site")[0] == 403
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                  "application/jsonp"):
        status, message = refuse("POST", content_type=ctype, content_length="3")
        assert status == 415 and "application/json" in message, ctype
    assert refuse("POST", content_type="text/plain")[0] == 415  # even an empty form post
    assert refuse("POST", content_length="5")[0] == 415  # a body without a type
    assert refuse("POST", transfer_encoding="chunked")[0] == 415
    assert refuse(host="evil.example", authorization=None)[0] == 403


def test_allowed_extra_hosts(monkeypatch):
    hosts = auth.allowed_hosts({auth.ALLOWED_HOSTS_ENV: "planner.team.svc"})
    assert auth.refusal("GET", "/status", {**GOOD, "host": "planner.team.svc:8080"}, token=TOKEN, hosts=hosts) is None
    assert auth.refusal("GET", "/status", {**GOOD, "host": "planner.team.svc:8080"}, token=TOKEN,
                        hosts=LOOPBACK)[0] == 403


def test_token_path(tmp_path: Path):
    assert auth.token_path(tmp_path) == tmp_path / "agent-token"
