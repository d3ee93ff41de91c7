"""The `scanflow` command line, run as a real subprocess in an isolated project folder."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

STEP_STATUSES = {"succeeded", "failed", "cached", "skipped", "killed"}


def check_run_document(doc: dict[str, Any], steps: list[str] | None) -> None:
    """The `scanflow run --json` shape of the issue: run_id, status, mlflow_run_id, steps."""
    assert {"run_id", "status", "mlflow_run_id", "steps"} <= set(doc), doc
    assert isinstance(doc["run_id"], str) and doc["run_id"]
    assert isinstance(doc["mlflow_run_id"], str) and re.fullmatch(r"[0-9a-f]{32}", doc["mlflow_run_id"])
    if steps is not None:
        assert list(doc["steps"]) == steps
    for name, step in doc["steps"].items():
        failed = step.get("status") == "failed"
        assert set(step) == {"status", "attempts", "duration_s"} | ({"error"} if failed else set()), (name, step)
        if failed:
            assert set(step["error"]) == {"type", "message", "cell", "log"}, (name, step)
        assert step["status"] in STEP_STATUSES
        assert isinstance(step["attempts"], int)
        assert step["duration_s"] is None or isinstance(step["duration_s"], (int, float))


def test_run_json_document_and_exit_0(cli_project):
    code, doc = cli_project.cli_json("run", "linear_chain.ipynb", "--json")

    assert code == 0, doc
    check_run_document(doc, ["extract", "transform", "report"])
    assert doc["status"] == "succeeded"
    for step in doc["steps"].values():
        assert step["status"] == "succeeded" and step["attempts"] == 1
        assert step["duration_s"] > 0
    # the document agrees with the run store and the MLflow store
    state = cli_project.store.read_state(doc["run_id"])
    assert state.status == "succeeded" and state.mlflow_run_id == doc["mlflow_run_id"]
    assert state.started_by == "cli"
    assert cli_project.mlflow_client().get_run(doc["mlflow_run_id"]).info.status == "FINISHED"


def test_failing_notebook_exits_1(cli_project):
    code, doc = cli_project.cli_json("run", "failing_step.ipynb", "--json")

    assert code == 1, doc
    check_run_document(doc, None)
    assert doc["status"] == "failed"
    assert {n: s["status"] for n, s in doc["steps"].items()} == {
        "prepare": "succeeded", "explode": "failed", "after_explode": "skipped", "independent": "succeeded"}
    assert doc["steps"]["after_explode"]["attempts"] == 0
    error = doc["steps"]["explode"]["error"]
    assert error["type"] == "ValueError" and error["message"], error
    assert error["cell"] == cli_project.cell_index("failing_step", "%%executor explode") + 1  # 1-based
    assert Path(error["log"]).is_file(), error


def _result_of(project: Any, doc: dict[str, Any]) -> dict[str, Any]:
    from scanflow_jupyter.data.records import OutputRecord
    from scanflow_jupyter.data.serializers import load_value

    record = dict(project.store.read_state(doc["run_id"]).steps["report"].outputs["result"])
    folder = record.pop("folder")
    return load_value(folder, OutputRecord.from_dict(record))


@pytest.mark.parametrize(("args", "expected"), [
    (["-p", "n_rows=7", "-p", "learning_rate=0.5", "-p", "label=run 7"],
     {"n_rows": 7, "learning_rate": 0.5, "label": "run 7"}),
    (["-p", "learning_rate=1e-3", "-p", "label='None'"],
     {"n_rows": 50, "learning_rate": 0.001, "label": "None"}),
    # an int where the parameter is a float is fine (it stays an int, as in Python)
    (["-p", "n_rows=3", "-p", 'label="false"', "-p", "learning_rate=2"],
     {"n_rows": 3, "learning_rate": 2, "label": "false"}),
    (["-p", "label=hello world", "-p", "learning_rate=0.25"],
     {"n_rows": 50, "learning_rate": 0.25, "label": "hello world"}),
    # values are YAML 1.2: YAML 1.1's on/yes are strings; anything not a number stays a string
    (["-p", "label=on"], {"n_rows": 50, "learning_rate": 0.1, "label": "on"}),
    (["-p", "label=7a"], {"n_rows": 50, "learning_rate": 0.1, "label": "7a"}),
], ids=["int-float-string", "exp-float-quoted", "int-for-float", "string", "yaml-1.2-on", "not-a-number"])
def test_p_values_are_typed_as_yaml(cli_project, args, expected):
    code, doc = cli_project.cli_json("run", "parameterised.ipynb", "--json", *args)

    assert code == 0, doc
    result = _result_of(cli_project, doc)
    for key, value in expected.items():
        assert result[key] == value and type(result[key]) is type(value), (key, result[key])
    rows = [{"x": i, "y": round(i * expected["learning_rate"], 3)} for i in range(expected["n_rows"])]
    assert result["total_y"] == round(sum(r["y"] for r in rows), 3)
    assert cli_project.store.read_state(doc["run_id"]).params == expected


def test_unknown_p_key_and_malformed_p_are_rejected(cli_project):
    code, doc = cli_project.cli_json("run", "parameterised.ipynb", "--json", "-p", "rows=3")
    assert code == 2
    assert doc["status"] == "invalid"
    assert [m["code"] for m in doc["messages"]] == ["unknown-parameter"]

    proc = cli_project.cli("run", "parameterised.ipynb", "--json", "-p", "n_rows")
    assert proc.returncode == 2, proc.stderr
    assert "KEY=VALUE" in proc.stderr
    assert cli_project.run_folders() == []
    assert cli_project.mlflow_run_count() == 0


EXPECTED_INSPECT = {
    "linear_chain": {"app": "linear-chain", "order": ["extract", "transform", "report"],
                     "deps": {"extract": [], "transform": ["extract"], "report": ["transform"]},
                     "parameters": {}},
    "diamond": {"app": "diamond", "order": ["load", "features", "stats", "train"],
                "deps": {"load": [], "features": ["load"], "stats": ["load"], "train": ["features", "stats"]},
                "parameters": {}},
    "failing_step": {"app": "failing-step", "order": None,
                     "deps": {"prepare": [], "explode": ["prepare"], "after_explode": ["explode"],
                              "independent": []},
                     "parameters": {}},
    "parameterised": {"app": "parameterised", "order": ["make_data", "report"],
                      "deps": {"make_data": [], "report": ["make_data"]},
                      "parameters": {"n_rows": 50, "learning_rate": 0.1, "label": "demo"}},
}


@pytest.mark.parametrize("name", sorted(EXPECTED_INSPECT))
def test_inspect_json_on_each_example(project, name):
    code, doc = project.cli_json("inspect", f"{name}.ipynb", "--json")
    expected = EXPECTED_INSPECT[name]

    assert code == 0, doc
    assert doc["valid"] is True
    assert doc["app"] == expected["app"]
    assert doc["parameters"] == expected["parameters"]
    assert [m for m in doc["messages"] if m["severity"] == "error"] == []
    deps = {e["name"]: sorted(e["depends_on"]) for e in doc["executors"]}
    assert deps == expected["deps"]
    for e in doc["executors"]:
        assert e["cell"] == project.cell_index(name, f"%%executor {e['name']}") + 1  # --json: 1-based
    order = doc["order"]
    assert sorted(order) == sorted(expected["deps"])
    if expected["order"] is not None:
        assert order == expected["order"]
    for step, needs in expected["deps"].items():  # a topological order
        assert all(order.index(d) < order.index(step) for d in needs)
    # inspecting runs nothing and tracks nothing
    assert project.run_folders() == []
    assert project.mlflow_run_count() == 0


def test_inspect_text_view_is_the_json_document_as_rich_would_print_it(project):
    """The text view (cli/inspect_view.py, plain lines) shows the --json executors in rich's default table."""
    import io

    from rich.console import Console
    from rich.table import Table

    code, doc = project.cli_json("inspect", "parameterised.ipynb", "--json")
    proc = project.cli("inspect", "parameterised.ipynb")
    assert (code, proc.returncode) == (0, 0), proc.stderr
    table = Table("#", "executor", "cell", "depends on", "inputs", "outputs", "retries", "timeout")
    for e in doc["executors"]:
        table.add_row(str(doc["order"].index(e["name"]) + 1), e["name"], str(e["cell"]), ", ".join(e["depends_on"]) or "-",
                      ", ".join(e["inputs"]) or "-", ", ".join(e["outputs"]) or "-", str(e["retries"]),
                      f"{e['timeout']:g}s" if e["timeout"] else "-")
    console = Console(file=io.StringIO(), width=200, highlight=False)
    console.print(table)
    expected = console.file.getvalue().splitlines()
    lines = proc.stdout.splitlines()
    assert "\x1b[" not in proc.stdout  # a pipe gets no escape codes
    assert lines[0] == "parameterised (team default) — parameterised.ipynb"
    assert lines[1] == "parameters: " + ", ".join(f"{k}={v!r}" for k, v in doc["parameters"].items())
    assert lines[2:2 + len(expected)] == expected
    assert [line.split(" cache key:")[0] for line in lines if " cache key:" in line] == [e["name"] for e in doc["executors"]]
    assert lines[-1] == "valid"


def test_runs_json_lists_runs(cli_project):
    ok_code, ok = cli_project.cli_json("run", "linear_chain.ipynb", "--json")
    bad_code, bad = cli_project.cli_json("run", "failing_step.ipynb", "--json")
    assert (ok_code, bad_code) == (0, 1)

    code, listed = cli_project.cli_json("runs", "--json")
    assert code == 0
    assert isinstance(listed, list) and len(listed) == 2
    by_id = {r["run_id"]: r for r in listed}
    assert set(by_id) == {ok["run_id"], bad["run_id"]}
    assert listed[0]["run_id"] == bad["run_id"], "newest first"
    assert by_id[ok["run_id"]]["status"] == "succeeded"
    assert by_id[ok["run_id"]]["app"] == "linear-chain"
    assert by_id[bad["run_id"]]["status"] == "failed"
    assert by_id[bad["run_id"]]["steps"]["explode"]["status"] == "failed"

    code, limited = cli_project.cli_json("runs", "--json", "--limit", "1")
    assert code == 0 and [r["run_id"] for r in limited] == [bad["run_id"]]
