"""MLflow events for `@sensor(on=...)`, detected by polling with a persisted watermark.

Three events: a new finished run in an experiment (`new_run`), a metric crossing a threshold
(`metric_crosses`) and a new registered model version (`new_model_version`). A fourth,
`new_predictions(SERVICE, min_rows=N)`, watches a local service's inference log instead of
MLflow (watermark: the last parquet part handled, `after_part`).

The watermark is a plain JSON dict the runtime persists after the sensor handled the events:
`since_ms` (the newest timestamp handled), `seen` (ids handled within `LOOKBACK_MS` of it) and
`floor_ms` (when the sensor first started: nothing older is ever an event).
Each poll asks MLflow for everything from `since_ms - LOOKBACK_MS` on, and drops what is in
`seen`. So an event is delivered once (its id stays in `seen` while it can still be returned),
and a run whose end time was written a little late (clock skew, slow commit) is still found.
A sensor that raises does not advance the watermark: its events are delivered again at the next
poll (at least once, never silently dropped). The first watermark starts at "now": history is
not replayed unless the event says `include_existing=True`.

Importing this module is cheap; polling needs an `MlflowClient`, passed in by the runtime.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

__all__ = [
    "LOOKBACK_MS",
    "EventSpec",
    "MetricCrosses",
    "NewModelVersion",
    "NewPredictions",
    "NewRun",
    "initial_watermark",
    "metric_crosses",
    "new_model_version",
    "new_predictions",
    "new_run",
    "poll",
]

LOOKBACK_MS = 120_000
PAGE_SIZE = 500
MAX_EVENTS_PER_POLL = 1000
DEFAULT_POLL = "10s"


def _poll_seconds(poll_every: Any) -> float:
    from scanflow_jupyter.agents.decorators import parse_duration

    return parse_duration(poll_every)


def _experiments(experiment: Any) -> tuple[str, ...]:
    from scanflow_jupyter.agents.decorators import AgentDefinitionError

    names = (experiment,) if isinstance(experiment, str) else tuple(experiment or ())
    if not names or not all(isinstance(n, str) and n for n in names):
        raise AgentDefinitionError(
            "bad-event",
            f"{experiment!r} is not an experiment name (or a list of names).",
            "name the MLflow experiment, e.g. new_run('churn') — an application's experiment is its name.",
        )
    return names


@dataclass(frozen=True)
class EventSpec:
    """Base of the MLflow events; `poll_s` is how often MLflow is asked."""

    poll_s: float
    include_existing: bool

    kind = "event"

    def describe(self) -> str:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class NewRun(EventSpec):
    experiments: tuple[str, ...] = ()
    where: str | None = None

    kind = "new_run"

    def describe(self) -> str:
        text = f"new finished run in {', '.join(self.experiments)}"
        return text + (f" where {self.where}" if self.where else "")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "experiments": list(self.experiments), "where": self.where,
                "poll_s": self.poll_s}


@dataclass(frozen=True)
class MetricCrosses(EventSpec):
    experiments: tuple[str, ...] = ()
    metric: str = ""
    above: float | None = None
    below: float | None = None

    kind = "metric_crosses"

    @property
    def threshold(self) -> float:
        return self.above if self.above is not None else self.below  # type: ignore[return-value]

    def side(self, value: float) -> str:
        """`beyond` when `value` is past the threshold (above `above`, or below `below`)."""
        if self.above is not None:
            return "beyond" if value > self.above else "inside"
        return "beyond" if value < self.threshold else "inside"

    def describe(self) -> str:
        direction = f"above {self.above:g}" if self.above is not None else f"below {self.below:g}"
        return f"{self.metric} crossing {direction} in {', '.join(self.experiments)}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "experiments": list(self.experiments), "metric": self.metric,
                "above": self.above, "below": self.below, "poll_s": self.poll_s}


@dataclass(frozen=True)
class NewModelVersion(EventSpec):
    model: str | None = None

    kind = "new_model_version"

    def describe(self) -> str:
        return f"new version of model {self.model}" if self.model else "new model version (any model)"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.model, "poll_s": self.poll_s}


@dataclass(frozen=True)
class NewPredictions(EventSpec):
    service: str = ""
    min_rows: int = 1

    kind = "new_predictions"

    def describe(self) -> str:
        return f"at least {self.min_rows} new prediction(s) of service {self.service}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "service": self.service, "min_rows": self.min_rows, "poll_s": self.poll_s}


def new_predictions(service: str, *, min_rows: int = 1, poll: Any = DEFAULT_POLL,
                    include_existing: bool = False) -> NewPredictions:
    """At least `min_rows` new rows in the inference log of local service `service`
    (`.scanflow/services/SERVICE/inference/`). The sensor gets a `PredictionBatch` (a list of
    rows, oldest first; `.inputs_frame()` is a DataFrame of the logged inputs). Fewer rows wait
    for the next poll; none is delivered twice."""
    from scanflow_jupyter.agents.decorators import AgentDefinitionError

    if not isinstance(service, str) or not service:
        raise AgentDefinitionError("bad-event", f"{service!r} is not a service name.",
                                   "name the %%service cell, e.g. new_predictions('scorer', min_rows=100).")
    if isinstance(min_rows, bool) or not isinstance(min_rows, int) or min_rows < 1:
        raise AgentDefinitionError("bad-event", f"min_rows={min_rows!r} is not a positive whole number.",
                                   "write e.g. new_predictions('scorer', min_rows=100).")
    return NewPredictions(_poll_seconds(poll), bool(include_existing), service, min_rows)


def new_run(experiment: str | list[str], *, where: str | None = None, poll: Any = DEFAULT_POLL,
            include_existing: bool = False) -> NewRun:
    """A run finished (status FINISHED) in `experiment`; `where` is an MLflow filter such as
    `"metrics.accuracy > 0.9"`. The sensor gets the new `mlflow.entities.Run`s, oldest first."""
    from scanflow_jupyter.agents.decorators import AgentDefinitionError

    if where is not None and (not isinstance(where, str) or " or " in where.lower()):
        raise AgentDefinitionError(
            "bad-event", f"where={where!r} is not an MLflow filter MLflow can run.",
            "write conditions joined by AND, e.g. where=\"metrics.accuracy > 0.9 and params.model = 'lr'\"; "
            "MLflow has no OR: use two sensors.")
    return NewRun(_poll_seconds(poll), bool(include_existing), _experiments(experiment), where)


def metric_crosses(experiment: str | list[str], metric: str, *, above: float | None = None,
                   below: float | None = None, poll: Any = DEFAULT_POLL,
                   include_existing: bool = False) -> MetricCrosses:
    """`metric` of the finished runs of `experiment` (in end-time order) crossed `above` (or
    `below`): fires once per crossing, not again until the metric comes back and crosses again."""
    from scanflow_jupyter.agents.decorators import AgentDefinitionError

    if (above is None) == (below is None):
        raise AgentDefinitionError(
            "bad-event", f"metric_crosses('{metric}') needs exactly one of above= or below=.",
            "write e.g. metric_crosses('churn', 'accuracy', below=0.8).")
    for value in (above, below):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise AgentDefinitionError("bad-event", f"threshold {value!r} is not a number.",
                                       "give the threshold as a number, e.g. above=0.9.")
    if not isinstance(metric, str) or not metric:
        raise AgentDefinitionError("bad-event", f"{metric!r} is not a metric name.",
                                   "name the metric as it is logged, e.g. 'accuracy'.")
    return MetricCrosses(_poll_seconds(poll), bool(include_existing), _experiments(experiment), metric,
                         None if above is None else float(above), None if below is None else float(below))


def new_model_version(model: str | None = None, *, poll: Any = DEFAULT_POLL,
                      include_existing: bool = False) -> NewModelVersion:
    """A version of registered model `model` (any model if None) was created. The sensor gets
    the new `mlflow.entities.model_registry.ModelVersion`s, oldest first."""
    return NewModelVersion(_poll_seconds(poll), bool(include_existing), model)


# -- polling -------------------------------------------------------------------------------


def initial_watermark(spec: EventSpec, now_ms: int | None = None) -> dict[str, Any]:
    """The watermark of a sensor that has never polled: start now (or at 0 with history)."""
    # inference-log parts are named by nanosecond: a part written 0.1 ms after this call is new,
    # so the parts' watermark is taken in nanoseconds, not rounded to the millisecond
    now_ns = time.time_ns() if now_ms is None else now_ms * 1_000_000 + 999_999
    since = 0 if spec.include_existing else now_ns // 1_000_000
    mark: dict[str, Any] = {"since_ms": since, "floor_ms": since, "seen": {}}
    if isinstance(spec, MetricCrosses):
        mark["side"] = None
    if isinstance(spec, NewPredictions):
        mark["after_part"] = "" if spec.include_existing else f"part-{now_ns:019d}"
    return mark


def poll(spec: EventSpec, client: Any, watermark: dict[str, Any], cache: dict[str, Any] | None = None,
         *, page_size: int = PAGE_SIZE) -> tuple[list[Any], dict[str, Any]]:
    """Ask MLflow for what happened after `watermark`; return (events, the advanced watermark).

    Nothing is committed: the caller persists the new watermark once the events are handled.
    `cache` keeps experiment ids between polls. MLflow errors propagate.
    """
    cache = cache if cache is not None else {}
    if isinstance(spec, NewPredictions):
        return _poll_predictions(spec, watermark)
    if isinstance(spec, NewModelVersion):
        return _poll_model_versions(spec, client, watermark, page_size)
    if isinstance(spec, (NewRun, MetricCrosses)):
        return _poll_runs(spec, client, watermark, cache, page_size)
    raise TypeError(f"unknown event {spec!r}")


def _experiment_ids(names: tuple[str, ...], client: Any, cache: dict[str, Any]) -> list[str]:
    ids = []
    for name in names:
        exp_id = cache.get(name)
        if exp_id is None:
            exp = client.get_experiment_by_name(name)
            if exp is None:
                continue  # not created yet: nothing can have happened in it
            exp_id = cache[name] = exp.experiment_id
        ids.append(exp_id)
    return ids


def _advance(watermark: dict[str, Any], handled: list[tuple[str, int]]) -> dict[str, Any]:
    since = max([watermark.get("since_ms", 0), *(t for _, t in handled)])
    seen = {**watermark.get("seen", {}), **dict(handled)}
    seen = {key: t for key, t in seen.items() if t >= since - LOOKBACK_MS}
    return {**watermark, "since_ms": since, "seen": seen}


def _poll_runs(spec: NewRun | MetricCrosses, client: Any, watermark: dict[str, Any],
               cache: dict[str, Any], page_size: int) -> tuple[list[Any], dict[str, Any]]:
    exp_ids = _experiment_ids(spec.experiments, client, cache)
    if not exp_ids:
        return [], watermark
    floor = int(watermark.get("floor_ms", 0))
    low = max(floor, int(watermark.get("since_ms", 0)) - LOOKBACK_MS)
    conditions = ["attributes.status = 'FINISHED'", f"attributes.end_time >= {low}"]
    if isinstance(spec, NewRun) and spec.where:
        conditions.append(spec.where)
    seen = watermark.get("seen", {})
    fresh: list[Any] = []
    token = None
    while len(fresh) < MAX_EVENTS_PER_POLL:
        page = client.search_runs(exp_ids, filter_string=" and ".join(conditions),
                                  order_by=["attributes.end_time ASC"], max_results=page_size,
                                  page_token=token)
        fresh += [r for r in page if r.info.run_id not in seen and r.info.end_time is not None
                  and r.info.end_time >= floor]
        token = getattr(page, "token", None)
        if not token:
            break
    fresh.sort(key=lambda r: (r.info.end_time, r.info.run_id))
    fresh = fresh[:MAX_EVENTS_PER_POLL]
    handled = [(r.info.run_id, int(r.info.end_time)) for r in fresh]
    if isinstance(spec, NewRun):
        return fresh, _advance(watermark, handled)
    events = []
    side = watermark.get("side")
    for run in fresh:
        value = run.data.metrics.get(spec.metric)
        if value is None:
            continue
        now = spec.side(float(value))
        if now == "beyond" and side != "beyond":
            events.append(run)
        side = now
    return events, {**_advance(watermark, handled), "side": side}


def _poll_model_versions(spec: NewModelVersion, client: Any, watermark: dict[str, Any],
                         page_size: int) -> tuple[list[Any], dict[str, Any]]:
    low = max(int(watermark.get("floor_ms", 0)), int(watermark.get("since_ms", 0)) - LOOKBACK_MS)
    seen = watermark.get("seen", {})
    filter_string = f"name = '{spec.model}'" if spec.model else None
    fresh: list[Any] = []
    token = None
    while True:  # newest first, until older than the lookback window
        page = client.search_model_versions(filter_string, max_results=page_size,
                                            order_by=["creation_timestamp DESC"], page_token=token)
        older = False
        for mv in page:
            created = int(mv.creation_timestamp or 0)
            if created < low:
                older = True
                break
            if f"{mv.name}/{mv.version}" not in seen:
                fresh.append(mv)
        token = getattr(page, "token", None)
        if older or not token or len(fresh) >= MAX_EVENTS_PER_POLL:
            break
    fresh.sort(key=lambda mv: (int(mv.creation_timestamp or 0), mv.name, int(mv.version)))
    fresh = fresh[:MAX_EVENTS_PER_POLL]
    handled = [(f"{mv.name}/{mv.version}", int(mv.creation_timestamp or 0)) for mv in fresh]
    return fresh, _advance(watermark, handled)


def _poll_predictions(spec: NewPredictions, watermark: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """New inference-log parts of `spec.service` after the watermark, once they hold `min_rows` (on
    Kubernetes, mirrored from `s3://BUCKET/services/SERVICE/` first)."""
    from scanflow_jupyter.services.inference_log import (
        count_rows,
        inference_folder,
        mirror_parts,
        new_parts,
        object_store_target,
        read_batch,
    )
    from scanflow_jupyter.tracking import scanflow_home

    after = str(watermark.get("after_part", ""))
    folder = inference_folder(scanflow_home(), spec.service)
    target = object_store_target(spec.service)
    if target is not None:  # in the team environment: the service pods write to the object store
        mirror_parts(target, folder, after)
    parts = new_parts(folder, after)
    if not parts or count_rows(parts) < spec.min_rows:
        return [], watermark
    batch = read_batch(parts)
    if len(batch) < spec.min_rows:  # parts rotated away meanwhile
        return [], watermark
    return batch, {**watermark, "after_part": parts[-1].name, "since_ms": int(time.time() * 1000)}
