"""MLflow in the live kernel after `%load_ext scanflow_jupyter` (a real ipykernel driven by nbclient):
runs go to the project's store and the app's experiment, tagged `scanflow.interactive`, unless the
user chose a tracking URI."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def _execute(require, cwd: Path, sources: list[str]) -> list[str]:  # noqa: ANN001
    """Run the cells in a fresh python3 kernel with cwd `cwd`; the text each cell printed."""
    nbformat = require("nbformat")
    nbclient = require("nbclient")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nbclient.NotebookClient(nb, kernel_name="python3", timeout=180, startup_timeout=120,
                            resources={"metadata": {"path": str(cwd)}}).execute()
    return ["".join(o.get("text", "") for o in c.outputs if o.output_type == "stream" and o.name == "stdout")
            for c in nb.cells]


def _runs(db: Path) -> list[tuple[str, str, dict[str, str], dict[str, float]]]:
    """(run id, experiment name, tags, metrics) of every run in an MLflow sqlite store."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT r.run_uuid, e.name FROM runs r JOIN experiments e "
                            "ON r.experiment_id = e.experiment_id").fetchall()
        out = []
        for run_id, exp in rows:
            tags = dict(conn.execute("SELECT key, value FROM tags WHERE run_uuid=?", (run_id,)).fetchall())
            metrics = dict(conn.execute("SELECT key, value FROM latest_metrics WHERE run_uuid=?", (run_id,)).fetchall())
            out.append((run_id, exp, tags, metrics))
        return out


def _run_line(text: str) -> tuple[str, str]:
    line = [x for x in text.splitlines() if x.startswith("RUN ")]
    assert len(line) == 1, text
    _, run_id, uri = line[0].split()
    return run_id, uri


LOG = ("import mlflow\nmlflow.log_metric('accuracy', 0.93)\n"
       "print('RUN', mlflow.active_run().info.run_id, mlflow.get_tracking_uri())\nmlflow.end_run()")


def test_load_ext_sends_mlflow_calls_to_the_project_store(project, require) -> None:  # noqa: ANN001
    printed = _execute(require, project.root, ["%load_ext scanflow_jupyter\n%scanflow_app live-demo", LOG])
    run_id, uri = _run_line(printed[1])
    assert uri == project.tracking_uri()
    runs = _runs(project.db)
    assert [(r[0], r[1]) for r in runs] == [(run_id, "live-demo")]
    assert runs[0][2]["scanflow.interactive"] == "true" and runs[0][3] == {"accuracy": 0.93}
    assert not (project.root / "mlflow.db").exists() and not (project.root / "mlruns").exists()
    artifacts = project.home / "mlartifacts" / "live-demo"  # the experiment a pipeline run would create
    client = project.mlflow_client()
    assert client.get_experiment_by_name("live-demo").artifact_location == artifacts.as_uri()


def test_mlflow_imported_first_and_app_named_after_the_notebook(project, require, monkeypatch) -> None:  # noqa: ANN001
    (project.root / "Churn Model.ipynb").write_text("{}", encoding="utf-8")
    monkeypatch.setenv("JPY_SESSION_NAME", str(project.root / "Churn Model.ipynb"))  # as JupyterLab does
    printed = _execute(require, project.root, ["import mlflow", "%load_ext scanflow_jupyter", LOG,
                                               "%scanflow_app renamed-app", LOG])
    run_id, _ = _run_line(printed[2])
    later_id, _ = _run_line(printed[4])
    runs = _runs(project.db)
    assert sorted((r[0], r[1], r[2].get("scanflow.interactive")) for r in runs) == sorted(
        [(run_id, "churn-model", "true"), (later_id, "renamed-app", "true")])
    assert not (project.root / "mlflow.db").exists()


def test_the_users_tracking_uri_wins(project, require, tmp_path_factory) -> None:  # noqa: ANN001
    own = tmp_path_factory.mktemp("own") / "mine.db"
    printed = _execute(require, project.root, [
        f"import mlflow\nmlflow.set_tracking_uri('sqlite:///{own}')",
        "%load_ext scanflow_jupyter\n%scanflow_app live-demo", LOG])
    run_id, uri = _run_line(printed[2])
    assert uri == f"sqlite:///{own}"
    runs = _runs(own)
    assert [r[0] for r in runs] == [run_id] and "scanflow.interactive" not in runs[0][2]
    assert not project.db.exists()
