"""The `%%service` server (scanflow_jupyter.serving) through real HTTP requests to its ASGI app."""

from __future__ import annotations

import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from scanflow_jupyter.serving import ServiceDefinitionError, create_app

SCORER = '''
import math

def load():
    return {"bias": 0.5}

def predict(payload, state):
    if "x" not in payload:
        raise KeyError("x")
    return [1 / (1 + math.exp(-(v + state["bias"]))) for v in payload["x"]]
'''


def test_predict_and_health():
    client = TestClient(create_app(SCORER, "scorer"))
    assert client.get("/health").json() == {"status": "ok", "service": "scorer"}
    answer = client.post("/predict", json={"x": [-0.5, 0.0]})
    assert answer.status_code == 200
    assert answer.json()["prediction"][0] == pytest.approx(0.5)
    assert answer.json()["prediction"][1] > 0.6


def test_bad_payload_is_a_400_with_the_reason():
    client = TestClient(create_app(SCORER, "scorer"))
    answer = client.post("/predict", json={"y": 1})
    assert answer.status_code == 400 and "KeyError" in answer.json()["detail"]


def test_predict_without_state_and_numpy_results():
    source = "import numpy as np\ndef predict(payload):\n    return np.asarray(payload) * 2\n"
    client = TestClient(create_app(source))
    assert client.post("/predict", json=[1, 2]).json() == {"prediction": [2, 4]}


@pytest.mark.parametrize(("source", "expected"), [
    ("x = 1\n", "defines no predict(payload)"),
    ("def predict(p)\n    return p\n", "line 1"),
    ("def load():\n    raise OSError('no weights')\ndef predict(p):\n    return p\n", "load() failed: OSError: no weights"),
])
def test_unservable_cells_are_refused_with_the_fix(source, expected):
    with pytest.raises(ServiceDefinitionError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        create_app(source, filename="service.py")


def test_cli_exits_2_on_a_cell_without_predict(tmp_path):
    cell = tmp_path / "service.py"
    cell.write_text("x = 1\n")
    done = subprocess.run([sys.executable, "-m", "scanflow_jupyter.serving", "--source", str(cell)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "defines no predict(payload)" in done.stderr
