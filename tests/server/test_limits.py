"""Request limits that used to be 500s, through a real server and a real run: a parameter value
over the 128 KiB argv-string limit (E2BIG) reaches the step through the params file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.server.conftest import api, drain, write_notebook

pytestmark = pytest.mark.integration

BIG = [
    "%load_ext scanflow_jupyter\n%scanflow_app big",
    {"source": 'text = ""\nn = 0', "tags": ["parameters"]},
    "%%executor measure --outputs size\nsize = {'len': len(text), 'head': text[:2], 'n': n}",
]


async def test_a_parameter_over_the_argv_limit_reaches_the_step(jp_fetch: Any, jp_root_dir: Path,
                                                               jp_serverapp: Any) -> None:
    from scanflow_jupyter.data.records import OutputRecord
    from scanflow_jupyter.data.serializers import load_value
    from scanflow_jupyter.data.store import RunStore

    write_notebook(jp_root_dir, "big.ipynb", BIG)
    value = "é😀" + "x" * (160 * 1024)  # one argv string over 128 KiB fails with E2BIG
    _, started = await api(jp_fetch, "runs", method="POST", expect=202,
                           body={"path": "big.ipynb", "parameters": {"text": value, "n": 3}})
    await drain(jp_serverapp)
    _, run = await api(jp_fetch, "runs", started["run_id"], expect=200)
    assert run["status"] == "succeeded", run
    state = RunStore(jp_root_dir / ".scanflow" / "runs").read_state(started["run_id"])
    assert state.params == {"text": value, "n": 3}
    record = dict(state.steps["measure"].outputs["size"])
    size = load_value(Path(record.pop("folder")), OutputRecord.from_dict(record))
    assert size == {"len": len(value), "head": "é😀", "n": 3}


async def test_a_body_over_the_limit_is_413_and_starts_nothing(jp_fetch: Any, jp_root_dir: Path) -> None:
    write_notebook(jp_root_dir, "big.ipynb", BIG)
    code, doc = await api(jp_fetch, "runs", method="POST",
                          body={"path": "big.ipynb", "parameters": {"text": "x" * (1 << 20)}})
    assert code == 413 and "limit 1048576" in doc["message"] and doc["fix"]
    assert not (jp_root_dir / ".scanflow" / "runs").exists()
