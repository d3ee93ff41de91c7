"""IPython syntax inside step bodies is accepted by validation and RUN by the pipeline (#11 item 7).

A real pipeline (local runner, real kernels, real run store): one step lists files with
`!mkdir`/`names = !ls` and times a statement with `%time`; the next step is a multi-cell step
whose first part starts with `%%capture cap` and whose second part reads `cap`. The names these
constructs assign are outputs and inputs like any other.
"""

from __future__ import annotations

import json

CELLS = [
    "%load_ext scanflow_jupyter",
    {"source": "prefix = 'f'", "tags": ["parameters"]},
    "%%executor listing --outputs names count\n"
    "!mkdir -p data && touch data/{prefix}1.csv data/{prefix}2.csv\n"
    "names = !ls data\n"
    "names = list(names)\n"
    "%time count = len(names)",
    "%%executor report --inputs names count --outputs captured summary\n"
    "%%capture cap\n"
    "print('captured text')\n"
    "summary = {'files': sorted(names), 'count': count}",
    "%%executor report\n"
    "captured = cap.stdout\n"
    "print(summary)",
]


def _texts(step_nb: dict) -> str:
    return "".join("".join(o.get("text", "")) for c in step_nb["cells"] if c["cell_type"] == "code"
                   for o in c.get("outputs", []))


def test_shell_and_magics_in_bodies_run_as_a_pipeline(runner, project):
    project.write_notebook("magics", CELLS)

    out = runner.run("magics")

    assert out.result.status == "succeeded", out.statuses()
    assert out.output("listing", "names") == ["f1.csv", "f2.csv"]  # `!mkdir` ran with {prefix}; `names = !ls`
    assert out.output("listing", "count") == 2  # assigned inside %time
    assert out.output("report", "summary") == {"files": ["f1.csv", "f2.csv"], "count": 2}
    assert out.output("report", "captured") == "captured text\n"  # %%capture ran and bound `cap`
    listing = json.loads((out.step_dir("listing") / "output.ipynb").read_text(encoding="utf-8"))
    assert "Wall time" in _texts(listing)  # %time printed its timing
    report = json.loads((out.step_dir("report") / "output.ipynb").read_text(encoding="utf-8"))
    assert "captured text" not in _texts(report)  # captured, not shown

    again = runner.run("magics")  # the keys of bodies with magics are stable
    assert again.statuses() == {"listing": "cached", "report": "cached"}

    changed = runner.run("magics", params={"prefix": "g"})  # `{prefix}` in a `!` line is a read
    assert changed.statuses() == {"listing": "succeeded", "report": "succeeded"}
    assert changed.output("report", "summary")["files"] == ["f1.csv", "f2.csv", "g1.csv", "g2.csv"]


def test_the_same_notebook_top_to_bottom_in_a_live_kernel(runner, project, require):
    """With the Scanflow magics loaded, the cells run in one kernel and give the pipeline's values."""
    nbformat = require("nbformat")
    nbclient = require("nbclient")
    nb = nbformat.from_dict(json.loads(project.write_notebook("magics", CELLS).read_text(encoding="utf-8")))
    nb.cells.append(nbformat.v4.new_code_cell(
        'import json\nprint("VALUES" + json.dumps({"names": names, "count": count, "summary": summary, "captured": captured}))'))
    nbclient.NotebookClient(nb, timeout=180, kernel_name="python3",
                            resources={"metadata": {"path": str(project.root)}}).execute()
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("output_type") == "stream")
    values = json.loads(text.split("VALUES", 1)[1])

    assert values == {"names": ["f1.csv", "f2.csv"], "count": 2,
                      "summary": {"files": ["f1.csv", "f2.csv"], "count": 2}, "captured": "captured text\n"}
    out = runner.run("magics")
    assert out.output("report", "summary") == values["summary"] and out.output("report", "captured") == values["captured"]
