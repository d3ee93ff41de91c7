"""Rich outputs in real runs: step kernels use matplotlib's inline backend, so figures land in
output.ipynb as image/png (and on the step's MLflow run as figures/<cell>-<n>.png), HTML
displays and DataFrames as text/html; a step that never plots does not import matplotlib."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from test_docker_support import *  # noqa: F403 - the Docker fixtures

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

CELLS = [
    "%load_ext scanflow_jupyter\n%scanflow_app rich",
    "%%executor plots --outputs n\n"
    "import matplotlib.pyplot as plt\n"
    "from matplotlib.figure import Figure\n"
    "plt.plot([1, 2, 3], [3, 1, 2])\n"
    "plt.show()\n"
    "n = 1\n"
    "fig = Figure()\n"
    "fig.add_subplot().bar([1, 2], [2, 1])\n"
    "fig",  # a figure as the last expression
    "%%executor tables --inputs n --outputs loaded\n"
    "import sys\n"
    "import pandas as pd\n"
    "from IPython.display import HTML, display\n"
    "display(HTML('<b id=\"rich\">bold</b>'))\n"
    "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'matplotlib_inline'))\n"
    "pd.DataFrame({'a': [n, 2]})",
]


def _outputs(step_dir, mime: str) -> list[str]:
    nb = json.loads((step_dir / "output.ipynb").read_text(encoding="utf-8"))
    found = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            data = out.get("data", {}).get(mime)
            if data:
                found.append("".join(data) if isinstance(data, list) else data)
    return found


def test_figures_and_html_reach_output_notebooks_and_mlflow(runner, project, require):
    require("matplotlib")
    require("pandas")
    project.write_notebook("rich", CELLS)
    out = runner.run("rich")
    assert out.statuses() == {"plots": "succeeded", "tables": "succeeded"}

    # plt.show() and the last-expression Figure: two PNGs in the step's body cell
    pngs = _outputs(out.step_dir("plots"), "image/png")
    assert len(pngs) == 2, pngs
    assert all(base64.b64decode(p).startswith(b"\x89PNG") for p in pngs)

    html = _outputs(out.step_dir("tables"), "text/html")
    assert any('<b id="rich">bold</b>' in h for h in html), html
    assert any("<table" in h for h in html), "the DataFrame is shown as an HTML table"
    assert not _outputs(out.step_dir("tables"), "image/png")
    # the kernel's start-up (zygote preload, warm pool) imports no matplotlib: only a step that plots does
    assert out.output("tables", "loaded") == []

    # the figures, extracted beside output.ipynb and attached to the step's MLflow run
    body_cell = project.cell_index("rich", "%%executor plots") + 1  # 1-based, as JupyterLab numbers cells
    names = [f"{body_cell}-1.png", f"{body_cell}-2.png"]
    folder = out.step_dir("plots") / "figures"
    assert sorted(p.name for p in folder.iterdir()) == names
    assert [(folder / n).read_bytes() for n in names] == [base64.b64decode(p) for p in pngs]
    assert not (out.step_dir("tables") / "figures").exists()

    client = project.mlflow_client()
    plots_run = client.get_run(out.state.steps["plots"].mlflow_run_id)
    figures = {a.path for a in client.list_artifacts(plots_run.info.run_id, "figures")}
    assert figures == {f"figures/{n}" for n in names}
    local = client.download_artifacts(plots_run.info.run_id, f"figures/{names[0]}", str(project.root / "dl"))
    assert Path(local).read_bytes() == base64.b64decode(pngs[0])
    tables_run = out.state.steps["tables"].mlflow_run_id
    assert "figures" not in {a.path for a in client.list_artifacts(tables_run)}


DOCKER_CELLS = [
    "%load_ext scanflow_jupyter\n%scanflow_app richbox",
    "%%executor plot --outputs n\n"
    "import matplotlib.pyplot as plt\n"
    "from IPython.display import HTML, display\n"
    "plt.plot([1, 2, 3], [3, 1, 2])\n"
    "plt.show()\n"
    "display(HTML('<i>in a container</i>'))\n"
    "n = 1",
]


def test_figures_in_docker_step_containers(docker_project, runner, require):
    """The step image and container environment use the inline backend too."""
    require("matplotlib")
    docker_project.write_notebook("richbox", DOCKER_CELLS)
    out = runner.run("richbox", backend="docker")
    assert out.statuses() == {"plot": "succeeded"}, {n: s.error for n, s in out.state.steps.items()}
    pngs = _outputs(out.step_dir("plot"), "image/png")
    assert len(pngs) == 1 and base64.b64decode(pngs[0]).startswith(b"\x89PNG")
    assert any("<i>in a container</i>" in h for h in _outputs(out.step_dir("plot"), "text/html"))
    assert [p.name for p in (out.step_dir("plot") / "figures").iterdir()] == [
        f"{docker_project.cell_index('richbox', '%%executor plot') + 1}-1.png"]


def test_each_part_of_a_multi_cell_step_names_its_own_figures(runner, project, require):
    require("matplotlib")
    project.write_notebook("parts", [
        "%load_ext scanflow_jupyter\n%scanflow_app parts",
        "%%executor draw --outputs n\nimport matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()\nn = 1",
        {"cell_type": "markdown", "source": "## Second figure"},
        "%%executor draw\nplt.plot([2, 1])\nplt.show()\nplt.plot([3, 3])\nplt.show()",
    ])
    out = runner.run("parts")
    assert out.statuses() == {"draw": "succeeded"}, {n: s.error for n, s in out.state.steps.items()}
    first = project.cell_index("parts", "%%executor draw --outputs") + 1
    second = project.cell_index("parts", "%%executor draw\nplt") + 1
    assert sorted(p.name for p in (out.step_dir("draw") / "figures").iterdir()) == sorted(
        [f"{first}-1.png", f"{second}-1.png", f"{second}-2.png"])
    client = project.mlflow_client()
    run_id = out.state.steps["draw"].mlflow_run_id
    assert len(client.list_artifacts(run_id, "figures")) == 3
