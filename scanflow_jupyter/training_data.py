"""The training data of a model version: logged by the training step, read back by drift checks.

A training step calls `log_training_data(X_train)` inside its MLflow run: the frame is stored as
the run's artifact `scanflow/training_data.parquet` and recorded as an MLflow dataset input
(context `training`). An agent then compares inference inputs against the data the *serving*
version was trained on — `ctx.training_data("mnist", version)` — so a retrained model that has
seen the new distribution no longer looks drifted.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

ARTIFACT_DIR = "scanflow"
ARTIFACT_NAME = "training_data.parquet"
ARTIFACT = f"{ARTIFACT_DIR}/{ARTIFACT_NAME}"


class TrainingDataError(LookupError):
    """The training data of a model version cannot be found or read."""


def _frame(data: Any) -> Any:
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, pd.Series):
        return data.to_frame()
    frame = pd.DataFrame(data)
    frame.columns = [str(c) for c in frame.columns]
    return frame


def log_training_data(data: Any, *, name: str = "training") -> str:
    """Log `data` (a DataFrame, Series, dict of columns or 2-D array) as the active MLflow run's
    training inputs; return the artifact path. Call it in the step that trains the model."""
    import mlflow

    run = mlflow.active_run()
    if run is None:
        raise TrainingDataError("log_training_data needs an active MLflow run: call it in a pipeline step "
                                "(Scanflow starts the step's run) or inside `with mlflow.start_run():`.")
    frame = _frame(data)
    with tempfile.TemporaryDirectory(prefix="scanflow-training-") as tmp:
        path = Path(tmp) / ARTIFACT_NAME
        frame.to_parquet(path, index=False)
        mlflow.log_artifact(str(path), artifact_path=ARTIFACT_DIR)
    mlflow.log_input(mlflow.data.from_pandas(frame, name=name), context="training")
    return ARTIFACT


def model_version(client: Any, model: str, version: str | int | None = None, *, alias: str = "champion") -> Any:
    """The registry's `ModelVersion` of `model` `version` (default: the version `alias` names)."""
    from mlflow.exceptions import MlflowException

    try:
        if version is None or str(version) == "":
            return client.get_model_version_by_alias(model, alias)
        return client.get_model_version(model, str(version))
    except MlflowException as exc:
        which = f"version {version}" if version not in (None, "") else f"alias @{alias}"
        raise TrainingDataError(f"model {model} has no {which} in the registry ({exc.message}).") from None


def load_training_data(client: Any, model: str, version: str | int | None = None, *,
                       alias: str = "champion") -> Any:
    """The training data logged by the run that produced `model` `version` (default: the version
    `alias` names), as a DataFrame. Raises TrainingDataError saying what is missing and the fix."""
    import pandas as pd
    from mlflow.exceptions import MlflowException

    mv = model_version(client, model, version, alias=alias)
    if not mv.run_id:
        raise TrainingDataError(f"{model} version {mv.version} was registered without a run, so it has no "
                                "training data; register it from the training step's run.")
    with tempfile.TemporaryDirectory(prefix="scanflow-training-") as tmp:
        try:
            local = client.download_artifacts(mv.run_id, ARTIFACT, tmp)
        except (MlflowException, OSError):
            raise TrainingDataError(
                f"{model} version {mv.version} (run {mv.run_id}) logged no training data. Fix: in the training "
                "step, call `from scanflow_jupyter.training_data import log_training_data; "
                "log_training_data(X_train)`.") from None
        return pd.read_parquet(local)
