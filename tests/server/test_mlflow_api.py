"""mlflow/experiments and mlflow/runs on a tracking store set with c.Scanflow.tracking_uri:
pagination with page_token, filters, ordering, nested runs, errors."""

from __future__ import annotations

from typing import Any

import pytest

from tests.server.conftest import api

TOP_LEVEL = 140
NESTED = 10


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, require: Any) -> dict[str, Any]:
    """150 runs made with MlflowClient: 140 top-level, 10 nested under the first."""
    require("mlflow")
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    tmp_path = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{(tmp_path / 'paged.db').as_posix()}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("paged", artifact_location=str(tmp_path / "artifacts"))
    client.create_experiment("other", artifact_location=str(tmp_path / "artifacts2"))
    ids = []
    for i in range(TOP_LEVEL):
        run = client.create_run(exp, run_name=f"r{i}", start_time=1_700_000_000_000 + i * 1000)
        client.log_batch(run.info.run_id, metrics=[Metric("acc", i / TOP_LEVEL, 0, 0)], params=[Param("i", str(i))],
                         tags=[RunTag("scanflow.app", "paged"), RunTag("other.tag", "x")])
        client.set_terminated(run.info.run_id, end_time=1_700_000_000_000 + i * 1000 + 2500)
        ids.append(run.info.run_id)
    children = []
    for j in range(NESTED):
        run = client.create_run(exp, run_name=f"child{j}", tags={"mlflow.parentRunId": ids[0], "scanflow.step": f"s{j}"})
        children.append(run.info.run_id)
    return {"uri": uri, "ids": ids, "children": children}


@pytest.fixture
def jp_server_config(store: dict[str, Any]) -> dict[str, Any]:
    return {"ServerApp": {"jpserver_extensions": {"scanflow_jupyter.server": True}},
            "Scanflow": {"tracking_uri": store["uri"]}}


async def test_experiments(jp_fetch: Any, store: dict[str, Any]) -> None:
    _, doc = await api(jp_fetch, "mlflow", "experiments", expect=200)
    assert {"paged", "other"} <= {e["name"] for e in doc["experiments"]}
    assert all(e["lifecycle_stage"] == "active" for e in doc["experiments"])
    _, cfg = await api(jp_fetch, "config", expect=200)
    assert cfg["tracking_uri"] == store["uri"]


async def test_pagination(jp_fetch: Any, store: dict[str, Any]) -> None:
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        params = {"experiment": "paged", "max_results": 40, "order_by": "metrics.acc DESC"}
        if token:
            params["page_token"] = token
        _, doc = await api(jp_fetch, "mlflow", "runs", params=params, expect=200)
        seen += [r["run_id"] for r in doc["runs"]]
        pages += 1
        token = doc["next_page_token"]
        if not token:
            break
    assert pages == 4
    assert seen == list(reversed(store["ids"])), "top-level runs only, ordered by acc descending, no repeats"
    _, first = await api(jp_fetch, "mlflow", "runs", params={"experiment": "paged", "max_results": 1,
                                                            "order_by": "metrics.acc ASC"}, expect=200)
    run = first["runs"][0]
    assert run["run_id"] == store["ids"][0] and run["params"] == {"i": "0"} and run["metrics"] == {"acc": 0.0}
    assert run["tags"] == {"scanflow.app": "paged"} and run["duration_s"] == 2.5 and run["status"] == "FINISHED"


async def test_filters_and_nesting(jp_fetch: Any, store: dict[str, Any]) -> None:
    _, doc = await api(jp_fetch, "mlflow", "runs", params={"experiment": "paged", "filter": "params.i = '7'"},
                       expect=200)
    assert [r["run_id"] for r in doc["runs"]] == [store["ids"][7]]
    _, doc = await api(jp_fetch, "mlflow", "runs", params={"filter": "metrics.acc >= 0.5", "max_results": 1000},
                       expect=200)
    assert len(doc["runs"]) == TOP_LEVEL // 2
    _, doc = await api(jp_fetch, "mlflow", "runs", params={"experiment": "paged", "nested": "true",
                                                          "max_results": 1000}, expect=200)
    assert len(doc["runs"]) == TOP_LEVEL + NESTED
    _, doc = await api(jp_fetch, "mlflow", "runs", params={"parent": store["ids"][0]}, expect=200)
    assert sorted(r["run_id"] for r in doc["runs"]) == sorted(store["children"])


async def test_errors(jp_fetch: Any) -> None:
    _, doc = await api(jp_fetch, "mlflow", "runs", params={"filter": "metrics.acc >>> 1"}, expect=400)
    assert "filter" in doc["message"].lower() or "invalid" in doc["message"].lower()
    assert doc["fix"]
    await api(jp_fetch, "mlflow", "runs", params={"filter": "nonsense"}, expect=400)
    await api(jp_fetch, "mlflow", "runs", params={"order_by": "bogus column"}, expect=400)
    await api(jp_fetch, "mlflow", "runs", params={"page_token": "not-a-token"}, expect=400)
    await api(jp_fetch, "mlflow", "runs", params={"max_results": 0}, expect=400)
    await api(jp_fetch, "mlflow", "runs", params={"max_results": "many"}, expect=400)
    _, doc = await api(jp_fetch, "mlflow", "runs", params={"experiment": "nope"}, expect=404)
    assert "nope" in doc["message"]
