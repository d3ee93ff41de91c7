"""`on=new_predictions(SERVICE, min_rows=N)`: the inference log as an agent trigger, and drift
(KS + PSI) of the logged inputs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from scanflow_jupyter.agents import new_predictions
from scanflow_jupyter.agents.decorators import AgentDefinitionError
from scanflow_jupyter.agents.events import initial_watermark, poll
from scanflow_jupyter.agents.templates import drift_test, population_stability_index
from scanflow_jupyter.services.inference_log import InferenceLog, inference_folder


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, require: Any) -> Path:
    require("pyarrow")
    require("pandas")
    monkeypatch.setenv("SCANFLOW_HOME", str(tmp_path / ".scanflow"))
    return tmp_path / ".scanflow"


def _write(home: Path, rows: list[dict[str, float]], version: str = "1") -> None:
    log = InferenceLog(inference_folder(home, "clf"), "clf", flush_s=60)
    for row in rows:
        log.record([row], [1], version=version, latency_ms=1.0, status=200)
    log.close()


def test_fires_once_min_rows_are_there_and_never_twice(home: Path) -> None:
    spec = new_predictions("clf", min_rows=5, poll="1s")
    _write(home, [{"x": 0.0}] * 3)  # written before the sensor started: not an event
    mark = initial_watermark(spec)
    assert poll(spec, None, mark) == ([], mark)
    _write(home, [{"x": 1.0}] * 3)
    events, mark2 = poll(spec, None, mark)
    assert events == [] and mark2 == mark  # 3 < 5: wait
    _write(home, [{"x": 2.0}] * 2, version="2")
    events, mark3 = poll(spec, None, mark2)
    assert len(events) == 5 and [r["model_version"] for r in events] == ["1"] * 3 + ["2"] * 2
    assert list(events.inputs_frame()["x"]) == [1.0, 1.0, 1.0, 2.0, 2.0]
    assert events.predictions() == [1] * 5 and events[0]["status"] == 200
    assert poll(spec, None, mark3)[0] == []  # delivered once


def test_a_part_written_in_the_watermarks_millisecond_is_new(home: Path) -> None:
    """Parts are named by nanosecond: one written 0.1 ms after the sensor started counts (a watermark
    rounded up to the end of its millisecond dropped it — a CI run lost a batch that way)."""
    spec = new_predictions("clf", min_rows=1)
    _write(home, [{"x": 0.0}])
    (old,) = inference_folder(home, "clf").glob("part-*.parquet")
    mark = initial_watermark(spec)
    now = time.time_ns()
    old.rename(old.with_name(f"part-{now:019d}.parquet"))
    events, _ = poll(spec, None, mark)
    assert len(events) == 1


def test_include_existing_and_bad_arguments(home: Path) -> None:
    _write(home, [{"x": 0.0}] * 2)
    spec = new_predictions("clf", min_rows=2, include_existing=True)
    assert len(poll(spec, None, initial_watermark(spec))[0]) == 2
    assert new_predictions("nosuch").describe() == "at least 1 new prediction(s) of service nosuch"
    for bad in ({"service": ""}, {"service": "clf", "min_rows": 0}, {"service": "clf", "min_rows": True}):
        with pytest.raises(AgentDefinitionError):
            new_predictions(**bad)


def test_psi_and_drift_of_a_prediction_batch(home: Path) -> None:
    np = pytest.importorskip("numpy")
    rng = np.random.default_rng(1)
    reference = {"x": rng.normal(size=2000), "y": rng.normal(size=2000)}
    assert population_stability_index(reference["x"], rng.normal(size=2000)) < 0.05
    assert population_stability_index(reference["x"], rng.normal(1.5, 1, size=2000)) > 0.5

    _write(home, [{"x": float(v), "y": float(w)} for v, w in zip(rng.normal(2, 1, 300), rng.normal(size=300),
                                                                     strict=True)])
    spec = new_predictions("clf", min_rows=300, include_existing=True)
    batch = poll(spec, None, initial_watermark(spec))[0]
    result = drift_test(reference, batch, threshold=0.01)
    assert result["drifted"] == ["x"] and result["features"]["x"]["psi"] > 0.5
    assert result["features"]["y"]["psi"] < 0.2 and result["max_psi"] == result["features"]["x"]["psi"]
    psi_only = drift_test(reference, batch, threshold=1e-300, psi_threshold=0.2)  # KS never fires here
    assert psi_only["drifted"] == ["x"]
