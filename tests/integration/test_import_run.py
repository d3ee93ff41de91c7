"""`scanflow import` on pipelines in Kale's, Elyra's and Ploomber's formats, then `scanflow run` of
the result for real (fresh kernels, the project's MLflow store): every step succeeds and computes
what the original pipeline computes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "importers"


def _import_and_run(project, tool: str, source: str) -> dict:
    shutil.copytree(FIXTURES / tool, project.root, dirs_exist_ok=True)
    code, imported = project.cli_json("import", "--from", tool, source, "-o", "imported.ipynb", "--json")
    assert code == 0, imported
    assert imported["valid"] and not [m for m in imported["messages"] if m["severity"] == "error"]
    code, doc = project.cli_json("run", "imported.ipynb", "--json")
    assert code == 0, doc
    return doc


def test_kale_notebook_runs_and_logs_its_pipeline_metric(cli_project):
    doc = _import_and_run(cli_project, "kale", "titanic_kale.ipynb")
    assert {n: s["status"] for n, s in doc["steps"].items()} == {
        "loaddata": "succeeded", "featureengineering": "succeeded", "train": "succeeded", "pipeline-metrics": "succeeded"}
    client = cli_project.mlflow_client()
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              filter_string="tags.`scanflow.step` = 'pipeline-metrics'")
    assert [r.data.metrics.get("accuracy") for r in runs] == [pytest.approx(0.6)]  # 3 of the 5 passengers with an age
    # marked --metrics: Kale's pipeline metric is on the pipeline's parent run as well
    parents = [r for r in client.search_runs([runs[0].info.experiment_id]) if "scanflow.step" not in r.data.tags]
    assert [r.data.metrics.get("accuracy") for r in parents] == [pytest.approx(0.6)]


def test_elyra_pipeline_runs_nodes_in_link_order(cli_project):
    doc = _import_and_run(cli_project, "elyra", "hello.pipeline")
    assert {n: s["status"] for n, s in doc["steps"].items()} == {
        "load_data": "succeeded", "process": "succeeded", "train": "succeeded"}
    assert json.loads((cli_project.root / "data" / "clean.json").read_text()) == [2 * x for x in range(10)]


def test_ploomber_pipeline_runs_with_upstream_and_products(cli_project):
    doc = _import_and_run(cli_project, "ploomber", "pipeline.yaml")
    assert {n: s["status"] for n, s in doc["steps"].items()} == {"load": "succeeded", "clean": "succeeded"}
    # the task's `params: {n: 7}` won over the script's default; `clean` read load's data product
    assert json.loads((cli_project.root / "output" / "clean.json").read_text()) == [10 * x for x in range(7)]


@pytest.mark.parametrize(("tool", "source", "check"), [
    ("kale", "titanic_kale.ipynb", "print(accuracy, len(rows), scaled)"),
    ("elyra", "hello.pipeline", "print(open('data/clean.json').read())"),
    ("ploomber", "pipeline.yaml", "print(open('output/clean.json').read())"),
])
def test_imported_notebook_runs_top_to_bottom_as_it_runs_as_a_pipeline(cli_project, require, tool, source, check):
    """The same notebook, executed cell by cell in one fresh kernel (as nbval does), computes what
    the pipeline computes."""
    nbformat = require("nbformat")
    nbclient = require("nbclient")
    shutil.copytree(FIXTURES / tool, cli_project.root, dirs_exist_ok=True)
    code, imported = cli_project.cli_json("import", "--from", tool, source, "-o", "imported.ipynb", "--json")
    assert code == 0, imported
    nb = nbformat.read(cli_project.root / "imported.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(check))
    nbclient.NotebookClient(nb, kernel_name="python3", timeout=180, startup_timeout=120,
                            resources={"metadata": {"path": str(cli_project.root)}}).execute()
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
    expected = {"kale": "0.6 5 [58.0, 4.0, 100.0, 72.0, 8.0]",
                "elyra": json.dumps([2 * x for x in range(10)]),
                "ploomber": json.dumps([10 * x for x in range(7)])}[tool]
    assert printed.strip() == expected.strip()
