"""Agents see inference: a real service writes its inference log, a real agent triggered by
`new_predictions` runs the KS + PSI drift test on the logged inputs (real MLflow registry)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.services_support import Http, register_models, set_alias, wait_for

AGENT = '''%%agent monitor --template analyzer
import numpy as np
from scanflow_jupyter.agents import sensor, new_predictions

rng = np.random.default_rng(0)
REFERENCE = {"f1": rng.normal(size=1000), "f2": rng.normal(size=1000)}

@sensor(on=new_predictions("clf", min_rows=40, poll="0.3s"))
def inference_drift(ctx, batch):
    result = ctx.drift_test(REFERENCE, batch, threshold=0.01)
    return {"rows": len(batch), "drifted": result["drifted"], "max_psi": result["max_psi"],
            "versions": sorted({r["model_version"] for r in batch})}
'''


@pytest.fixture
def running(project: Any, require: Any) -> Any:
    for module in ("mlflow", "sklearn", "scipy", "uvicorn", "pyarrow"):
        require(module)
    uri = project.tracking_uri()
    project.home.mkdir(parents=True, exist_ok=True)
    register_models(uri, "clf", 1)
    set_alias(uri, "clf", "champion", "1")
    nb = project.write_notebook("loop", ["%%service clf --model models:/clf@champion", AGENT])
    yield nb
    project.cli("agents", "down", "--all", timeout=60)
    project.cli("services", "down", "--all", timeout=60)


def _last_value(project: Any) -> Any:
    code, rows = project.cli_json("agents", "ls", "--json")
    row = next((r for r in rows if r["name"] == "monitor"), None)
    sensor = next((s for s in (row or {}).get("sensors", []) if s["name"] == "inference_drift"), None)
    return sensor and sensor.get("last_value")


def test_drift_of_shifted_inference_inputs_is_seen_by_the_agent(project: Any, running: Any) -> None:
    import numpy as np

    code, doc = project.cli_json("services", "up", str(running), "--json", timeout=180)
    assert code == 0, doc
    http = Http(doc["services"][0]["url"])
    code, doc = project.cli_json("agents", "up", str(running), "--json", timeout=180)
    assert code == 0, doc

    rng = np.random.default_rng(1)
    for chunk in rng.normal(size=(40, 5, 2)):  # 40 requests of 5 rows: PSI needs a few hundred values
        rows = [{"f1": f1, "f2": f2} for f1, f2 in chunk]
        assert http.post("/predict", {"dataframe_records": rows})[0] == 200
    first = wait_for(lambda: (v := _last_value(project)) and v["rows"] >= 40 and v, 90, "the first batch")
    assert first["drifted"] == [] and first["versions"] == ["1"] and first["max_psi"] < 0.2

    for chunk in rng.normal(size=(40, 5, 2)):  # the inputs shift: f1 + 3
        rows = [{"f1": f1 + 3, "f2": f2} for f1, f2 in chunk]
        assert http.post("/predict", {"inputs": rows})[0] == 200
    second = wait_for(lambda: (v := _last_value(project)) and v != first and v, 90, "the shifted batch")
    assert second["rows"] == 40 and second["drifted"] == ["f1"] and second["max_psi"] > 1.0, json.dumps(second)
