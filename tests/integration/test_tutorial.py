"""The tutorial (`make run`'s main job) as a pipeline: real kernels, real MLflow store."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

TUTORIAL = Path(__file__).resolve().parents[2] / "tutorials" / "mnist" / "mnist.ipynb"


def test_tutorial_trains_beats_the_baseline_and_is_tracked(runner, project):
    path = shutil.copy(TUTORIAL, project.root / "mnist.ipynb")
    out = runner.run(Path(path))
    assert out.result.status == "succeeded", out.statuses()
    report = out.output("evaluate", "report")
    assert report["accuracy"] > 0.9 > report["baseline_accuracy"]
    assert len(report["confusion"]) == 10
    # train and baseline do not depend on each other: both only wait for split
    assert out.index("step_succeeded", "split") < out.index("step_started", "baseline")
    client = project.mlflow_client()
    runs = client.search_runs([client.get_experiment_by_name("mnist").experiment_id],
                              "tags.`scanflow.step` = 'evaluate'")
    assert runs and runs[0].data.metrics["accuracy"] == pytest.approx(report["accuracy"])
