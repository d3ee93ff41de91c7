"""Importers (Kale tags, Elyra .pipeline, Ploomber pipeline.yaml) → Scanflow notebooks, on fixtures
in the tools' own formats (tests/fixtures/importers/), checked with Scanflow's real parser and
validation, and the `scanflow import` command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from scanflow_jupyter.cli import main
from scanflow_jupyter.importers.common import ImportFailure, finish, free_names, percent_cells
from scanflow_jupyter.importers.elyra import import_elyra
from scanflow_jupyter.importers.kale import import_kale
from scanflow_jupyter.importers.ploomber import import_ploomber
from scanflow_jupyter.notebook.parser import parse_notebook_dict
from scanflow_jupyter.notebook.validate import has_errors, validate

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "importers"


def _copy(tmp_path: Path, tool: str) -> Path:
    shutil.copytree(FIXTURES / tool, tmp_path, dirs_exist_ok=True)
    return tmp_path


def _app(result, tmp_path: Path):
    messages = finish(result, tmp_path / "out.ipynb")
    assert not has_errors(messages), [m.text for m in messages]
    return parse_notebook_dict(result.notebook, str(tmp_path / "out.ipynb"))


def _sources(result) -> list[tuple[str, str]]:
    return [(c["cell_type"], c["source"]) for c in result.notebook["cells"]]


def test_kale_tags_become_setup_parameters_and_executors(tmp_path):
    result = import_kale(_copy(tmp_path, "kale") / "titanic_kale.ipynb")
    app = _app(result, tmp_path)
    assert app.name == "titanic-ml"  # kubeflow_notebook.pipeline_name
    assert app.parameters == {"min_age": 1, "factor": 2.0}
    assert [b.source.split("\n")[0] for b in app.setup] == ["import csv", "def survival_rate(rows):"]
    ex = {e.name: e for e in app.executors}
    assert list(ex) == ["loaddata", "featureengineering", "train", "pipeline-metrics"]
    # as Kale infers them: names a step reads that an earlier step defines (not setup names, not parameters)
    assert (ex["loaddata"].inputs, ex["loaddata"].outputs) == ([], ["rows"])
    assert (ex["featureengineering"].inputs, ex["featureengineering"].outputs) == (["rows"], ["scaled"])
    assert (ex["train"].inputs, ex["train"].outputs) == (["scaled", "rows"], ["accuracy"])
    assert ex["pipeline-metrics"].inputs == ["accuracy"] and ex["pipeline-metrics"].metrics == ["accuracy"]
    assert ex["loaddata"].image == "python:3.11-slim"  # image:REF
    assert "mlflow.log_metric('accuracy', float(accuracy))" in ex["pipeline-metrics"].source
    assert ex["featureengineering"].requires == ["loaddata"] and ex["train"].requires == ["featureengineering"]
    assert (ex["train"].resources.cpu, ex["train"].resources.memory) == ("1", "1Gi")  # limit:cpu:1, limit:memory:1Gi
    # the untagged cell continues its block; markdown between the parts stays above the executor
    assert 'rows = [r for r in rows if r["age"]]' in ex["loaddata"].source
    kinds = _sources(result)
    # the skip cell stays exploration (a plain code cell, not part of the pipeline)
    assert ("code", 'print(len(rows), "passengers with an age")') in kinds
    assert {(n.where, n.text.split(" ")[1]) for n in result.notes} >= {("cell 13", "'annotation:team:titanic'")}
    assert any("docker_image" in n.text for n in result.notes)


def test_multi_cell_steps_as_continuation_cells_or_one_cell(tmp_path):
    path = _copy(tmp_path, "kale") / "titanic_kale.ipynb"
    cells = _sources(import_kale(path, continuation=True))
    at = cells.index(("markdown", "## Features"))
    assert cells[at + 1:at + 4] == [
        ("code", "%%executor featureengineering --requires loaddata --inputs rows --outputs scaled\n"
                 'ages = [float(r["age"]) for r in rows if float(r["age"]) >= min_age]'),
        ("markdown", "Scale the ages."),  # prose between the parts stays between them
        ("code", "%%executor featureengineering\nscaled = [a * factor for a in ages]")]
    joined = _sources(import_kale(path, continuation=False))
    at = joined.index(("markdown", "## Features"))
    assert joined[at + 1:at + 3] == [
        ("markdown", "Scale the ages."),  # the parser without continuation cells: markdown above one cell
        ("code", "%%executor featureengineering --requires loaddata --inputs rows --outputs scaled\n"
                 'ages = [float(r["age"]) for r in rows if float(r["age"]) >= min_age]\n\nscaled = [a * factor for a in ages]')]


def test_kale_refined_variable_comes_from_the_nearest_producer_above(tmp_path):
    nb = json.loads((FIXTURES / "kale" / "titanic_kale.ipynb").read_text())
    cells = [
        {"cell_type": "code", "metadata": {"tags": ["block:load"]}, "source": "df = [3, 1, 2]"},
        {"cell_type": "code", "metadata": {"tags": ["block:clean", "prev:load"]}, "source": "df = sorted(df)"},
        {"cell_type": "code", "metadata": {"tags": ["block:the report!", "prev:clean"]}, "source": "first = df[0]"},
        {"cell_type": "code", "metadata": {"tags": ["limit:disk:1Gi"]}, "source": "print(first)"},
        {"cell_type": "code", "metadata": {"tags": ["block:load", "block:clean"]}, "source": "print(df)"},
    ]
    path = tmp_path / "refine.ipynb"
    path.write_text(json.dumps({**nb, "cells": cells}))
    result = import_kale(path)
    ex = {e.name: e for e in parse_notebook_dict(result.notebook, str(path)).executors}
    assert (ex["load"].outputs, ex["clean"].inputs, ex["clean"].outputs, ex["the-report"].inputs) == (["df"], ["df"], ["df"], ["df"])
    assert [(n.where, n.text.split(" ")[1]) for n in result.notes if n.where.startswith("cell")] == [("cell 3", "'the"), ("cell 4", "'limit:disk:1Gi':"), ("cell 5", "cell")]


def test_kale_metrics_cell_that_is_not_python_is_refused(tmp_path):
    nb = json.loads((FIXTURES / "kale" / "titanic_kale.ipynb").read_text())
    nb["cells"][-1]["source"] = "print(accuracy"
    path = tmp_path / "bad.ipynb"
    path.write_text(json.dumps(nb))
    with pytest.raises(ImportFailure, match=r"cell 14 \(pipeline-metrics\) is not valid Python"):
        import_kale(path)


def test_bound_names_are_the_global_ones():
    from scanflow_jupyter.importers.common import defined_names

    code = ("import os.path as p, json\nrows = [r for r in range(3)]\ndef f(y):\n    tmp = y\n    global seen\n"
            "    seen = 1\nclass C:\n    attr = 1\nfor i, (a, b) in []:\n    pass\nwith open('x') as fh:\n    pass\n(w := 2)")
    assert defined_names(code) == {"p", "json", "rows", "f", "seen", "C", "i", "a", "b", "fh", "w"}


def test_free_names_follow_statement_order_and_ignore_local_scopes():
    code = "x = a + 1\nb = [i for i in x]\ndef f(y):\n    return y + c\nz = lambda q: q + d\nfiles = !ls\nprint(x, e)"
    assert free_names(code) == ["a", "c", "d", "__ipython_magic__", "print", "e"]  # `!ls` through notebook.ipython_source


def test_elyra_nodes_links_and_resources(tmp_path):
    result = import_elyra(_copy(tmp_path, "elyra") / "hello.pipeline")
    app = _app(result, tmp_path)
    assert app.name == "hello"
    ex = {e.name: e for e in app.executors}
    assert list(ex) == ["load_data", "process", "train"]  # producers above consumers, not canvas order
    assert (ex["process"].requires, ex["train"].requires) == (["load_data"], ["process"])
    assert (ex["train"].resources.cpu, ex["train"].resources.memory) == ("1", "1G")  # Elyra memory is GB
    assert 'json.dump(list(range(10)), f)' in ex["load_data"].source and "clean = [2 * x for x in raw]" in ex["process"].source
    assert ("markdown", "# Load\n\nWrite the raw numbers.") in _sources(result)
    dropped = {(n.where, n.text.split(" ")[0]) for n in result.notes}
    assert {("node load_data", "env_vars"), ("node load_data", "outputs"), ("node train", "runtime_image")} <= dropped


def test_elyra_pipeline_defaults_apply_to_nodes_that_leave_them_empty(tmp_path):
    _copy(tmp_path, "elyra")
    doc = json.loads((tmp_path / "hello.pipeline").read_text())
    doc["pipelines"][0]["app_data"]["properties"]["pipeline_defaults"] = {"cpu": 2, "env_vars": [{"env_var": "A", "value": "1"}]}
    doc["pipelines"][0]["app_data"]["properties"]["pipeline_parameters"] = [{"name": "n", "default_value": {"type": "Integer", "value": 3}}]
    (tmp_path / "d.pipeline").write_text(json.dumps(doc))
    result = import_elyra(tmp_path / "d.pipeline")
    ex = {e.name: e for e in parse_notebook_dict(result.notebook, str(tmp_path / "d.ipynb")).executors}
    assert (ex["load_data"].resources.cpu, ex["train"].resources.cpu) == ("2", "1")  # the node's own value wins
    assert {n.where for n in result.notes if n.text.startswith("env_vars")} == {"node load_data", "node process", "node train"}
    assert any(n.where == "pipeline" and "pipeline_parameters" in n.text for n in result.notes)


def test_elyra_older_format_dependencies_and_bad_files(tmp_path):
    _copy(tmp_path, "elyra")
    doc = json.loads((tmp_path / "hello.pipeline").read_text())
    for node in doc["pipelines"][0]["nodes"]:  # Elyra < 3: properties directly in app_data
        node["app_data"] = {**node["app_data"].pop("component_parameters"), "ui_data": node["app_data"]["ui_data"]}
    doc["pipelines"][0]["nodes"][0]["app_data"]["dependencies"] = ["data helper.txt"]
    (tmp_path / "old.pipeline").write_text(json.dumps(doc))
    result = import_elyra(tmp_path / "old.pipeline")
    assert "%%executor train --requires process --deps 'data helper.txt' --cpu 1 --memory 1G" in [s.split("\n")[0] for _, s in _sources(result)]
    (tmp_path / "x.pipeline").write_text(json.dumps({"doc_type": "pipeline"}))
    with pytest.raises(ImportFailure, match="no 'pipelines' list"):
        import_elyra(tmp_path / "x.pipeline")
    doc["pipelines"][0]["nodes"][0]["app_data"]["filename"] = "model.r"
    (tmp_path / "r.pipeline").write_text(json.dumps(doc))
    with pytest.raises(ImportFailure, match="R nodes cannot run"):
        import_elyra(tmp_path / "r.pipeline")


def test_ploomber_tasks_upstream_products_and_params(tmp_path):
    result = import_ploomber(_copy(tmp_path, "ploomber") / "pipeline.yaml")
    app = _app(result, tmp_path)
    ex = {e.name: e for e in app.executors}
    assert list(ex) == ["load", "clean"] and ex["clean"].requires == ["load"]  # from clean.ipynb's `upstream = ["load"]`
    assert "upstream = {'load': {'nb': 'output/load.ipynb', 'data': 'output/numbers.json'}}" in ex["clean"].source
    assert "product = {'nb': 'output/clean.ipynb', 'data': 'output/clean.json'}" in ex["clean"].source
    load = ex["load"].source
    assert load.index("n = 5") < load.index("n = 7")  # the task's params win over the script's defaults
    assert "upstream = None" not in load and "product = None" not in load
    assert [n.where for n in result.notes] == ["task load", "task clean"]  # the `nb` products


def test_ploomber_unknown_upstream_is_refused(tmp_path):
    _copy(tmp_path, "ploomber")
    (tmp_path / "pipeline.yaml").write_text("tasks:\n  - source: clean.ipynb\n    product: {data: out.json}\n")
    with pytest.raises(ImportFailure, match="declares upstream load"):
        import_ploomber(tmp_path / "pipeline.yaml")


def test_percent_cells():
    cells = percent_cells('# %% tags=["parameters"]\nn = 1\n\n# %% [markdown]\n# Title\n\n# %%\nprint(n)\n')
    assert [(c["cell_type"], c["source"], c["metadata"].get("tags")) for c in cells] == [
        ("code", "n = 1", ["parameters"]), ("markdown", "Title", None), ("code", "print(n)", None)]


def test_cli_import_exit_codes_and_json(tmp_path, monkeypatch):
    monkeypatch.chdir(_copy(tmp_path, "kale"))
    runner = CliRunner()
    ok = runner.invoke(main, ["import", "--from", "kale", "titanic_kale.ipynb", "--json"])
    assert ok.exit_code == 0, ok.output
    doc = json.loads(ok.output)
    assert doc["valid"] and doc["output"] == "titanic_kale.scanflow.ipynb"
    assert {"where": "cell 13", "text": doc["not_carried_over"][1]["text"]} in doc["not_carried_over"]
    again = runner.invoke(main, ["import", "--from", "kale", "titanic_kale.ipynb"])
    assert again.exit_code == 2 and "already exists" in again.output and "--force" in again.output
    assert runner.invoke(main, ["import", "--from", "kale", "titanic_kale.ipynb", "--force"]).exit_code == 0
    bad = runner.invoke(main, ["import", "--from", "elyra", "titanic_kale.ipynb", "-o", "x.ipynb", "--json"])
    assert bad.exit_code == 2 and json.loads(bad.output)["messages"][0]["code"] == "import-failed"
    nb = json.loads((tmp_path / "titanic_kale.ipynb").read_text())
    nb["cells"][9]["metadata"]["tags"] = ["block:featureengineering", "prev:nowhere"]
    (tmp_path / "broken.ipynb").write_text(json.dumps(nb))
    invalid = runner.invoke(main, ["import", "--from", "kale", "broken.ipynb", "--json"])
    doc = json.loads(invalid.output)
    assert invalid.exit_code == 2 and not doc["valid"]
    assert [m["code"] for m in doc["messages"] if m["severity"] == "error"] == ["unknown-dependency"]
    assert (tmp_path / "broken.scanflow.ipynb").exists()  # written, so the user can fix it
    missing = runner.invoke(main, ["import", "--from", "ploomber", "nowhere.yaml", "--json"])
    assert missing.exit_code == 2 and "nowhere.yaml does not exist" in json.loads(missing.output)["messages"][0]["text"]
    (tmp_path / "sub").mkdir()
    elsewhere = runner.invoke(main, ["import", "--from", "kale", "titanic_kale.ipynb", "-o", "sub/t.ipynb", "--json"])
    assert elsewhere.exit_code == 0
    assert [n["where"] for n in json.loads(elsewhere.output)["not_carried_over"]][-1] == "output"


def test_ploomber_placeholders_are_listed(tmp_path):
    _copy(tmp_path, "ploomber")
    spec = (tmp_path / "pipeline.yaml").read_text().replace("output/numbers.json", "'{{root}}/numbers.json'")
    (tmp_path / "pipeline.yaml").write_text(spec)
    result = import_ploomber(tmp_path / "pipeline.yaml")
    assert [n.where for n in result.notes if "placeholders" in n.text] == ["task load"]


def test_elyra_node_cell_starting_with_a_cell_magic_stays_a_cell_magic(tmp_path):
    """With continuation cells each node cell is a part, so `%%capture` is its part's first line and runs as one."""
    _copy(tmp_path, "elyra")
    nb = json.loads((tmp_path / "train.ipynb").read_text())
    nb["cells"][1]["source"] = "%%capture log\n" + "".join(nb["cells"][1]["source"])
    (tmp_path / "train.ipynb").write_text(json.dumps(nb))
    result = import_elyra(tmp_path / "hello.pipeline")
    app = _app(result, tmp_path)
    train = next(e for e in app.executors if e.name == "train")
    assert [p.source.split("\n")[0] for p in train.code_parts()] == ["%%capture log", "mean = sum(clean) / len(clean)"]
    assert not [n for n in result.notes if "cell magic" in n.text]
    assert not [m for m in validate(app) if m.severity == "error"]


def test_kale_metrics_cell_with_a_shell_line_is_read_through_ipython(tmp_path):
    nb = json.loads((FIXTURES / "kale" / "titanic_kale.ipynb").read_text())
    nb["cells"][-1]["source"] = "print(accuracy)\n!echo done"
    path = tmp_path / "shell.ipynb"
    path.write_text(json.dumps(nb))
    result = import_kale(path)
    assert any("pipeline-metrics line 2 is not a variable name" in n.text for n in result.notes)
    assert "--metrics accuracy" in json.dumps(result.notebook)
