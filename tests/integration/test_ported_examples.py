"""The ported examples in notebooks/ (one per tool users leave: Kale, Elyra, Ploomber, papermill) run
as real pipelines (local runner, fresh kernels, the project's MLflow store) and compute what the
original computes. `make nbval` runs the same notebooks top to bottom in a live kernel."""

from __future__ import annotations

import json
import random

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def _expected_candies(candies: int, seed: int) -> dict[str, int]:
    left, shares = candies, {}
    for kid in (1, 2, 3):
        taken = random.Random(seed + kid).randint(1, left) if left else 0
        shares[f"kid{kid}"] = taken
        left -= taken
    return {**shares, "left": left}


def test_kale_candies_sharing(runner):
    out = runner.run("ported_kale_candies")

    assert out.result.status == "succeeded", out.statuses()
    assert list(out.result.steps) == ["sack", "kid1", "kid2", "kid3", "shares"]
    expected = _expected_candies(20, 7)
    assert out.output("shares", "shares") == expected and sum(expected.values()) == 20
    # `left` is refined by every kid: each version stays with its producer
    assert out.output("sack", "left") == 20
    assert out.output("kid1", "left") == 20 - expected["kid1"]
    assert out.output("kid3", "left") == expected["left"]

    changed = runner.run("ported_kale_candies", params={"CANDIES": 9})
    assert changed.output("shares", "shares") == _expected_candies(9, 7)


def test_elyra_weather_load_clean_analyze(runner):
    out = runner.run("ported_elyra_weather", params={"DAYS": 30})

    assert out.result.status == "succeeded", out.statuses()
    data = out.output("clean", "data")
    assert len(data) == 30 * 24 and not data.isna().any().any()
    assert list(data.columns) == ["date", "dry_bulb_temp_f", "relative_humidity", "wind_speed", "precip"]
    assert data["precip"].dtype.kind == "f"  # `T` and the `s` flags are gone
    summary = out.output("analyze", "summary")
    assert summary["days"] == 30 and len(out.output("analyze", "daily")) == 30
    assert 20 < summary["mean_temp_f"] < 50 and summary["temp_humidity_corr"] < 0
    # the cleaning notebook's two cells and the prose between them are in the step notebook
    step_nb = json.loads((out.step_dir("clean") / "output.ipynb").read_text(encoding="utf-8"))
    prose = ["".join(c["source"]) for c in step_nb["cells"] if c["cell_type"] == "markdown"]
    assert any("trailing `s`" in text for text in prose)
    assert list((out.step_dir("analyze") / "figures").glob("*.png"))  # the plot reached the step's outputs


def test_ploomber_iris_ml_basic(runner, project):
    out = runner.run("ported_ploomber_iris")

    assert out.result.status == "succeeded", out.statuses()
    joined = out.output("join", "joined")
    assert joined.shape == (150, 6) and "sepal area (cm2)" in joined.columns
    accuracy = out.output("fit", "accuracy")
    assert accuracy > 0.85
    assert set(out.output("fit", "report")) >= {"0", "1", "2", "accuracy"}
    client = project.mlflow_client()
    experiments = [e.experiment_id for e in client.search_experiments()]
    [step_run] = client.search_runs(experiments, filter_string="tags.`scanflow.step` = 'fit'")
    assert step_run.data.metrics["accuracy"] == pytest.approx(accuracy)
    # marked --metrics: also on the pipeline's parent run
    parents = [r for r in client.search_runs(experiments) if "scanflow.step" not in r.data.tags]
    assert [r.data.metrics.get("accuracy") for r in parents] == [pytest.approx(accuracy)]


def test_papermill_parameters(runner):
    out = runner.run("ported_papermill_parameters")

    assert out.result.status == "succeeded", out.statuses()
    assert out.output("greet", "greeting") == "Hello World"
    assert out.output("compute", "result") == {"a": 2.25, "double_a": 4.5, "d": False, "c": None}

    changed = runner.run("ported_papermill_parameters", params={"a": 3, "b": ["Hi", "there"], "msg": "hey"})
    assert changed.output("greet", "greeting") == "hey"  # msg=None accepts any value
    assert changed.output("compute", "result") == {"a": 3, "double_a": 6, "d": True, "c": None}  # %%setup saw a
