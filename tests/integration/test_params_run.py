"""Typed parameters in real runs: YAML `-p` values and `-f` files reach the step with their
types, and a %%setup cell below the parameters cell computes derived values from the run's
parameters (the same as a top-to-bottom run), with setup-ahead kernels on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

CELLS = [
    "%load_ext scanflow_jupyter\n%scanflow_app typed",
    "%%setup\nimport math",  # above the parameters: may run ahead
    {"source": "n = 2\nlayers = [1]\nopts = None\nlr = 0.5", "tags": ["parameters"]},
    "%%setup\nhalf = n / 2\nroot = math.sqrt(n)",  # below the parameters: sees the run's values
    "%%executor a --outputs out\nout = {'n': n, 'half': half, 'root': root, 'layers': layers, 'opts': opts, 'lr': lr}",
]


def _out(project, doc_or_run_dir) -> dict:
    from scanflow_jupyter.data.records import OutputRecord
    from scanflow_jupyter.data.serializers import load_value

    state = json.loads(Path(doc_or_run_dir, "run.json").read_text(encoding="utf-8"))
    record = dict(state["steps"]["a"]["outputs"]["out"])
    return load_value(Path(record.pop("folder")), OutputRecord.from_dict(record))


def test_yaml_values_and_setup_below_parameters(runner, project):
    from scanflow_jupyter.params import parse_params

    project.write_notebook("typed", CELLS)
    default = runner.run("typed")
    assert default.statuses() == {"a": "succeeded"}
    assert default.output("a", "out") == {"n": 2, "half": 1.0, "root": 2 ** 0.5, "layers": [1], "opts": None, "lr": 0.5}

    given = runner.run("typed", params=parse_params(["n=16", "layers=[4, 5]", "opts={a: 1, b: [x]}", "lr=1"]))
    assert given.statuses() == {"a": "succeeded"}
    assert given.output("a", "out") == {"n": 16, "half": 8.0, "root": 4.0, "layers": [4, 5],
                                        "opts": {"a": 1, "b": ["x"]}, "lr": 1}


def test_params_file_and_p_override_through_the_cli(cli_project):
    project = cli_project
    project.write_notebook("typed", CELLS)
    (project.root / "params.yaml").write_text("n: 4\nlayers: [7]\nlr: 1e-3\n", encoding="utf-8")
    code, doc = project.cli_json("run", "typed.ipynb", "--json", "-f", "params.yaml", "-p", "n=9")
    assert code == 0, doc
    assert _out(project, doc["run_dir"]) == {"n": 9, "half": 4.5, "root": 3.0, "layers": [7], "opts": None, "lr": 0.001}
