"""`c.Scanflow.<trait>` settings reach the API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.server.conftest import api


@pytest.fixture
def jp_server_config(jp_root_dir: Path) -> dict[str, Any]:
    return {"ServerApp": {"jpserver_extensions": {"scanflow_jupyter.server": True}},
            "Scanflow": {"default_backend": "docker", "namespace": "team-ns"}}


async def test_config_traits(jp_fetch: Any) -> None:
    _, doc = await api(jp_fetch, "config", expect=200)
    assert doc["default_backend"] == "docker"
    assert doc["namespace"] == "team-ns"
