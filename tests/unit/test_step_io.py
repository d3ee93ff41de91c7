"""Kernel-side step API: bind/load/save, MLflow environment, and a cheap import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from scanflow_jupyter.data import step_io
from scanflow_jupyter.data.serializers import read_record
from scanflow_jupyter.data.serializers.base import UnserializableError

MLFLOW_VARS = ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID")


@pytest.fixture(autouse=True)
def isolated(monkeypatch):
    """Reset the module's bound context and the MLflow variables around every test."""
    for var in MLFLOW_VARS:  # setenv first so teardown restores the variable's absence too
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    monkeypatch.setattr(step_io, "_ctx", None)
    monkeypatch.setattr(step_io, "_saved", {})


def make_ctx(tmp_path: Path, step: str = "train", inputs: dict | None = None, **mlflow) -> dict:
    return {
        "run_id": "20261127T105501-3f9a1c",
        "step": step,
        "inputs": inputs or {},
        "outputs_dir": str(tmp_path / step / "outputs"),
        "mlflow": {"tracking_uri": None, "run_id": None, "experiment_id": None, **mlflow},
    }


def test_bind_none_explains_how_to_run_the_pipeline():
    with pytest.raises(step_io.StepContextError, match="scanflow run"):
        step_io.bind(None)


def test_bind_rejects_a_context_without_required_keys():
    with pytest.raises(step_io.StepContextError, match="outputs_dir"):
        step_io.bind({"run_id": "r", "step": "s", "inputs": {}})


def test_load_before_bind_is_a_clear_error():
    with pytest.raises(step_io.StepContextError, match="bind"):
        step_io.load("x")


def test_bind_exports_mlflow_settings(tmp_path):
    ctx = make_ctx(tmp_path, tracking_uri="sqlite:///mlflow.db", run_id="abc123", experiment_id="7")
    step_io.bind(ctx)
    assert os.environ["MLFLOW_TRACKING_URI"] == "sqlite:///mlflow.db"
    assert os.environ["MLFLOW_RUN_ID"] == "abc123"
    assert os.environ["MLFLOW_EXPERIMENT_ID"] == "7"
    assert step_io.context() is ctx


def test_bind_leaves_unset_mlflow_values_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracker:5000")
    step_io.bind(make_ctx(tmp_path, run_id="r1"))
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://tracker:5000"
    assert os.environ["MLFLOW_RUN_ID"] == "r1"
    assert "MLFLOW_EXPERIMENT_ID" not in os.environ


def test_a_redacted_tracking_uri_keeps_the_environments_real_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracker:5000")  # split: the password is in its own variable
    step_io.bind(make_ctx(tmp_path, tracking_uri="http://***@tracker:5000", run_id="r2"))
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://tracker:5000"
    assert os.environ["MLFLOW_RUN_ID"] == "r2"
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://u:pw@tracker:5000")
    step_io.bind(make_ctx(tmp_path, tracking_uri="http://***@tracker:5000"))
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://u:pw@tracker:5000" and capsys.readouterr().err == ""


def test_a_redacted_tracking_uri_without_environment_is_reported(tmp_path, capsys):
    step_io.bind(make_ctx(tmp_path, tracking_uri="https://***@tracker.example/"))
    assert "MLFLOW_TRACKING_URI" not in os.environ  # never the masked URI
    err = capsys.readouterr().err
    assert "https://***@tracker.example/" in err and "not set" in err and "scanflow run" in err


def test_save_then_load_in_a_downstream_step(tmp_path):
    step_io.bind(make_ctx(tmp_path, step="prep"))
    arr = np.arange(6).reshape(2, 3)
    record = step_io.save("features", arr)
    outputs = tmp_path / "prep" / "outputs"
    assert (outputs / "features.npy").exists()
    assert read_record(outputs, "features") == record
    assert step_io.saved() == {"features": record}

    inputs = {"features": {"folder": str(outputs), "record": record.to_dict()}}
    step_io.bind(make_ctx(tmp_path, step="train", inputs=inputs))
    np.testing.assert_array_equal(step_io.load("features"), arr)
    assert step_io.saved() == {}


def test_loading_an_undeclared_input_names_the_step_and_variable(tmp_path):
    step_io.bind(make_ctx(tmp_path, step="train", inputs={}))
    with pytest.raises(step_io.UnknownInputError) as info:
        step_io.load("model")
    assert "step 'train'" in str(info.value)
    assert "'model'" in str(info.value)


def test_saving_an_unpicklable_value_names_the_variable_and_step(tmp_path):
    step_io.bind(make_ctx(tmp_path, step="ingest"))
    with pytest.raises(UnserializableError) as info:
        step_io.save("rows", (i for i in range(3)))
    message = str(info.value)
    assert "'rows'" in message and "step 'ingest'" in message
    assert "list(" in message  # the fix for generators


def run_python(code: str, **kwargs) -> str:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=True,
        **kwargs,
    ).stdout


def test_import_and_bind_do_not_pull_in_heavy_modules(tmp_path):
    ctx = make_ctx(tmp_path, tracking_uri="file:///tmp/x", run_id="r", experiment_id="1")
    out = run_python(
        f"""
        import sys
        from scanflow_jupyter.data import step_io as _scanflow
        _scanflow.bind({ctx!r})
        heavy = ("numpy", "pandas", "pyarrow", "mlflow", "sklearn", "cloudpickle", "joblib")
        print(sorted(m for m in heavy if m in sys.modules))
        """
    )
    assert out.strip() == "[]"


def test_generated_cells_pass_a_variable_between_two_processes(tmp_path):
    """The exact generated-cell shape, run in two separate interpreters like two kernels."""
    producer_ctx = make_ctx(tmp_path, step="prep")
    run_python(
        f"""
        __scanflow__ = {producer_ctx!r}
        from scanflow_jupyter.data import step_io as _scanflow
        _scanflow.bind(__scanflow__)
        import pandas as pd
        table = pd.DataFrame({{"a": [1, 2, 3], "b": ["x", "y", "z"]}})
        _scanflow.save("table", table)
        """
    )
    outputs = tmp_path / "prep" / "outputs"
    record = read_record(outputs, "table")
    assert record.serializer == "pandas-frame"
    consumer_ctx = make_ctx(
        tmp_path,
        step="train",
        inputs={"table": {"folder": str(outputs), "record": record.to_dict()}},
        run_id="mlflow-run-1",
    )
    out = run_python(
        f"""
        __scanflow__ = {consumer_ctx!r}
        from scanflow_jupyter.data import step_io as _scanflow
        _scanflow.bind(__scanflow__)
        table = _scanflow.load("table")
        import json, os
        print(json.dumps([table.to_dict(orient="list"), os.environ["MLFLOW_RUN_ID"]]))
        """
    )
    assert json.loads(out) == [{"a": [1, 2, 3], "b": ["x", "y", "z"]}, "mlflow-run-1"]


def test_importtime_report_lists_no_heavy_module():
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import scanflow_jupyter.data.step_io"],
        capture_output=True,
        text=True,
        check=True,
    )
    imported = {
        line.rsplit("|", 1)[-1].strip().split(".")[0]
        for line in proc.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "scanflow_jupyter" in imported  # the report really lists our imports
    assert not imported & {"numpy", "pandas", "pyarrow", "mlflow", "cloudpickle", "joblib"}
