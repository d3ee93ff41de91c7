"""`scanflow serve` of `%%service NAME --model models:/...`: a real MLflow sqlite registry, real
sklearn models, MLflow's scoring payloads, signature checks and a hot swap under load."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.services_support import Served, register_models, set_alias, wait_for

ROWS = [{"f1": 2.0, "f2": 0.1}, {"f1": -2.0, "f2": 0.3}]
V1 = [1, 0]  # version 1 predicts f1 > 0
V2 = [0, 1]  # version 2 the opposite


@pytest.fixture
def registry(project: Any, require: Any) -> str:
    require("mlflow")
    require("sklearn")
    require("uvicorn")
    uri = project.tracking_uri()
    project.home.mkdir(parents=True, exist_ok=True)
    assert register_models(uri, "clf", 2) == ["1", "2"]
    set_alias(uri, "clf", "champion", "1")
    return uri


def _serve(project: Any, model: str, *extra: str) -> Served:
    nb = project.write_notebook("serving", [f"%%service clf --model {model}"])
    return Served(project.root, project.env(), nb, "clf", *extra)


PAYLOADS = {
    "inputs (records)": {"inputs": ROWS},
    "inputs (columns)": {"inputs": {"f1": [2.0, -2.0], "f2": [0.1, 0.3]}},
    "instances": {"instances": ROWS},
    "dataframe_split": {"dataframe_split": {"columns": ["f1", "f2"], "data": [[2.0, 0.1], [-2.0, 0.3]]}},
    "dataframe_records": {"dataframe_records": ROWS},
}


def test_every_mlflow_payload_format_and_signature_errors(project: Any, registry: str) -> None:
    served = _serve(project, "models:/clf@champion")
    try:
        http = served.http
        for label, payload in PAYLOADS.items():
            status, doc = http.post("/predict", payload)
            assert (status, doc) == (200, {"predictions": V1}), label
        assert http.post("/invocations", PAYLOADS["dataframe_split"]) == (200, {"predictions": V1})  # MLflow's path

        status, doc = http.post("/predict", {"dataframe_records": [{"f1": 1.0}]})  # f2 missing
        assert status == 422 and "f2" in doc["error"], doc
        status, doc = http.post("/predict", {"dataframe_records": [{"f1": "high", "f2": 1.0}]})  # wrong type
        assert status == 422 and "f1" in doc["error"], doc
        status, doc = http.post("/predict", {"inputs": ROWS, "instances": ROWS})  # two formats
        assert status == 422 and {f["field"] for f in doc["fields"]} == {"inputs", "instances"}
        status, doc = http.post("/predict", {"rows": ROWS})
        assert status == 422 and "exactly one of inputs, instances, dataframe_split, dataframe_records" in doc["error"]
        assert http.post("/predict", raw=b"{nope")[0] == 400
        assert http.post("/predict", PAYLOADS["instances"]) == (200, {"predictions": V1})  # still serving

        status, meta = http.get("/metadata")
        assert status == 200
        assert (meta["model"], meta["version"], meta["alias"], meta["kind"]) == ("models:/clf@champion", "1",
                                                                                  "champion", "mlflow")
        assert [c["name"] for c in meta["signature"]["inputs"]] == ["f1", "f2"]
        assert meta["run_id"] and meta["loaded_at"] > 0
        assert http.get("/health") == (200, {"status": "ok", "service": "clf", "version": "1"})
        status, text = http.get("/metrics")
        assert 'scanflow_service_model_info{service="clf",version="1"} 1' in text
        assert 'route="/predict",status="422"} 4' in text
    finally:
        served.stop()


def test_a_pinned_version_and_an_unknown_alias(project: Any, registry: str, scanflow_cmd: list[str]) -> None:
    import subprocess

    served = _serve(project, "models:/clf/2")
    try:
        assert served.http.post("/predict", {"dataframe_records": ROWS}) == (200, {"predictions": V2})
        assert served.http.get("/metadata")[1]["version"] == "2"
    finally:
        served.stop()
    nb = project.write_notebook("missing", ["%%service clf --model models:/clf@nosuch"])
    proc = subprocess.run([*scanflow_cmd, "serve", str(nb), "clf", "--port", "0"], cwd=project.root,
                          env=project.env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3
    assert "registered model 'clf' has no alias 'nosuch'" in proc.stderr and "set_registered_model_alias" in proc.stderr


def test_hot_swap_under_load_fails_no_request(project: Any, registry: str) -> None:
    served = _serve(project, "models:/clf@champion", "--poll", "0.3")
    results: list[tuple[int, Any, str | None]] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            status, doc, headers = served.http.call("POST", "/predict", {"dataframe_records": ROWS})
            results.append((status, doc, headers.get("x-scanflow-model-version")))

    try:
        clients = [threading.Thread(target=hammer) for _ in range(3)]
        for c in clients:
            c.start()
        wait_for(lambda: len(results) >= 30, 60, "requests before the swap")
        set_alias(registry, "clf", "champion", "2")
        wait_for(lambda: served.http.get("/metadata")[1]["version"] == "2", 120, "/metadata to show version 2")
        seen = len(results)
        wait_for(lambda: len(results) >= seen + 30, 60, "requests after the swap")
        stop.set()
        for c in clients:
            c.join(30)
        failures = [r for r in results if r[0] != 200]
        assert failures == [], failures[:3]
        versions = [v for _, _, v in results]
        assert versions[0] == "1" and versions[-1] == "2"
        for _, doc, version in results:  # every answer comes whole from one version
            assert doc["predictions"] == (V1 if version == "1" else V2)
        meta = served.http.get("/metadata")[1]
        assert meta["swaps"] == 1 and meta["alias"] == "champion"
        assert 'scanflow_service_model_swaps_total{service="clf"} 1' in served.http.get("/metrics")[1]
    finally:
        stop.set()
        served.stop()
    # the inference log recorded both versions
    import pandas as pd

    folder = project.home / "services" / "clf" / "inference"
    df = wait_for(lambda: [pd.read_parquet(folder)] if list(folder.glob("part-*.parquet")) else None, 30)[0]
    assert set(df["model_version"]) == {"1", "2"}
    assert time.time() - df["ts"].max().timestamp() < 600


def test_a_version_that_cannot_load_leaves_the_old_one_serving(project: Any, registry: str) -> None:
    import shutil

    from mlflow import MlflowClient

    broken = MlflowClient(tracking_uri=registry, registry_uri=registry).get_model_version_download_uri("clf", "2")
    shutil.rmtree(broken)  # version 2's files are gone (a real fault: its artifacts were deleted)
    served = _serve(project, "models:/clf@champion", "--poll", "0.3")
    try:
        set_alias(registry, "clf", "champion", "2")
        meta = wait_for(lambda: (m := served.http.get("/metadata")[1])["poll_error"] and m, 60, "the failed swap")
        assert "cannot load models:/clf/2" in meta["poll_error"]
        assert meta["version"] == "1" and meta["swaps"] == 0
        assert served.http.post("/predict", {"dataframe_records": ROWS}) == (200, {"predictions": V1})
        assert served.http.get("/health")[0] == 200
    finally:
        served.stop()
