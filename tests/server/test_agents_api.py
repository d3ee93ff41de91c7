"""agents routes with real agent processes (supervisor + FastAPI agents on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.agents_support import fresh_store
from tests.server.conftest import api, write_notebook

pytestmark = pytest.mark.integration

TICKER = [
    "%scanflow_app ticking",
    "%%agent ticker\nfrom scanflow_jupyter.agents import sensor\n\n"
    "@sensor(every=\"0.5s\")\ndef tick(ctx):\n    return 42",
]


@pytest.fixture
def agents_root(jp_root_dir: Path, require: Any) -> Any:
    for module in ("fastapi", "uvicorn", "mlflow.tracking"):
        require(module)
    home = jp_root_dir / ".scanflow"
    fresh_store(home)
    write_notebook(jp_root_dir, "agents/ticker.ipynb", TICKER)
    yield jp_root_dir
    from scanflow_jupyter.agents.control import down

    down(home=home)


async def test_start_status_stop(jp_fetch: Any, agents_root: Path) -> None:
    _, doc = await api(jp_fetch, "agents", method="POST", body={"path": "agents/ticker.ipynb", "action": "start"},
                       expect=202)
    assert [(a["name"], a["status"]) for a in doc["agents"]] == [("ticker", "running")], doc
    agent = doc["agents"][0]
    assert agent["url"].startswith("http://127.0.0.1:") and agent["pid"]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:
        _, listed = await api(jp_fetch, "agents", params={"path": "agents/ticker.ipynb"}, expect=200)
        tick = listed["agents"][0]["sensors"][0] if listed["agents"] and listed["agents"][0]["sensors"] else {}
        if tick.get("last_run") or loop.time() > deadline:
            break
        await asyncio.sleep(0.3)
    assert tick["name"] == "tick" and tick["schedule"] == "every 0.5s", tick
    assert tick["last_run"] and tick["next_run"] and tick["last_error"] is None and tick["last_value"] == 42
    assert listed["agents"][0]["uptime_s"] > 0
    assert isinstance(listed["agents"][0]["messages"], list) and len(listed["agents"][0]["messages"]) <= 20
    _, everything = await api(jp_fetch, "agents", expect=200)
    assert [a["name"] for a in everything["agents"]] == ["ticker"]

    _, stopped = await api(jp_fetch, "agents", method="POST", body={"path": "agents/ticker.ipynb", "action": "stop"},
                           expect=202)
    assert stopped["agents"] == []
    _, listed = await api(jp_fetch, "agents", params={"path": "agents/ticker.ipynb"}, expect=200)
    assert listed["agents"] == []


async def test_the_server_talks_to_agents_with_the_token_and_never_shows_it(jp_fetch: Any, agents_root: Path) -> None:
    home = agents_root / ".scanflow"
    _, doc = await api(jp_fetch, "agents", method="POST", body={"path": "agents/ticker.ipynb", "action": "start"},
                       expect=202)
    token = (home / "agent-token").read_text().strip()
    assert oct((home / "agent-token").stat().st_mode & 0o777) == "0o600"
    assert token not in json.dumps(doc)
    url = doc["agents"][0]["url"]
    import httpx

    assert httpx.get(f"{url}/status", timeout=10).status_code == 401  # the browser could not call it directly
    _, listed = await api(jp_fetch, "agents", expect=200)  # ... the server can, with the project's token
    assert listed["agents"][0]["last_error"] is None and token not in json.dumps(listed)
    await api(jp_fetch, "agents", method="POST", body={"path": "agents/ticker.ipynb", "action": "stop"}, expect=202)

    os.chmod(home / "agent-token", 0o644)  # unsafe: others may have read it
    status, refused = await api(jp_fetch, "agents", method="POST",
                                body={"path": "agents/ticker.ipynb", "action": "start"})
    assert status == 409, refused
    assert "readable by other users" in json.dumps(refused) and "rm " in json.dumps(refused)
