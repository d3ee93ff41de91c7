"""MLflow events polled with a watermark, against a real sqlite MLflow store.

A watermark is persisted as JSON between polls (and across agent restarts): each test
round-trips it through `json` the way `AgentState` does, and checks nothing is delivered twice
and nothing is missed.
"""

from __future__ import annotations

import itertools
import json
import time

import pytest

from scanflow_jupyter.agents.events import (
    LOOKBACK_MS,
    initial_watermark,
    metric_crosses,
    new_model_version,
    new_run,
    poll,
)
from tests.agents_support import fresh_store

pytestmark = pytest.mark.integration

_names = itertools.count()


@pytest.fixture(scope="module")
def client(tmp_path_factory, require):
    tracking = require("mlflow.tracking")
    uri = fresh_store(tmp_path_factory.mktemp("mlflow"))
    return tracking.MlflowClient(tracking_uri=uri, registry_uri=uri)


@pytest.fixture
def experiment(client):
    name = f"exp-{next(_names)}"
    return name, client.create_experiment(name)


def finished_run(client, exp_id, end_time=None, **metrics):
    run = client.create_run(exp_id)
    for key, value in metrics.items():
        client.log_metric(run.info.run_id, key, value)
    client.set_terminated(run.info.run_id, end_time=end_time)
    return run.info.run_id


def persisted(mark):
    return json.loads(json.dumps(mark))


def ids(runs):
    return [r.info.run_id for r in runs]


def test_new_runs_once_each_and_only_after_the_watermark(client, experiment):
    name, exp_id = experiment
    old = finished_run(client, exp_id)
    time.sleep(0.01)
    spec = new_run(name)
    mark = initial_watermark(spec)
    assert poll(spec, client, mark)[0] == []  # history is not replayed
    new = [finished_run(client, exp_id) for _ in range(3)]
    events, mark2 = poll(spec, client, persisted(mark))
    assert ids(events) == new  # oldest first
    assert old not in ids(events)
    again, mark3 = poll(spec, client, persisted(mark2))
    assert again == [] and mark3["since_ms"] == mark2["since_ms"]
    later = finished_run(client, exp_id)
    assert ids(poll(spec, client, persisted(mark3))[0]) == [later]


def test_include_existing_replays_history(client, experiment):
    name, exp_id = experiment
    old = finished_run(client, exp_id)
    spec = new_run(name, include_existing=True)
    assert ids(poll(spec, client, initial_watermark(spec))[0]) == [old]


def test_a_failed_sensor_gets_the_same_events_again(client, experiment):
    """The runtime commits the new watermark only after the sensor succeeded."""
    name, exp_id = experiment
    spec = new_run(name)
    mark = initial_watermark(spec)
    run = finished_run(client, exp_id)
    first, _uncommitted = poll(spec, client, mark)
    second, committed = poll(spec, client, mark)
    assert ids(first) == ids(second) == [run]
    assert poll(spec, client, committed)[0] == []


def test_running_runs_wait_until_they_finish(client, experiment):
    name, exp_id = experiment
    spec = new_run(name)
    mark = initial_watermark(spec)
    run = client.create_run(exp_id)
    events, mark = poll(spec, client, mark)
    assert events == []
    client.set_terminated(run.info.run_id)
    assert ids(poll(spec, client, mark)[0]) == [run.info.run_id]


def test_late_end_time_inside_the_lookback_is_still_delivered(client, experiment):
    name, exp_id = experiment
    spec = new_run(name)
    mark = initial_watermark(spec, now_ms=int(time.time() * 1000) - 4 * LOOKBACK_MS)  # started long ago
    finished_run(client, exp_id)
    _events, mark = poll(spec, client, mark)
    late = finished_run(client, exp_id, end_time=mark["since_ms"] - 30_000)  # committed late, clock skew
    assert ids(poll(spec, client, persisted(mark))[0]) == [late]
    too_late = finished_run(client, exp_id, end_time=mark["since_ms"] - LOOKBACK_MS - 60_000)
    assert too_late not in ids(poll(spec, client, mark)[0])


def test_runs_finished_before_the_sensor_first_started_are_never_events(client, experiment):
    name, exp_id = experiment
    spec = new_run(name)
    mark = initial_watermark(spec)
    before = finished_run(client, exp_id, end_time=mark["floor_ms"] - 1000)
    assert before not in ids(poll(spec, client, mark)[0])


def test_where_filter_and_several_pages(client, experiment):
    name, exp_id = experiment
    spec = new_run(name, where="metrics.accuracy > 0.9")
    mark = initial_watermark(spec)
    good = [finished_run(client, exp_id, accuracy=0.91 + i / 100) for i in range(5)]
    finished_run(client, exp_id, accuracy=0.5)
    events, mark = poll(spec, client, mark, page_size=2)
    assert ids(events) == good
    assert poll(spec, client, mark, page_size=2)[0] == []


def test_experiment_created_after_the_sensor_started(client):
    name = f"exp-{next(_names)}"
    spec = new_run(name)
    mark = initial_watermark(spec)
    cache: dict = {}
    assert poll(spec, client, mark, cache) == ([], mark)
    exp_id = client.create_experiment(name)
    run = finished_run(client, exp_id)
    assert ids(poll(spec, client, mark, cache)[0]) == [run]


def test_metric_crossing_fires_once_per_crossing(client, experiment):
    name, exp_id = experiment
    spec = metric_crosses(name, "accuracy", above=0.9)
    mark = initial_watermark(spec)
    seen = []
    for value in (0.5, 0.95, 0.97, 0.3, 0.99):
        run = finished_run(client, exp_id, accuracy=value)
        time.sleep(0.002)
        events, mark = poll(spec, client, persisted(mark))
        seen.append((value, [r.info.run_id for r in events] == [run]))
    assert seen == [(0.5, False), (0.95, True), (0.97, False), (0.3, False), (0.99, True)]
    assert mark["side"] == "beyond"


def test_metric_crossing_below(client, experiment):
    name, exp_id = experiment
    spec = metric_crosses(name, "loss", below=0.1)
    mark = initial_watermark(spec)
    finished_run(client, exp_id, loss=0.5)
    finished_run(client, exp_id, other=1.0)  # no such metric: ignored
    low = finished_run(client, exp_id, loss=0.05)
    events, mark = poll(spec, client, mark)
    assert ids(events) == [low]


def test_new_model_versions(client, experiment):
    name, exp_id = experiment
    model = f"model-{name}"
    client.create_registered_model(model)
    spec = new_model_version(model)
    mark = initial_watermark(spec)
    run = finished_run(client, exp_id)
    v1 = client.create_model_version(model, f"runs:/{run}/model", run_id=run)
    v2 = client.create_model_version(model, f"runs:/{run}/model", run_id=run)
    events, mark = poll(spec, client, persisted(mark), page_size=1)
    assert [e.version for e in events] == [v1.version, v2.version]
    assert poll(spec, client, persisted(mark))[0] == []
    other = f"other-{name}"
    client.create_registered_model(other)
    client.create_model_version(other, f"runs:/{run}/model", run_id=run)
    assert poll(spec, client, mark)[0] == []  # another model
    anything = new_model_version()
    assert [e.name for e in poll(anything, client, mark)[0]] == [other]
