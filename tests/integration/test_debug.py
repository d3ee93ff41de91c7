"""Debug where you work (#15): a failed step's inputs and parameters are loaded into a real
IPython shell, and a run written as a notebook reproduces the run's outputs under nbclient."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

CELLS = [
    "%load_ext scanflow_jupyter\n%scanflow_app dbg",
    {"source": "n = 3\nscale = 2.5", "tags": ["parameters"]},
    "%%executor make --outputs xs table\nimport numpy as np\nxs = np.arange(n) * scale\ntable = {'n': n, 'names': ['a', 'b']}",
    "%%executor boom --inputs xs table\ntotal = float(xs.sum())\nraise ValueError(f'bad total {total}')",
    "%%executor after --inputs xs --requires boom\ny = xs",
]


@pytest.fixture
def shell(tmp_path_factory):
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    if InteractiveShell.initialized():
        ip = InteractiveShell.instance()
    else:
        config = Config()
        config.HistoryManager.enabled = False
        ip = InteractiveShell.instance(config=config, ipython_dir=str(tmp_path_factory.mktemp("ipython")))
    ip.reset(new_session=False)
    return ip


def test_debug_loads_the_failed_steps_exact_inputs_and_params(runner, project, shell, capsys, monkeypatch):
    import numpy as np

    from scanflow_jupyter.notebook.debug import DebugError, debug_step
    from scanflow_jupyter.params import parse_params

    project.write_notebook("dbg", CELLS)
    first = runner.run("dbg")
    assert first.statuses()["boom"] == "failed"
    second = runner.run("dbg", params=parse_params(["n=4"]))
    assert second.statuses()["boom"] == "failed"

    debug_step("boom", None, shell)  # default: the newest run that ran it
    ns = shell.user_ns
    np.testing.assert_array_equal(ns["xs"], np.arange(4) * 2.5)
    assert ns["table"] == {"n": 4, "names": ["a", "b"]}
    assert (ns["n"], ns["scale"]) == (4, 2.5)
    out = capsys.readouterr().out
    assert f"run {second.result.run_id}" in out and "(failed)" in out
    assert "xs: " in out and "re-run the body: run cell 4 of dbg.ipynb" in out
    assert "error (cell 4): ValueError: bad total 15.0" in out

    debug_step("boom", first.result.run_id, shell)  # an older run by id
    np.testing.assert_array_equal(shell.user_ns["xs"], np.arange(3) * 2.5)
    assert shell.user_ns["n"] == 3

    shell.user_ns.pop("xs")
    shell.run_line_magic("load_ext", "scanflow_jupyter")
    shell.run_line_magic("scanflow", f"debug boom --run {second.result.run_id}")  # the line magic
    np.testing.assert_array_equal(shell.user_ns["xs"], np.arange(4) * 2.5)
    from IPython.core.error import UsageError

    with pytest.raises(UsageError, match="no run ran a step 'nope'"):
        shell.run_line_magic("scanflow", "debug nope")

    with pytest.raises(DebugError, match="known steps: after, boom, make"):
        debug_step("nope", None, shell)
    with pytest.raises(DebugError, match="no run 'missing-run'"):
        debug_step("boom", "missing-run", shell)
    with pytest.raises(DebugError, match="step 'after' never started .* a producer did not finish"):
        debug_step("after", second.result.run_id, shell)

    # a kernel in a subfolder of the project (JupyterLab keeps runs at its root's .scanflow)
    (project.root / "sub").mkdir()
    monkeypatch.chdir(project.root / "sub")
    monkeypatch.delenv("SCANFLOW_HOME")
    shell.user_ns.pop("xs")
    debug_step("boom", first.result.run_id, shell)
    np.testing.assert_array_equal(shell.user_ns["xs"], np.arange(3) * 2.5)


def test_run_as_notebook_reproduces_the_outputs(runner, project, require):
    nbclient = require("nbclient")
    import nbformat

    from scanflow_jupyter.notebook.debug import run_as_notebook

    project.write_notebook("dbg", CELLS)
    outcome = runner.run("dbg")
    path = run_as_notebook(project.root, outcome.result.run_id)
    assert path == project.root / f"scanflow-run-{outcome.result.run_id}.ipynb"
    nb = nbformat.read(str(path), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        "import json\nprint(json.dumps({'n': n, 'scale': scale, 'xs': xs.tolist(), 'table': table}))"))
    nbclient.NotebookClient(nb, timeout=120, resources={"metadata": {"path": str(project.root)}}).execute()
    shown = json.loads(nb.cells[-1].outputs[0]["text"])
    assert shown == {"n": 3, "scale": 2.5, "xs": [0.0, 2.5, 5.0], "table": {"n": 3, "names": ["a", "b"]}}
    # run (or opened in the sidebar) as if it were the pipeline: it says what it is and where the pipeline is
    from scanflow_jupyter.notebook.application import InvalidApplication, load_application

    with pytest.raises(InvalidApplication) as raised:
        load_application(path)
    [message] = [m for m in raised.value.messages if m.severity == "error"]
    assert message.code == "generated-notebook"
    assert outcome.result.run_id in message.text and "dbg.ipynb" in message.text
    assert "open dbg.ipynb" in message.fix
