"""`log_training_data` in a training run, `load_training_data` / `ctx.training_data` by version or
alias, against a real MLflow store and registry (sqlite)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from scanflow_jupyter.training_data import (
    TrainingDataError,
    load_training_data,
    log_training_data,
    model_version,
)


@pytest.fixture
def client(tmp_path: Path, require: Any) -> Any:
    require("pandas")
    require("sklearn")
    mlflow = require("mlflow")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow.tracking.MlflowClient(uri, uri)


def _train(frame: Any, *, log: bool = True) -> str:
    import mlflow
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(frame, (frame["a"] > 0).astype(int))
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(model, name="model", registered_model_name="clf")
        if log:
            assert log_training_data(frame) == "scanflow/training_data.parquet"
    return str(info.registered_model_version)


def test_each_version_reads_back_the_data_it_was_trained_on(client: Any) -> None:
    import pandas as pd

    first = pd.DataFrame({"a": [-1.0, 1.0, -2.0, 2.0], "b": [0.0, 1.0, 2.0, 3.0]})
    second = pd.DataFrame({"a": [-5.0, 5.0, -6.0, 6.0, 7.0], "b": [9.0, 9.0, 9.0, 9.0, 9.0]})
    assert _train(first) == "1" and _train(second) == "2"
    pd.testing.assert_frame_equal(load_training_data(client, "clf", "1"), first)
    pd.testing.assert_frame_equal(load_training_data(client, "clf", 2), second)
    client.set_registered_model_alias("clf", "champion", "1")
    pd.testing.assert_frame_equal(load_training_data(client, "clf"), first)  # the alias's version
    # recorded as the run's MLflow dataset input too (context "training")
    run = client.get_run(model_version(client, "clf", "2").run_id)
    tags = [{t.key: t.value for t in d.tags} for d in run.inputs.dataset_inputs]
    assert {"mlflow.data.context": "training"} in tags


def test_missing_pieces_say_what_and_how_to_fix(client: Any) -> None:
    import pandas as pd

    _train(pd.DataFrame({"a": [-1.0, 1.0], "b": [0.0, 1.0]}), log=False)
    with pytest.raises(TrainingDataError, match=r"logged no training data.*log_training_data\(X_train\)"):
        load_training_data(client, "clf", "1")
    with pytest.raises(TrainingDataError, match="has no version 7"):
        load_training_data(client, "clf", "7")
    with pytest.raises(TrainingDataError, match="has no alias @champion"):
        load_training_data(client, "clf")
    with pytest.raises(TrainingDataError, match="needs an active MLflow run"):
        log_training_data({"a": [1.0]})
