"""A real jupyter_server (pytest-jupyter) with the Scanflow extension, and raw HTTP helpers.

pytest-jupyter runs `async def` tests on its own loop (its hooks are imported below; no
pytest-asyncio marks are needed; do not set asyncio_mode=auto). `jp_fetch` authenticates with
a token header; `raw` sends requests without it (no auth, or cookie auth only) to the live
server's port.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

# pytest-jupyter's fixtures and coroutine-test hooks, for this folder only (a `pytest_plugins`
# line here would load them — autouse ServerApp cleanup included — for the whole suite).
from pytest_jupyter.jupyter_server import *  # noqa: F403
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from tests.conftest import NOTEBOOKS, notebook_dict


@pytest.fixture
def jp_server_config(jp_root_dir: Path) -> dict[str, Any]:
    return {"ServerApp": {"jpserver_extensions": {"scanflow_jupyter.server": True}}}


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The run store and MLflow store of each test live in its server root."""
    monkeypatch.delenv("SCANFLOW_HOME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def write_notebook(root: Path, name: str, cells: list[Any]) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(notebook_dict(cells), indent=1), encoding="utf-8")
    return path


def copy_example(root: Path, name: str, dest: str | None = None) -> Path:
    target = root / (dest or name)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(NOTEBOOKS / name, target)
    return target


async def api(jp_fetch: Any, *parts: str, method: str = "GET", body: Any = None, params: Any = None,
              expect: int | None = None, **kwargs: Any) -> tuple[int, Any]:
    """Call the Scanflow API with the token header; returns (status, JSON or text)."""
    if body is not None and not isinstance(body, str):
        body = json.dumps(body)
    resp: HTTPResponse = await jp_fetch("scanflow", "api", *parts, method=method, body=body, params=params,
                                        raise_error=False, **kwargs)
    text = resp.body.decode()
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        doc = text
    if expect is not None:
        assert resp.code == expect, f"{method} {'/'.join(parts)} → {resp.code}, expected {expect}: {text[:3000]}"
    return resp.code, doc


@pytest.fixture
def server_url(jp_serverapp: Any, jp_http_port: int, jp_base_url: str, http_server_client: Any) -> str:
    """Base URL of the live server (http_server_client makes it listen)."""
    return f"http://127.0.0.1:{jp_http_port}{jp_base_url}"


async def raw(url: str, method: str = "GET", body: str | None = None, headers: dict[str, str] | None = None,
              ) -> HTTPResponse:
    """A request to the live server with exactly these headers (no token added)."""
    client = AsyncHTTPClient()
    return await client.fetch(url, method=method, body=body, headers=headers or {}, raise_error=False,
                              follow_redirects=False, request_timeout=60)


async def drain(serverapp: Any, timeout: float = 120) -> None:
    """Wait until every runner process started by the server has exited and been collected."""
    import asyncio

    runs = serverapp.web_app.settings["scanflow"].runs
    waiters = [m.waiter for m in runs.managed.values() if m.waiter is not None]
    await asyncio.wait_for(asyncio.gather(*waiters), timeout)
