"""A third-party backend, installed only for these tests, appears in the server's backend list and runs.

The package is a real distribution (`*.dist-info` with an `entry_points.txt` in the
`scanflow_jupyter.backends` group) put on `sys.path` and `PYTHONPATH`, as `pip install` would do:
nothing in Scanflow names it. `echo-test` subclasses the local backend and declares fewer
capabilities; `offline-test` says it is unavailable, with its reason and fix.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.server.conftest import api, copy_example, drain

MODULE = '''
from scanflow_jupyter.runtime.backends import Availability
from scanflow_jupyter.runtime.local import LocalBackend


class EchoBackend(LocalBackend):
    """Runs steps like the local backend; a plug-in that declares fewer capabilities."""

    name = "echo-test"
    capabilities = frozenset({"logs", "cancel"})


class OfflineBackend(LocalBackend):
    name = "offline-test"

    @classmethod
    def available(cls):
        return Availability(False, "the echo device is unplugged", "plug the echo device in")
'''


@pytest.fixture
def plugin(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path_factory.mktemp("site")
    (site / "thirdparty_echo_backend.py").write_text(MODULE, encoding="utf-8")
    info = site / "thirdparty_echo_backend-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-echo-backend\nVersion: 0.1\n",
                                   encoding="utf-8")
    (info / "entry_points.txt").write_text(
        "[scanflow_jupyter.backends]\necho-test = thirdparty_echo_backend:EchoBackend\n"
        "offline-test = thirdparty_echo_backend:OfflineBackend\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    return site


async def test_registered_plugins_are_listed_with_their_contract(jp_fetch: Any, plugin: Path) -> None:
    _, doc = await api(jp_fetch, "config", expect=200)
    names = [b["name"] for b in doc["backends"]]
    assert names[:3] == ["local", "docker", "kubernetes"] and {"echo-test", "offline-test"} <= set(names), names
    backends = {b["name"]: b for b in doc["backends"]}
    assert backends["echo-test"] == {"name": "echo-test", "available": True, "reason": None, "fix": None,
                                     "capabilities": ["cancel", "logs"], "execution": "per_step"}
    offline = backends["offline-test"]
    assert offline["available"] is False and offline["reason"] == "the echo device is unplugged"
    assert offline["fix"] == "plug the echo device in"


async def test_a_plugin_backend_runs_a_pipeline_and_an_unavailable_one_is_refused(
        jp_fetch: Any, jp_root_dir: Path, jp_serverapp: Any, plugin: Path) -> None:
    copy_example(jp_root_dir, "linear_chain.ipynb")
    _, refused = await api(jp_fetch, "runs", method="POST", body={"path": "linear_chain.ipynb", "backend": "offline-test"},
                           expect=503)
    assert "unplugged" in refused["message"]
    _, started = await api(jp_fetch, "runs", method="POST", body={"path": "linear_chain.ipynb", "backend": "echo-test"},
                           expect=202)
    run_id = started["run_id"]
    assert started["backend"] == "echo-test"
    for _ in range(600):
        _, run = await api(jp_fetch, "runs", run_id, expect=200)
        if run["status"] not in ("running", "pending"):
            break
        await asyncio.sleep(0.2)
    assert run["status"] == "succeeded", run
    assert run["started_by"] == "sidebar"
    state = json.loads((jp_root_dir / ".scanflow" / "runs" / run_id / "run.json").read_text(encoding="utf-8"))
    assert state["backend"] == "echo-test"
    await drain(jp_serverapp)
