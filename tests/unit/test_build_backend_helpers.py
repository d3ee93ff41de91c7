"""Pure helpers of the docker backend and the tracker (no engine, no server)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from scanflow_jupyter.mlflow_server import is_local_store, status, wait_for_experiment
from scanflow_jupyter.runtime.docker_backend import (
    _mounts,
    forwarded_environment,
    with_tracking_uri,
)


def test_only_credentials_and_proxies_are_forwarded() -> None:
    env = {"MLFLOW_TRACKING_TOKEN": "t", "MLFLOW_TRACKING_URI": "sqlite:///x", "MLFLOW_RUN_ID": "r",
           "AWS_SECRET_ACCESS_KEY": "k", "HTTPS_PROXY": "http://p", "HOME": "/root", "PATH": "/bin",
           "MY_TOKEN": "m", "OTHER": "o", "SCANFLOW_DOCKER_ENV": "MY_TOKEN, NOPE"}
    assert forwarded_environment(env) == {"MLFLOW_TRACKING_TOKEN": "t", "AWS_SECRET_ACCESS_KEY": "k",
                                          "HTTPS_PROXY": "http://p", "MY_TOKEN": "m"}


def _notebook(context: dict) -> dict:
    return {"cells": [{"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": "n = 1"},
                      {"cell_type": "code", "metadata": {"tags": ["injected-parameters"]},
                       "source": f"# Parameters\nn = 2\n__scanflow__ = {context!r}"}]}


def test_the_injected_context_gets_the_container_tracking_uri() -> None:
    ctx = {"run_id": "r", "step": "s", "inputs": {"x": {"folder": "/store/r/a/outputs", "record": {}}},
           "outputs_dir": "/store/r/s/outputs", "mlflow": {"tracking_uri": "sqlite:////p/mlflow.db", "run_id": "m"}}
    nb = _notebook(ctx)
    rewritten, found = with_tracking_uri(nb, "http://127.0.0.1:5050")
    assert found["mlflow"] == {"tracking_uri": "http://127.0.0.1:5050", "run_id": "m"}
    assert "http://127.0.0.1:5050" in rewritten["cells"][1]["source"] and "n = 2" in rewritten["cells"][1]["source"]
    assert nb["cells"][1]["source"].endswith(repr(ctx))  # the original is untouched
    same, found = with_tracking_uri(nb, None)
    assert same == nb and found == ctx


def test_mounts_are_same_path_and_not_nested(tmp_path: Path) -> None:
    (tmp_path / "project" / ".scanflow" / "runs").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    mounts = _mounts([tmp_path / "project" / ".scanflow" / "runs", tmp_path / "project", tmp_path / "elsewhere"])
    assert mounts == {str(tmp_path / "project"): {"bind": str(tmp_path / "project"), "mode": "rw"},
                      str(tmp_path / "elsewhere"): {"bind": str(tmp_path / "elsewhere"), "mode": "rw"}}


def test_local_stores_need_a_tracker() -> None:
    assert is_local_store("sqlite:////p/mlflow.db") and is_local_store("file:///p/mlruns") and is_local_store("/p/mlruns")
    assert not is_local_store("http://127.0.0.1:5000") and not is_local_store("databricks://profile")


def test_no_tracker_recorded_means_none_runs(tmp_path: Path) -> None:
    assert status(tmp_path) is None
    (tmp_path / "tracker.json").write_text('{"pid": 999999999, "port": 1, "url": "http://127.0.0.1:1", '
                                          '"backend_store_uri": "sqlite:///x", "artifacts_destination": "/x", '
                                          '"log": "/x", "started_at": 0}')
    assert status(tmp_path) is None and not (tmp_path / "tracker.json").exists()  # a stale record is dropped


def test_waiting_for_the_run_experiment(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    assert not wait_for_experiment(uri, "demo", timeout=0.3)
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE experiments (name TEXT)")
        conn.execute("INSERT INTO experiments VALUES ('demo')")
    assert wait_for_experiment(uri, "demo", timeout=2)
    assert wait_for_experiment("http://server", "demo", timeout=0)
