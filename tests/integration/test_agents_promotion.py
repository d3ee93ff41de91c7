"""Built-in actions that need an MLflow store: champion promotion by alias, metric summaries."""

from __future__ import annotations

import pytest

from scanflow_jupyter.agents.templates import ActionError, metric_summary, promote_if_better
from tests.agents_support import fresh_store

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(tmp_path_factory, require):
    tracking = require("mlflow.tracking")
    uri = fresh_store(tmp_path_factory.mktemp("registry"))
    return tracking.MlflowClient(tracking_uri=uri, registry_uri=uri)


def _version(client, model, exp_id, accuracy):
    run = client.create_run(exp_id)
    if accuracy is not None:
        client.log_metric(run.info.run_id, "accuracy", accuracy)
    client.set_terminated(run.info.run_id)
    return client.create_model_version(model, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)


def test_promotion_moves_the_alias_only_when_better(client):
    exp_id = client.create_experiment("promote")
    client.create_registered_model("churn")
    v1 = _version(client, "churn", exp_id, 0.80)
    first = promote_if_better(client, "churn", "accuracy")
    assert first["promoted"] and first["reason"] == "no version held @champion"
    assert str(client.get_model_version_by_alias("churn", "champion").version) == str(v1.version)
    v2 = _version(client, "churn", exp_id, 0.75)
    worse = promote_if_better(client, "churn", "accuracy", version=v2.version)
    assert not worse["promoted"] and "does not beat" in worse["reason"]
    v3 = _version(client, "churn", exp_id, 0.90)
    better = promote_if_better(client, "churn", "accuracy", run_id=v3.run_id)
    assert better["promoted"] and better["champion_version"] == str(v1.version)
    assert str(client.get_model_version_by_alias("churn", "champion").version) == str(v3.version)
    same = promote_if_better(client, "churn", "accuracy")
    assert not same["promoted"] and "already holds" in same["reason"]
    lower_wins = promote_if_better(client, "churn", "accuracy", version=v2.version, alias="cheapest",
                                   greater_is_better=False)
    assert lower_wins["promoted"]


def test_promotion_errors_say_what_to_do(client):
    exp_id = client.create_experiment("promote-errors")
    client.create_registered_model("empty")
    with pytest.raises(ActionError, match="has no version"):
        promote_if_better(client, "empty", "accuracy")
    client.create_registered_model("nometric")
    _version(client, "nometric", exp_id, None)
    with pytest.raises(ActionError, match="has no metric 'accuracy'"):
        promote_if_better(client, "nometric", "accuracy")


def test_metric_summary(client):
    assert metric_summary(client, "does-not-exist", "x")["runs"] == 0
    exp_id = client.create_experiment("summary")
    for value in (1.0, 3.0, 2.0):
        run = client.create_run(exp_id)
        client.log_metric(run.info.run_id, "n_predictions", value)
        client.set_terminated(run.info.run_id)
    client.set_terminated(client.create_run(exp_id).info.run_id)
    summary = metric_summary(client, "summary", "n_predictions")
    assert (summary["runs"], summary["count"], summary["sum"], summary["last"]) == (4, 3, 6.0, 2.0)
    assert (summary["min"], summary["max"], summary["mean"]) == (1.0, 3.0, 2.0)
