"""Who may talk to an agent: the project's agent token and the names an agent answers to.

Every agent route except the data-free `GET /healthz` requires `Authorization: Bearer <token>`.
The token is per project: `SCANFLOW_AGENT_TOKEN` if set (Kubernetes pods get it from a Secret),
else `<scanflow home>/agent-token`, a random value created on first need with mode 0600 (only
the user who starts the agents can read it). The supervisor, peers (`ctx.call`), the CLI and
the Jupyter server extension read it from there; it is never logged, recorded or returned.

Requests must also name an allowed host (`Host`: 127.0.0.1, localhost, [::1], plus the names in
`SCANFLOW_AGENT_ALLOWED_HOSTS` and the hosts of `SCANFLOW_AGENT_URLS`), carry no foreign
`Origin` and no `Sec-Fetch-Site: cross-site`, and POST only JSON: a web page in the user's
browser can neither rebind a name to the agent nor submit a form to it.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "ALLOWED_HOSTS_ENV",
    "LOOPBACK_HOSTS",
    "TOKEN_ENV",
    "TOKEN_FILE",
    "OPEN_PATHS",
    "AgentTokenError",
    "agent_token",
    "allowed_hosts",
    "auth_headers",
    "host_name",
    "refusal",
    "token_matches",
    "token_path",
]

TOKEN_ENV = "SCANFLOW_AGENT_TOKEN"
ALLOWED_HOSTS_ENV = "SCANFLOW_AGENT_ALLOWED_HOSTS"
TOKEN_FILE = "agent-token"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_MIN_TOKEN_CHARS = 16


class AgentTokenError(RuntimeError):
    """The agent token cannot be used safely; the message names the file and the fix."""


def token_path(home: Path) -> Path:
    return Path(home) / TOKEN_FILE


def _check_private(path: Path, st: os.stat_result) -> None:
    if st.st_uid != os.getuid():
        raise AgentTokenError(
            f"{path} belongs to another user (uid {st.st_uid}), so it may hold a token that user chose. "
            f"Fix: delete it (rm {path}) and start the agents again (`scanflow agents up NOTEBOOK`).")
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise AgentTokenError(
            f"{path} is readable by other users (mode {stat.S_IMODE(st.st_mode):04o}): anyone on this machine "
            "could call your agents. Fix: stop the agents (`scanflow agents down --all`), delete the file "
            f"(rm {path}) and start them again; a new token is created with mode 0600.")


def _read(path: Path) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise AgentTokenError(f"cannot read the agent token {path}: {exc.strerror}. Fix: delete it "
                              f"(rm {path}) and start the agents again.") from None
    with os.fdopen(fd, "r", encoding="utf-8") as fh:
        _check_private(path, os.fstat(fh.fileno()))
        value = fh.read().strip()
    if len(value) < _MIN_TOKEN_CHARS:
        raise AgentTokenError(f"the agent token {path} is empty or too short. Fix: delete it (rm {path}) "
                              "and start the agents again.")
    return value


def _create(path: Path) -> None:
    """Write a new random token to `path` unless it exists (never readable by others, even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, (secrets.token_urlsafe(32) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # atomic and never replaces: two creators agree on the first token
    except FileExistsError:
        pass
    except OSError:  # a file system without hard links: exclusive create, same mode
        with open(tmp, "rb") as src:
            data = src.read()
        try:
            out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            pass
        else:
            os.write(out, data)
            os.close(out)
    finally:
        os.unlink(tmp)


def agent_token(home: Path | None = None, *, create: bool = True, env: Mapping[str, str] | None = None) -> str | None:
    """The project's agent token: `$SCANFLOW_AGENT_TOKEN`, else `<home>/agent-token` (created
    if missing and `create`; None if missing and not `create`). AgentTokenError if the file is
    unsafe (another owner, readable by others) or unreadable."""
    environ = os.environ if env is None else env
    value = (environ.get(TOKEN_ENV) or "").strip()
    if value:
        return value
    if home is None:
        from scanflow_jupyter.tracking import scanflow_home

        home = scanflow_home()
    path = token_path(home)
    token = _read(path)
    if token is None and create:
        _create(path)
        token = _read(path)
    return token


def auth_headers(token: str | None) -> dict[str, str]:
    """The request headers that authenticate with `token` (none without a token)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def token_matches(authorization: str | None, token: str) -> bool:
    """True if the `Authorization` header carries `token` (constant-time comparison)."""
    if not authorization or not token:
        return False
    scheme, _, given = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def host_name(value: str | None) -> str | None:
    """The host part of a `Host` header (`name`, `name:port`, `[v6]:port`), lower-case, or None."""
    if not value:
        return None
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[1:end] if end > 0 else None
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".") or None


def _split(names: str) -> Iterable[str]:
    return (n.strip() for n in names.split(",") if n.strip())


def allowed_hosts(env: Mapping[str, str] | None = None, extra: Iterable[str] = ()) -> frozenset[str]:
    """Host names an agent answers to: loopback, `$SCANFLOW_AGENT_ALLOWED_HOSTS`, the hosts of
    `$SCANFLOW_AGENT_URLS` (peers on Kubernetes call each other by service DNS name), `extra`."""
    environ = os.environ if env is None else env
    names = set(LOOPBACK_HOSTS)
    for name in [*_split(environ.get(ALLOWED_HOSTS_ENV, "")), *extra]:
        host = host_name(name)
        if host:
            names.add(host)
    try:
        urls = json.loads(environ.get("SCANFLOW_AGENT_URLS") or "{}")
    except ValueError:
        urls = {}
    for url in (urls.values() if isinstance(urls, dict) else []):
        if isinstance(url, str):
            host = urlsplit(url).hostname
            if host:
                names.add(host.lower())
    return frozenset(names)


OPEN_PATHS = frozenset({"/healthz"})
_JSON_TYPES = ("application/json",)


def refusal(method: str, path: str, headers: Mapping[str, str], *, token: str,
            hosts: frozenset[str]) -> tuple[int, str] | None:
    """Why an agent must refuse this request — `(HTTP status, message)` — or None to serve it.

    `headers` maps lower-case names to values. The message says what to change and never
    contains the token.
    """
    if path in OPEN_PATHS:
        return None
    host = host_name(headers.get("host"))
    if host not in hosts:
        return 403, (f"this agent does not answer to host {headers.get('host')!r}: it serves "
                     f"{', '.join(sorted(hosts))}. Call it as http://127.0.0.1:PORT, or (on a cluster) add "
                     f"the name to {ALLOWED_HOSTS_ENV} where the agent runs.")
    origin = headers.get("origin")
    if origin is not None and (origin == "null" or urlsplit(origin).hostname not in hosts):
        return 403, (f"requests from web pages are refused (Origin {origin!r}). Agents are called by the "
                     "`scanflow` CLI, their peers and the Jupyter server extension (the sidebar).")
    if headers.get("sec-fetch-site", "").lower() == "cross-site":
        return 403, "cross-site requests from a browser are refused (Sec-Fetch-Site: cross-site)."
    if not token_matches(headers.get("authorization"), token):
        how = "was missing" if not headers.get("authorization") else "did not match"
        return 401, (f"this agent requires 'Authorization: Bearer <token>' and the token {how}. The token is "
                     f"the project's agent token: ${TOKEN_ENV} where the agent runs, else the file "
                     f".scanflow/{TOKEN_FILE} of the project that started it (readable only by its owner; "
                     "`scanflow agents token` prints it).")
    if method == "POST":
        ctype = headers.get("content-type")
        has_body = headers.get("content-length", "0") not in ("", "0") or "transfer-encoding" in headers
        if ctype is not None:
            if ctype.split(";", 1)[0].strip().lower() not in _JSON_TYPES:
                return 415, (f"POST bodies must be JSON, not {ctype.split(';', 1)[0]!r}: send "
                             "'Content-Type: application/json' (or no body).")
        elif has_body:
            return 415, "a POST body needs 'Content-Type: application/json'."
    return None


async def refuse_asgi(scope: dict[str, Any], receive: Any, send: Any, *, token: str, hosts: frozenset[str]) -> bool:
    """In ASGI middleware: answer an HTTP request that `refusal` refuses (401 with
    `WWW-Authenticate: Bearer`, or 403) and return True; False lets it through."""
    from starlette.responses import JSONResponse

    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
    refused = refusal(scope["method"], scope["path"], headers, token=token, hosts=hosts)
    if refused is None:
        return False
    status, message = refused
    extra = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    await JSONResponse({"ok": False, "error": message}, status_code=status, headers=extra)(scope, receive, send)
    return True
