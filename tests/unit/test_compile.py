"""Step notebooks: golden files for the examples, plus structural checks (DESIGN §3)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from scanflow_jupyter.model import Application, CodeBlock, Executor
from scanflow_jupyter.notebook.compile import (
    GENERATED_TAG,
    compile_step,
    dumps,
    parameters_source,
    step_source,
)
from scanflow_jupyter.notebook.parser import parse_notebook, parse_notebook_dict, strip_magic_lines

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
GOLDEN = ROOT / "tests" / "golden"
REGEN_HINT = "run `make golden` (python scripts/regen_golden.py) and review the diff"

STEPS = [
    pytest.param(nb, ex.name, id=f"{nb.stem}/{ex.name}")
    for nb in NOTEBOOKS
    for ex in parse_notebook(nb).executors
]


def _app(name: str) -> Application:
    return parse_notebook(ROOT / "notebooks" / f"{name}.ipynb")


def _roles(nb: dict) -> list[str]:
    return [c["metadata"]["scanflow"]["role"] for c in nb["cells"]]


def _by_role(nb: dict, role: str) -> dict:
    (cell,) = [c for c in nb["cells"] if c["metadata"]["scanflow"]["role"] == role]
    return cell


# --- golden files ---------------------------------------------------------------------------


def test_there_are_example_notebooks():
    assert {p.stem for p in NOTEBOOKS} >= {"linear_chain", "diamond", "parameterised", "failing_step"}


@pytest.mark.parametrize(("notebook", "step"), STEPS)
def test_step_notebook_matches_golden(notebook: Path, step: str):
    app = parse_notebook(notebook)
    golden = GOLDEN / notebook.stem / f"{step}.ipynb"
    assert golden.exists(), f"missing golden file {golden.relative_to(ROOT)}: {REGEN_HINT}"
    actual = dumps(compile_step(app, app.executor(step)))
    assert actual == golden.read_text(encoding="utf-8"), (
        f"step notebook {notebook.stem}/{step} differs from {golden.relative_to(ROOT)}: {REGEN_HINT}"
    )


def test_no_stale_golden_files():
    expected = {
        GOLDEN / nb.stem / f"{ex.name}.ipynb" for nb in NOTEBOOKS for ex in parse_notebook(nb).executors
    }
    other_goldens = {"k8s", "argo"}  # manifests and Workflows: checked by their own tests
    stale = sorted(str(p.relative_to(ROOT)) for p in GOLDEN.glob("*/*.ipynb")
                   if p not in expected and p.parent.name not in other_goldens)
    assert not stale, f"golden files without a step: {stale}; {REGEN_HINT}"


@pytest.mark.parametrize(("notebook", "step"), STEPS)
def test_step_notebook_is_valid_nbformat(notebook: Path, step: str):
    nbformat = pytest.importorskip("nbformat")
    app = parse_notebook(notebook)
    nb = compile_step(app, app.executor(step))
    nbformat.validate(nbformat.from_dict(nb))
    # Every code cell is valid Python once IPython magics are set aside.
    for cell in (c for c in nb["cells"] if c["cell_type"] == "code"):
        ast.parse(strip_magic_lines(cell["source"]))


# --- structure --------------------------------------------------------------------------------


def test_cell_order_and_tags():
    app = _app("diamond")
    nb = compile_step(app, app.executor("train"))
    assert _roles(nb) == ["setup", "parameters", "inputs", "body", "outputs"]
    tags = [c["metadata"].get("tags") for c in nb["cells"]]
    assert tags == [["scanflow-setup"], ["parameters"], [GENERATED_TAG], ["scanflow-body"], [GENERATED_TAG]]
    assert [c["id"] for c in nb["cells"]] == ["setup-0", "parameters", "inputs", "body", "outputs"]
    assert all(c["cell_type"] == "code" and c["outputs"] == [] and c["execution_count"] is None for c in nb["cells"])


def test_source_cell_mapping_points_at_the_users_cells():
    app = _app("parameterised")
    nb = compile_step(app, app.executor("report"))
    source_cells = {c["metadata"]["scanflow"]["role"]: c["metadata"]["scanflow"]["source_cell"] for c in nb["cells"]}
    assert source_cells == {
        "parameters": app.parameters_cell,
        "inputs": None,
        "body": app.executor("report").cell,
        "outputs": None,
    }
    assert app.parameters_cell == 2
    assert app.executor("report").cell == 4


def test_setup_cells_keep_notebook_order_and_cell_numbers():
    app = parse_notebook_dict(
        {
            "cells": [
                {"cell_type": "code", "source": "%%setup\nimport math", "metadata": {}},
                {"cell_type": "code", "source": "%%executor a\nx = math.pi", "metadata": {}},
                {"cell_type": "code", "source": "%%setup\nimport os", "metadata": {}},
            ],
            "metadata": {"kernelspec": {"name": "python3"}},
        },
        "/somewhere/nb.ipynb",
    )
    nb = compile_step(app, app.executor("a"))
    setup = [c for c in nb["cells"] if c["metadata"]["scanflow"]["role"] == "setup"]
    assert [(c["id"], c["metadata"]["scanflow"]["source_cell"], c["source"]) for c in setup] == [
        ("setup-0", 0, "import math"),
        ("setup-1", 2, "import os"),
    ]


def test_scanflow_line_magics_are_stripped_other_magics_kept():
    app = Application(
        name="demo",
        notebook="/x/demo.ipynb",
        setup=[CodeBlock(0, "%load_ext scanflow_jupyter\n%scanflow_app demo --team t\nimport os\n%matplotlib inline")],
        executors=[Executor("a", 1, "  %scanflow status\nx = 1\n%scanflow run\n%time y = 2\n")],
    )
    nb = compile_step(app, app.executors[0])
    assert _by_role(nb, "setup")["source"] == "import os\n%matplotlib inline"
    assert _by_role(nb, "body")["source"] == "x = 1\n%time y = 2"
    assert "%scanflow" not in dumps(nb)
    assert "load_ext" not in dumps(nb)


def test_step_source_keeps_lookalikes():
    assert step_source("%scanflowish = 1\n%load_ext other_ext") == "%scanflowish = 1\n%load_ext other_ext"
    assert step_source("\n\n%scanflow_app a\nx = 1\n\n") == "x = 1"


def test_inputs_and_outputs_cells():
    app = _app("diamond")
    nb = compile_step(app, app.executor("train"))
    inputs = _by_role(nb, "inputs")["source"]
    for var in ("features", "labels", "stats"):
        assert f'{var} = _scanflow.load("{var}")' in inputs
    assert "_scanflow.bind(__scanflow__)" in inputs
    assert _by_role(nb, "outputs")["source"].splitlines()[1:] == ['_scanflow.save("model", model)']
    assert nb["metadata"]["scanflow"] == {
        "app": "diamond",
        "step": "train",
        "notebook": "diamond.ipynb",
        "inputs": ["features", "labels", "stats"],
        "outputs": ["model"],
    }


def test_step_without_inputs_or_outputs_still_binds_context():
    app = Application(name="demo", notebook="demo.ipynb", executors=[Executor("a", 0, "print(1)")])
    nb = compile_step(app, app.executors[0])
    assert _roles(nb) == ["parameters", "inputs", "body", "outputs"]
    assert "_scanflow.load" not in _by_role(nb, "inputs")["source"]
    assert "_scanflow.save" not in _by_role(nb, "outputs")["source"]
    assert _by_role(nb, "parameters")["metadata"]["scanflow"]["source_cell"] is None


def test_parameters_cell_round_trips_values():
    params = {"n_rows": 50, "learning_rate": 0.1, "label": "demo", "flags": [True, None], "nested": {"a": (1, 2)}}
    namespace: dict = {}
    exec(parameters_source(params), namespace)  # noqa: S102 - generated literals only
    assert {k: namespace[k] for k in params} == params
    assert namespace["__scanflow__"] is None


def test_kernelspec_follows_the_application():
    app = Application(name="demo", notebook="demo.ipynb", kernel_name="py311", kernel_display_name="Python 3.11",
                      executors=[Executor("a", 0, "x = 1")])
    assert compile_step(app, app.executors[0])["metadata"]["kernelspec"] == {
        "name": "py311", "display_name": "Python 3.11", "language": "python",
    }
    app.kernel_name = app.kernel_display_name = None
    assert compile_step(app, app.executors[0])["metadata"]["kernelspec"]["name"] == "python3"


def test_metadata_names_the_notebook_file_not_its_path():
    app = _app("linear_chain")
    assert Path(app.notebook).is_absolute()
    nb = compile_step(app, app.executor("extract"))
    assert nb["metadata"]["scanflow"]["notebook"] == "linear_chain.ipynb"
    assert str(ROOT) not in dumps(nb)


def test_dumps_is_stable_and_jupyter_like():
    app = Application(name="demo", notebook="demo.ipynb", executors=[Executor("a", 0, 'label = "naïve → ok"')])
    nb = compile_step(app, app.executors[0])
    text = dumps(nb)
    assert text.endswith("}\n")
    assert text.startswith('{\n "cells": [\n')
    assert "naïve → ok" in text  # not \u-escaped
    assert json.loads(text) == nb
    assert dumps(json.loads(text)) == text
    assert dumps(compile_step(app, app.executors[0])) == text


def test_compile_does_not_mutate_the_application():
    app = _app("diamond")
    before = json.dumps(app.to_dict(), sort_keys=True)
    for ex in app.executors:
        compile_step(app, ex)
    assert json.dumps(app.to_dict(), sort_keys=True) == before


def test_repeated_options_and_params_magic_reach_the_step_notebook():
    app = parse_notebook_dict(
        {
            "cells": [
                {"cell_type": "code", "source": "%%params\nn = 2", "metadata": {}},
                {"cell_type": "code", "source": "%%executor a --outputs x --outputs y  # two outputs\nx = n\ny = x", "metadata": {}},
            ],
            "metadata": {"kernelspec": {"name": "python3"}},
        },
        "/somewhere/nb.ipynb",
    )
    nb = compile_step(app, app.executor("a"))
    assert nb["metadata"]["scanflow"]["outputs"] == ["x", "y"]
    assert _by_role(nb, "outputs")["source"].splitlines()[1:] == ['_scanflow.save("x", x)', '_scanflow.save("y", y)']
    params = _by_role(nb, "parameters")
    assert params["metadata"]["scanflow"]["source_cell"] == 0
    assert "n = 2" in params["source"] and "%%params" not in params["source"]


def test_setup_below_the_parameters_cell_comes_after_the_parameters():
    """A %%setup cell below the parameters cell sees them, as in a top-to-bottom run."""
    app = parse_notebook_dict(
        {
            "cells": [
                {"cell_type": "code", "source": "%%setup\nimport math", "metadata": {}},
                {"cell_type": "code", "source": "lr = 0.1", "metadata": {"tags": ["parameters"]}},
                {"cell_type": "code", "source": "%%setup\nscaled = lr * 10", "metadata": {}},
                {"cell_type": "code", "source": "%%executor a\nx = math.pi * scaled", "metadata": {}},
            ],
            "metadata": {"kernelspec": {"name": "python3"}},
        },
        "/somewhere/nb.ipynb",
    )
    nb = compile_step(app, app.executor("a"))
    assert [c["id"] for c in nb["cells"]] == ["setup-0", "parameters", "setup-1", "inputs", "body", "outputs"]
    assert _by_role(nb, "parameters")["metadata"]["scanflow"]["source_cell"] == 1
    assert nb["cells"][2]["metadata"]["scanflow"]["source_cell"] == 2


# --- multi-cell steps -------------------------------------------------------------------------


def test_multi_cell_step_keeps_its_parts_and_the_markdown_between_them():
    nb = {"cells": [
        {"cell_type": "code", "metadata": {}, "source": "%%executor clean --outputs df\ndf = [1, None]"},
        {"cell_type": "markdown", "metadata": {}, "source": "## Drop missing values"},
        {"cell_type": "code", "metadata": {}, "source": "%%executor clean\n%scanflow status\ndf = [v for v in df if v]"},
    ], "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5}
    app = parse_notebook_dict(nb, "/work/demo.ipynb")
    step = compile_step(app, app.executor("clean"))
    assert _roles(step) == ["parameters", "inputs", "body", "markdown", "body", "outputs"]
    body = step["cells"][2:5]
    assert [c["id"] for c in body] == ["body", "markdown-2", "body-2"]
    assert [c["metadata"]["scanflow"]["source_cell"] for c in body] == [0, 1, 2]
    assert body[1] == {"cell_type": "markdown", "id": "markdown-2", "source": "## Drop missing values",
                       "metadata": {"scanflow": {"role": "markdown", "source_cell": 1}}}
    assert [c["source"] for c in (body[0], body[2])] == ["df = [1, None]", "df = [v for v in df if v]"]
    import nbformat

    nbformat.validate(nbformat.reads(dumps(step), as_version=4))
