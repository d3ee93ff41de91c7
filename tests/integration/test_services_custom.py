"""`scanflow serve` of a custom %%service cell: a real process, real HTTP, pydantic request schema."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.services_support import CUSTOM_SERVICE, Served, wait_for


@pytest.fixture
def served(project: Any, require: Any) -> Any:
    require("uvicorn")
    require("pyarrow")
    nb = project.write_notebook("scoring", ["%%setup\nWEIGHT = 2.0", CUSTOM_SERVICE])
    service = Served(project.root, project.env(), nb, "scorer")
    yield service
    service.stop()


def test_predict_validates_inputs_against_the_annotation_and_stays_up(served: Any, project: Any) -> None:
    http = served.http
    status, doc = http.post("/predict", {"inputs": [{"age": 3, "income": 1.5}, {"age": 1, "income": 0}]})
    assert status == 200, doc
    assert doc == {"predictions": [{"score": 6.0, "loads": 1}, {"score": 1.0, "loads": 1}]}  # WEIGHT from %%setup

    status, doc = http.post("/predict", {"inputs": [{"age": "old", "income": 1.5}]})
    assert status == 422
    assert [f["field"] for f in doc["fields"]] == ["inputs.0.age"]
    assert "inputs.0.age" in doc["error"]

    status, doc = http.post("/predict", {"inputs": [{"age": 3}]})
    assert status == 422 and doc["fields"][0]["field"] == "inputs.0.income"

    status, doc = http.post("/predict", {"rows": []})
    assert status == 422 and doc["fields"][0]["field"] == "inputs"

    status, doc = http.post("/predict", raw=b'{"inputs": [')
    assert status == 400 and "not valid JSON" in doc["error"]

    status, doc = http.post("/predict", {"inputs": [{"age": -1, "income": 1}]})
    assert status == 500 and "age must not be negative" in doc["error"]

    # still up, and load() ran exactly once for all of these requests
    status, doc = http.post("/predict", {"inputs": [{"age": 2, "income": 2}]})
    assert status == 200 and doc["predictions"] == [{"score": 6.0, "loads": 1}]
    assert served.proc.poll() is None


def test_health_metadata_metrics_and_reload_auth(served: Any, project: Any) -> None:
    http = served.http
    assert http.get("/health") == (200, {"status": "ok", "service": "scorer", "version": None})
    status, meta = http.get("/metadata")
    assert status == 200
    assert meta["service"] == "scorer" and meta["kind"] == "custom" and meta["ready"] is True
    assert meta["signature"]["inputs"]["items"]["$ref"] == "#/$defs/Row"
    assert meta["loaded_at"] <= time.time()
    http.post("/predict", {"inputs": [{"age": 1, "income": 1}]})
    http.post("/predict", {"inputs": "nope"})
    status, text = http.get("/metrics")
    assert status == 200
    assert 'scanflow_service_requests_total{service="scorer",route="/predict",status="200"} 1' in text
    assert 'scanflow_service_requests_total{service="scorer",route="/predict",status="422"} 1' in text
    assert 'scanflow_service_errors_total{service="scorer",kind="client"} 1' in text
    assert 'scanflow_service_predict_latency_seconds_count{service="scorer"} 2' in text
    assert 'le="+Inf"} 2' in text

    # /reload changes state: the agents' rules (token, Host, Origin)
    token = (project.home / "agent-token").read_text().strip()
    assert http.post("/reload")[0] == 401
    assert http.post("/reload", headers={"Authorization": "Bearer wrong-token-000000"})[0] == 401
    assert http.post("/reload", headers={"Authorization": f"Bearer {token}", "Origin": "http://evil.example"})[0] == 403
    assert http.post("/reload", headers={"Authorization": f"Bearer {token}", "Host": "evil.example"})[0] == 403
    assert http.post("/reload", headers={"Authorization": f"Bearer {token}"})[0] == 202


def test_inference_log_is_parquet_with_version_and_latency(served: Any, project: Any) -> None:
    import pandas as pd

    for age in range(5):
        assert served.http.post("/predict", {"inputs": [{"age": age, "income": 1}]})[0] == 200
    served.http.post("/predict", {"inputs": [{"age": "x", "income": 1}]})  # 422: not logged
    folder = project.home / "services" / "scorer" / "inference"

    def rows() -> Any:
        parts = list(folder.glob("part-*.parquet"))
        df = pd.read_parquet(folder) if parts else None
        return [df] if df is not None and len(df) >= 5 else None

    [df] = wait_for(rows, 30, "5 rows in the inference log")
    assert len(df) == 5
    assert set(df.columns) >= {"ts", "service", "model_version", "latency_ms", "status", "inputs", "predictions"}
    assert (df["status"] == 200).all() and (df["latency_ms"] > 0).all() and (df["service"] == "scorer").all()
    assert sorted(json.loads(s)[0]["age"] for s in df["inputs"]) == [0, 1, 2, 3, 4]


def test_a_broken_cell_exits_3_naming_the_cell(project: Any, require: Any, scanflow_cmd: list[str]) -> None:
    import subprocess

    nb = project.write_notebook("broken", ["%%service bad\ndef load():\n    raise RuntimeError('no weights')\n"
                                           "def predict(inputs):\n    return inputs\n"])
    proc = subprocess.run([*scanflow_cmd, "serve", str(nb), "bad", "--port", "0"], cwd=project.root,
                          env=project.env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert "load() raised RuntimeError: no weights" in proc.stderr and "cell 1" in proc.stderr

    proc = subprocess.run([*scanflow_cmd, "serve", str(nb), "nosuch"], cwd=project.root, env=project.env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "no service 'nosuch'" in proc.stderr and "bad (cell 1)" in proc.stderr


def test_health_is_503_until_load_returns(project: Any, require: Any, scanflow_cmd: list[str]) -> None:
    import socket
    import subprocess

    from tests.services_support import Http

    require("uvicorn")
    gate = project.root / "weights-ready"
    nb = project.write_notebook("slow", [
        "%%service slow\nimport pathlib, time\n"
        f"def load():\n    while not pathlib.Path({str(gate)!r}).exists():\n        time.sleep(0.05)\n    return 1\n"
        "def predict(inputs: int, state):\n    return inputs + state\n"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([*scanflow_cmd, "serve", str(nb), "slow", "--port", str(port), "--no-log"],
                            cwd=project.root, env=project.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        http = Http(f"http://127.0.0.1:{port}")

        def answering() -> Any:
            try:
                return [http.get("/health")]
            except OSError:
                return None

        [(status, doc)] = wait_for(answering, 120, "the server to answer while load() waits")
        assert status == 503 and doc["status"] == "loading"
        status, doc = http.post("/predict", {"inputs": 1})
        assert status == 503 and "still loading" in doc["error"]
        assert http.get("/metadata")[1]["ready"] is False
        gate.touch()
        wait_for(lambda: http.get("/health")[0] == 200, 60, "the model to load")
        assert http.post("/predict", {"inputs": 41}) == (200, {"predictions": 42})
    finally:
        proc.terminate()
        proc.wait(30)
