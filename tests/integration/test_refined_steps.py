"""Refined variables and multi-cell steps: the pipeline gives what the notebook gives.

notebooks/refined_steps.ipynb loads `train_df`, cleans it in a two-cell step (markdown between
the parts) and features it, each step listing `train_df` in --inputs and --outputs. The same
notebook is executed top to bottom in a real kernel (with the Scanflow magics) and as a real
pipeline run; the values must agree, and every producer's version must stay in its own folder.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

ROWS = [{"x": 1.0, "y": 2.0}, {"x": 2.0, "y": 4.1}, {"x": 3.0, "y": 5.9}, {"x": 5.0, "y": 10.2}]


def top_to_bottom(project: Any, require: Any) -> dict[str, Any]:
    """Run the notebook's cells in order in one fresh kernel; return its final values."""
    nbformat = require("nbformat")
    nbclient = require("nbclient")
    nb = nbformat.read(project.nb("refined_steps"), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        'import json\nprint("VALUES" + json.dumps({"train_df": train_df, "summary": summary}))'))
    nbclient.NotebookClient(nb, timeout=180, kernel_name="python3",
                            resources={"metadata": {"path": str(project.root)}}).execute()
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("output_type") == "stream")
    return json.loads(text.split("VALUES", 1)[1])


def test_pipeline_gives_what_the_notebook_gives(runner, project, require):
    notebook = top_to_bottom(project, require)
    out = runner.run("refined_steps")

    assert out.result.status == "succeeded", out.statuses()
    assert list(out.result.steps) == ["load", "clean", "feature", "summary"]
    # the same values as the top-to-bottom run
    assert out.output("feature", "train_df") == notebook["train_df"]
    assert out.output("summary", "summary") == notebook["summary"]
    assert notebook["train_df"] == [{**row, "ratio": round(row["y"] / row["x"], 3)} for row in ROWS]
    # each producer's version is kept apart: load's raw rows, clean's rows (both parts ran), feature's
    assert len(out.output("load", "train_df")) == 7
    assert out.output("clean", "train_df") == ROWS
    # each consumer read the version of the nearest producer above it
    for consumer, producer in (("clean", "load"), ("feature", "clean"), ("summary", "feature")):
        step_nb = json.loads((out.step_dir(consumer) / "input.ipynb").read_text(encoding="utf-8"))
        injected = next(c for c in step_nb["cells"] if c["id"] == "injected-parameters")
        line = next(ln for ln in "".join(injected["source"]).splitlines() if ln.startswith("__scanflow__ = "))
        folder = ast.literal_eval(line.split(" = ", 1)[1])["inputs"]["train_df"]["folder"]
        assert Path(folder) == out.step_dir(producer) / "outputs", (consumer, folder)


def test_multi_cell_step_notebook_keeps_parts_and_prose(runner, project):
    out = runner.run("refined_steps")
    assert out.result.status == "succeeded", out.statuses()

    step_nb = json.loads((out.step_dir("clean") / "output.ipynb").read_text(encoding="utf-8"))
    roles = [(c["cell_type"], c["metadata"].get("scanflow", {}).get("role")) for c in step_nb["cells"]]
    body = roles[roles.index(("code", "body")):]
    assert body[:3] == [("code", "body"), ("markdown", "markdown"), ("code", "body")]
    prose = next(c for c in step_nb["cells"] if c["cell_type"] == "markdown")
    assert "drop outliers" in "".join(prose["source"])
    printed = ["".join(o.get("text", "")) for c in step_nb["cells"] if c["cell_type"] == "code" for o in c["outputs"]]
    assert "5 complete rows\n" in printed and "4 rows without outliers\n" in printed
    # the failure of a later part points at that part's cell in the user's notebook
    cells = [c["metadata"]["scanflow"]["source_cell"] for c in step_nb["cells"]
             if c["metadata"].get("scanflow", {}).get("role") in ("body", "markdown")]
    assert cells == [5, 6, 7]


def test_inspect_json_shows_each_step_after_the_producer_above_it(cli_project):
    code, doc = cli_project.cli_json("inspect", "refined_steps.ipynb", "--json")

    assert code == 0, doc
    assert doc["valid"] is True and doc["messages"] == []
    assert {e["name"]: e["depends_on"] for e in doc["executors"]} == {
        "load": [], "clean": ["load"], "feature": ["clean"], "summary": ["feature"]}
    assert doc["order"] == ["load", "clean", "feature", "summary"]
    # 1-based cell numbers; the two-cell step lists both of its cells
    assert {e["name"]: (e["cell"], e["cells"]) for e in doc["executors"]} == {
        "load": (4, [4]), "clean": (6, [6, 8]), "feature": (9, [9]), "summary": (10, [10])}
    assert cli_project.run_folders() == []


def test_app_view_lists_every_cell_of_a_step(project):
    from scanflow_jupyter.server.app_view import app_view

    view = app_view(project.nb("refined_steps"), "refined_steps.ipynb")
    assert view["valid"] is True and view["messages"] == []
    clean = next(n for n in view["nodes"] if n["id"] == "clean")
    assert (clean["cell"], clean["cells"], clean["requires"]) == (6, [6, 8], ["load"])
    assert {"source": "clean", "target": "feature"} in view["edges"]


def test_input_produced_only_below_exits_2_and_runs_nothing(cli_project):
    cli_project.write_notebook("upside_down", [
        "%%executor feature --inputs train_df --outputs train_df\ntrain_df = train_df + [1]",
        "%%executor load --outputs train_df\ntrain_df = [0]",
    ])
    code, doc = cli_project.cli_json("run", "upside_down.ipynb", "--json")

    assert code == 2, doc
    assert doc["status"] == "invalid"
    (msg,) = doc["messages"]
    assert msg["code"] == "input-produced-below"
    assert "'train_df'" in msg["text"] and "'load'" in msg["text"]
    assert "cycle" not in json.dumps(doc)
    assert cli_project.run_folders() == []
