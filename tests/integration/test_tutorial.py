"""The tutorial (`make run`'s main job) as a pipeline: real kernels, real MLflow store."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

TUTORIAL = Path(__file__).resolve().parents[2] / "tutorials" / "mnist" / "mnist.ipynb"


def test_tutorial_trains_beats_the_baseline_and_is_tracked(runner, project, monkeypatch):
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
    # train registered the model with its signature; nobody held @champion, so evaluate moved it
    assert report["version"] == report["champion"] == "1"
    champion = client.get_model_version_by_alias("mnist", "champion")
    assert str(champion.version) == "1"
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", project.tracking_uri())  # the registry of the run's store
    info = mlflow.models.get_model_info("models:/mnist@champion")
    assert info.signature is not None
    assert info.signature.inputs.input_names() == [f"p{i}" for i in range(64)]
    assert client.get_run(champion.run_id).data.params["shifted"] == "0.0"


def test_a_retrain_becomes_champion_only_if_better_on_the_same_test_set(runner, project):
    path = Path(shutil.copy(TUTORIAL, project.root / "mnist.ipynb"))
    assert runner.run(path).result.status == "succeeded"
    shifted = runner.run(path, params={"shifted": 0.5})
    assert shifted.result.status == "succeeded", shifted.statuses()
    report = shifted.output("evaluate", "report")
    client = project.mlflow_client()
    evaluate = client.search_runs([client.get_experiment_by_name("mnist").experiment_id],
                                  "tags.`scanflow.step` = 'evaluate'", order_by=["attributes.start_time DESC"])[0]
    # version 1 was scored on the same (partly shifted) test set, and lost
    assert evaluate.data.metrics["champion_accuracy"] < report["accuracy"]
    assert report["version"] == report["champion"] == "2"
    assert str(client.get_model_version_by_alias("mnist", "champion").version) == "2"
