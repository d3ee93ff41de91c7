"""The server's `app?path=` answers the application of a jupytext percent `.py` / MyST `.md` notebook."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.server.conftest import api, copy_example


@pytest.mark.parametrize(("fmt", "name"), [("py:percent", "nbs/chain.py"), ("md:myst", "nbs/chain.md")])
async def test_app_view_of_text_notebook(jp_fetch: Any, jp_root_dir: Path, require: Any, fmt: str, name: str) -> None:
    jupytext = require("jupytext")
    source = copy_example(jp_root_dir, "linear_chain.ipynb", "nbs/linear_chain.ipynb")
    jupytext.write(jupytext.read(source), jp_root_dir / name, fmt=fmt)
    _, want = await api(jp_fetch, "app", params={"path": "nbs/linear_chain.ipynb"}, expect=200)
    _, doc = await api(jp_fetch, "app", params={"path": name}, expect=200)
    assert doc["valid"] is True and doc["path"] == name
    assert doc["app"]["name"] == "linear-chain"
    assert doc["nodes"] == want["nodes"] and doc["edges"] == want["edges"]
    assert {n["id"] for n in doc["nodes"]} == {"extract", "transform", "report"}


async def test_app_view_of_plain_script_names_the_format(jp_fetch: Any, jp_root_dir: Path, require: Any) -> None:
    require("jupytext")
    (jp_root_dir / "script.py").write_text("x = 1\n", encoding="utf-8")
    _, doc = await api(jp_fetch, "app", params={"path": "script.py"}, expect=200)
    assert doc["valid"] is False
    assert doc["messages"][0]["code"] == "not-a-notebook" and "percent-format" in doc["messages"][0]["text"]
