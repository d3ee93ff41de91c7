"""Metrics where users look for them: on cached step runs and on the pipeline's parent run.

- A cached step's MLflow run gets the metric histories of the step run it reuses (found by its
  tags `scanflow.run_id` = the reused pipeline run, `scanflow.step`), tagged
  `scanflow.metrics_from` = that MLflow run id; so `metrics.accuracy > 0.9` finds it too.
- `%%executor NAME --metrics accuracy f1` marks pipeline metrics (Kale's `pipeline-metrics`):
  after the step, the latest value of each marked metric of its run is logged on the parent run
  under the same name.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

TAG_METRICS_FROM = "scanflow.metrics_from"
_SKIP = ("scanflow.",)  # Scanflow's own metrics (duration) are not copied
_BATCH = 1000  # MLflow's log_batch limit of metrics per request


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def find_step_run(client: Any, experiment_id: str, run_id: str, step: str) -> str | None:
    """The MLflow run id of step `step` of pipeline run `run_id` (newest if several)."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`scanflow.run_id` = {_quote(run_id)} and tags.`scanflow.step` = {_quote(step)}"
                      " and tags.`scanflow.kind` = 'step'",
        max_results=5, order_by=["attributes.start_time DESC"])
    return runs[0].info.run_id if runs else None


def copy_metric_history(client: Any, source: str, target: str) -> list[str]:
    """Log every metric history of run `source` on run `target` (same values, steps, timestamps)."""
    from mlflow.entities import Metric

    names = [k for k in client.get_run(source).data.metrics if not k.startswith(_SKIP)]
    history: list[Metric] = []
    for name in names:
        history += [Metric(m.key, m.value, m.timestamp, m.step) for m in client.get_metric_history(source, name)]
    for start in range(0, len(history), _BATCH):
        client.log_batch(target, metrics=history[start:start + _BATCH], synchronous=True)
    return names


def copy_reused_metrics(client: Any, target: str, run_id: str, step: str) -> str | None:
    """Give the cached step run `target` the metrics of step `step` of run `run_id`; return the
    MLflow run they came from (None: that run is not in this store, e.g. recorded elsewhere)."""
    experiment_id = client.get_run(target).info.experiment_id
    source = find_step_run(client, experiment_id, run_id, step)
    if source is None or source == target:
        return None
    copy_metric_history(client, source, target)
    client.set_tag(target, TAG_METRICS_FROM, source, synchronous=True)
    return source


def lift_pipeline_metrics(client: Any, step_run: str, parent: str, names: Iterable[str]) -> list[str]:
    """Log the latest value of each of `names` logged on `step_run` on the `parent` run; return
    the names it found (a marked metric the step never logged is left out)."""
    from mlflow.entities import Metric

    logged = client.get_run(step_run).data.metrics
    found = [n for n in dict.fromkeys(names) if n in logged]
    metrics = []
    for name in found:
        last = max(client.get_metric_history(step_run, name), key=lambda m: (m.step, m.timestamp))
        metrics.append(Metric(name, last.value, last.timestamp, last.step))
    if metrics:
        client.log_batch(parent, metrics=metrics, synchronous=True)
    return found
