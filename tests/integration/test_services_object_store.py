"""A service whose environment keeps the run store in an object store (as in a Kubernetes team
environment) writes its inference log there, and an agent's `new_predictions` trigger reads it back.

Real parts: `scanflow serve` as a process, versitygw (the environment's S3 server) as a local
process, the agents' event poller in this process.
"""

from __future__ import annotations

import io
from typing import Any

import pytest

from scanflow_jupyter.data.object_store import S3Client
from tests.integration.test_object_store import ACCESS, SECRET, endpoint  # noqa: F401 (fixture)
from tests.services_support import CUSTOM_SERVICE, Served, wait_for

pytestmark = pytest.mark.integration

ROWS = [{"age": 3, "income": 1.5}, {"age": 1, "income": 0.0}]


def _store_env(url: str) -> dict[str, str]:
    return {"SCANFLOW_RUN_STORE": "s3://scanflow/runs", "SCANFLOW_S3_ENDPOINT_URL": url,
            "AWS_ACCESS_KEY_ID": ACCESS, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1"}


def test_the_inference_log_goes_to_the_object_store_and_new_predictions_reads_it(
        project: Any, require: Any, endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    require("uvicorn")
    require("pyarrow")
    import pyarrow.parquet as pq

    from scanflow_jupyter.agents.events import NewPredictions, poll
    from scanflow_jupyter.services.inference_log import _schema, inference_folder

    s3 = S3Client(endpoint, ACCESS, SECRET)
    s3.ensure_bucket("scanflow")
    nb = project.write_notebook("scoring", ["%%setup\nWEIGHT = 2.0", CUSTOM_SERVICE])
    served = Served(project.root, {**project.env(), **_store_env(endpoint)}, nb, "scorer")
    try:
        for _ in range(3):
            assert served.http.post("/predict", {"inputs": ROWS})[0] == 200
        prefix = "services/scorer/"
        keys = wait_for(lambda: [k for k, _ in s3.list("scanflow", prefix)], timeout=60, what="a part in s3")
    finally:
        served.stop()
    keys = [k for k, _ in s3.list("scanflow", prefix)]  # stopping flushed the rest
    assert keys and all(k.startswith(prefix + "part-") and k.endswith(".parquet") for k in keys), keys
    tables = [pq.read_table(io.BytesIO(s3.get("scanflow", k))) for k in keys]
    assert all(t.schema.equals(_schema()) for t in tables)  # the local log's schema
    assert sum(t.num_rows for t in tables) == 3
    local = inference_folder(project.home, "scorer")
    assert not list(local.glob("part-*.parquet")), "with an object store the service writes no local parts"

    # the agent side, in an environment like the agent pods' (ConfigMap + Secret)
    for key, value in _store_env(endpoint).items():
        monkeypatch.setenv(key, value)
    spec = NewPredictions(1.0, True, service="scorer", min_rows=3)
    batch, mark = poll(spec, None, {"after_part": ""})
    assert len(batch) == 3 and batch[0]["inputs"] == ROWS and batch[0]["service"] == "scorer"
    assert mark["after_part"] == max(keys).rsplit("/", 1)[1]
    again, _ = poll(spec, None, mark)
    assert again == []  # nothing new after the watermark
