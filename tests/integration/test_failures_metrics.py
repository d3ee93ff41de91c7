"""Failures explained and metrics where they are looked for (#11 items 8 and 9).

Real `scanflow run --json` subprocesses (real kernels, run store and a real MLflow sqlite store
in the project): a failing step's `error` names the 1-based cell of the user's notebook and its
log; a cached rerun's step run carries the metrics of the run it reuses (so an MLflow search on
`metrics.accuracy` finds it); `--metrics` lands the marked metric on the parent run.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import notebook_dict, require, scanflow_command

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

CELLS: list[Any] = [
    "%load_ext scanflow_jupyter\n%scanflow_app explained",                      # cell 1
    {"cell_type": "markdown", "source": "# Train, then a step that can fail"},   # cell 2
    {"source": "fail = False", "tags": ["parameters"]},                          # cell 3
    "%%executor train --outputs acc --metrics accuracy missing\nimport mlflow\n"  # cell 4
    "mlflow.log_metric('accuracy', 0.91, step=0)\nmlflow.log_metric('accuracy', 0.95, step=1)\n"
    "mlflow.log_metric('loss', 0.2)\nacc = 0.95",
    "%%executor boom --inputs acc --outputs ok\nok = acc\n"                       # cell 5
    "if fail:\n    raise ValueError('boom on purpose')",
]


def run(root: Path, *args: str) -> tuple[int, dict[str, Any]]:
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    env["SCANFLOW_HOME"] = str(root / ".scanflow")
    proc = subprocess.run([*scanflow_command(), "run", str(root / "explained.ipynb"), "--json", *args],
                          cwd=root, env=env, capture_output=True, text=True, timeout=600, check=False)
    try:
        return proc.returncode, json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"no JSON (exit {proc.returncode})\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-3000:]}")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run 1 with fail=True (train succeeds, boom fails), run 2 with fail=False (train cached)."""
    require("mlflow")
    root = tmp_path_factory.mktemp("explained")
    (root / "explained.ipynb").write_text(json.dumps(notebook_dict(CELLS)), encoding="utf-8")
    code1, first = run(root, "-p", "fail=True")
    code2, second = run(root)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root / '.scanflow' / 'mlflow.db'}")
    return {"root": root, "first": (code1, first), "second": (code2, second), "client": client}


def test_failed_step_json_error_names_the_notebook_cell_and_the_log(project: dict[str, Any]) -> None:
    code, doc = project["first"]
    assert code == 1 and doc["status"] == "failed", doc
    assert doc["steps"]["train"]["status"] == "succeeded" and "error" not in doc["steps"]["train"]
    error = doc["steps"]["boom"]["error"]
    assert error["type"] == "ValueError" and error["message"] == "boom on purpose", error
    assert error["cell"] == 5, error  # the 5th cell of the user's notebook, as JupyterLab counts
    log = Path(error["log"])
    assert log == Path(doc["run_dir"]) / "boom" / "log.txt" and log.is_file(), error


def test_mlflow_error_cell_tag_is_one_based(project: dict[str, Any]) -> None:
    client = project["client"]
    exp = client.get_experiment_by_name("explained")
    runs = client.search_runs([exp.experiment_id], "tags.`scanflow.step` = 'boom' and tags.`scanflow.status` = 'failed'")
    assert [r.data.tags.get("scanflow.error.cell") for r in runs] == ["5"]


def test_cached_step_run_carries_the_metrics_it_reuses(project: dict[str, Any]) -> None:
    code, doc = project["second"]
    assert code == 0 and doc["steps"]["train"]["status"] == "cached", doc
    client = project["client"]
    exp = client.get_experiment_by_name("explained")
    found = client.search_runs([exp.experiment_id], "metrics.accuracy > 0.5 and tags.`scanflow.step` = 'train'")
    by_status = {r.data.tags["scanflow.status"]: r for r in found}
    assert set(by_status) == {"succeeded", "cached"}, [r.data.tags for r in found]
    cached, original = by_status["cached"], by_status["succeeded"]
    assert cached.data.tags["scanflow.run_id"] == doc["run_id"]
    assert cached.data.tags["scanflow.cached_from"] == project["first"][1]["run_id"]
    assert cached.data.tags["scanflow.metrics_from"] == original.info.run_id
    history = [(m.step, m.value) for m in client.get_metric_history(cached.info.run_id, "accuracy")]
    assert sorted(history) == [(0, 0.91), (1, 0.95)]
    assert cached.data.metrics["loss"] == 0.2


def test_marked_metrics_land_on_the_parent_run(project: dict[str, Any]) -> None:
    client = project["client"]
    for _code, doc in (project["first"], project["second"]):  # executed, then cached
        parent = client.get_run(doc["mlflow_run_id"])
        assert parent.data.metrics.get("accuracy") == 0.95, (doc["run_id"], parent.data.metrics)
        assert "loss" not in parent.data.metrics and "missing" not in parent.data.metrics
    assert doc["tracking"] == "synced" and not doc["warnings"], doc


def test_failure_in_a_later_part_of_a_multi_cell_step_names_that_cell(tmp_path: Path) -> None:
    cells: list[Any] = [
        "%load_ext scanflow_jupyter\n%scanflow_app parts",         # cell 1
        "%%executor clean --outputs df\ndf = [1, 2]",              # cell 2
        {"cell_type": "markdown", "source": "Now the broken part"},  # cell 3
        "x = 'exploration, not part of the step'",                 # cell 4
        "%%executor clean\ndf = df + [None]\ndf.sort()",           # cell 5: TypeError
    ]
    (tmp_path / "explained.ipynb").write_text(json.dumps(notebook_dict(cells)), encoding="utf-8")
    code, doc = run(tmp_path)
    assert code == 1, doc
    error = doc["steps"]["clean"]["error"]
    assert (error["type"], error["cell"]) == ("TypeError", 5), error
