"""POST builds / GET builds/{id} with the real Docker Engine (fails in CI without one)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_docker_support import TINY_CELLS, docker_client, offline_base  # noqa: F401
from tests.server.conftest import api, write_notebook

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]


@pytest.fixture
def jp_server_config(offline_base: str) -> dict[str, Any]:  # noqa: F811
    return {"ServerApp": {"jpserver_extensions": {"scanflow_jupyter.server": True}},
            "Scanflow": {"base_image": offline_base}}


async def test_build_job(jp_fetch: Any, jp_root_dir: Path, docker_client: Any) -> None:  # noqa: F811
    write_notebook(jp_root_dir, "tiny.ipynb", TINY_CELLS)
    _, started = await api(jp_fetch, "builds", method="POST", body={"path": "tiny.ipynb"}, expect=202)
    assert started["status"] == "running" and len(started["build_id"]) == 12
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 1200
    while True:
        _, job = await api(jp_fetch, "builds", started["build_id"], expect=200)
        if job["status"] != "running" or loop.time() > deadline:
            break
        await asyncio.sleep(1)
    assert job["status"] == "succeeded", job["log"][-3000:]
    assert set(job["images"]) == {"first", "second", "third"}
    for image in job["images"].values():
        assert docker_client.images.get(image).labels["scanflow.io/app"] == "tiny"
