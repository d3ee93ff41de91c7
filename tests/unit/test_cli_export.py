"""`scanflow export` through the real CLI entry point (click), both targets."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from scanflow_jupyter.cli import main

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def test_export_argo_writes_a_workflow_with_the_pipeline_dag(tmp_path):
    result = CliRunner().invoke(main, ["export", str(NOTEBOOKS / "diamond.ipynb"), "--to", "argo",
                                       "--image", "*=scanflow/diamond:test", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    path = tmp_path / "diamond.argo.yaml"
    assert result.output.strip() == str(path)
    wf = yaml.safe_load(path.read_text())
    assert wf["kind"] == "Workflow" and wf["metadata"]["namespace"] == "scanflow-diamond-default"
    dag = next(t["dag"]["tasks"] for t in wf["spec"]["templates"] if "dag" in t)
    deps = {t["name"]: sorted(t.get("dependencies", [])) for t in dag}
    assert deps == {"load": [], "features": ["load"], "stats": ["load"], "train": ["features", "stats"]}
    assert wf["metadata"]["labels"]["scanflow.io/app"] == "diamond"


def test_export_k8s_and_argo_share_namespace_and_labels(tmp_path):
    runner = CliRunner()
    k8s = runner.invoke(main, ["export", str(NOTEBOOKS / "agents_loop.ipynb"), "--to", "k8s"])
    assert k8s.exit_code == 0, k8s.output
    docs = [d for d in yaml.safe_load_all(k8s.output) if d]
    namespace = next(d for d in docs if d["kind"] == "Namespace")
    argo = runner.invoke(main, ["export", str(NOTEBOOKS / "agents_loop.ipynb"), "--to", "argo",
                                "--image", "*=x:1"])
    assert argo.exit_code == 0, argo.output
    wf = yaml.safe_load(argo.output)
    assert wf["metadata"]["namespace"] == namespace["metadata"]["name"]
    for label in ("scanflow.io/app", "scanflow.io/team"):
        assert wf["metadata"]["labels"][label] == namespace["metadata"]["labels"][label]


def test_export_argo_rejects_an_unknown_parameter_with_exit_2():
    result = CliRunner().invoke(main, ["export", str(NOTEBOOKS / "diamond.ipynb"), "--to", "argo",
                                       "--image", "*=x:1", "-p", "nope=1"])
    assert result.exit_code == 2
    assert "nope" in result.output
