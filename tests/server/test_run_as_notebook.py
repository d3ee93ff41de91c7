""""Open run as notebook" (#15): the real server writes the run as a notebook next to its
notebook, and executing that notebook with nbclient reproduces the run's outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require
from tests.server.conftest import api, drain, write_notebook
from tests.server.test_runs_e2e import wait_status

pytestmark = pytest.mark.integration

CELLS = [
    "%load_ext scanflow_jupyter\n%scanflow_app explore",
    {"source": "k = 3", "tags": ["parameters"]},
    "%%executor make --outputs xs\nxs = [i * k for i in range(k)]",
    "%%executor summary --inputs xs --outputs total\ntotal = sum(xs)",
]


async def test_open_run_as_notebook(jp_fetch: Any, jp_root_dir: Path, jp_serverapp: Any) -> None:
    nbclient = require("nbclient")
    import nbformat

    write_notebook(jp_root_dir, "nbs/explore.ipynb", CELLS)
    _, started = await api(jp_fetch, "runs", method="POST", body={"path": "nbs/explore.ipynb", "parameters": {"k": 4}},
                           expect=202)
    run_id = started["run_id"]
    assert (await wait_status(jp_fetch, run_id))["status"] == "succeeded"

    _, doc = await api(jp_fetch, "runs", run_id, "as-notebook", method="POST", body={}, expect=201)
    assert doc == {"run_id": run_id, "path": f"nbs/scanflow-run-{run_id}.ipynb"}
    nb = nbformat.read(str(jp_root_dir / doc["path"]), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import json\nprint(json.dumps({'k': k, 'xs': xs, 'total': total}))"))
    nbclient.NotebookClient(nb, timeout=120, resources={"metadata": {"path": str(jp_root_dir / "nbs")}}).execute()
    assert json.loads(nb.cells[-1].outputs[0]["text"]) == {"k": 4, "xs": [0, 4, 8, 12], "total": 24}

    code, missing = await api(jp_fetch, "runs", "20990101T000000-abcdef", "as-notebook", method="POST", body={})
    assert code == 404, missing
    await drain(jp_serverapp)
