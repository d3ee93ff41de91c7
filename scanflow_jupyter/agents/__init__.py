"""Agents: sensors, rules and actuators that supervise pipelines (what `%%agent` cells import).

```python
%%agent watcher --template monitor
from scanflow_jupyter.agents import sensor, rule, actuator, new_run

@rule
def too_weak(run):
    return run.data.metrics.get("accuracy", 1.0) < min_accuracy   # a notebook parameter

@sensor(on=new_run("churn", poll="5s"))
def weak_models(ctx, runs):
    weak = [r.info.run_id for r in runs if too_weak(r)]
    if weak:
        ctx.call("planner", "retrain", {"run_ids": weak})
    return len(weak)
```

`scanflow agents up NOTEBOOK` (or `%scanflow agents up`) starts every agent of the notebook as
a local HTTP service; see `agents.service` (routes), `agents.runtime` (what `ctx` offers),
`agents.events` (MLflow events), `agents.templates` (built-in actions),
`agents.control` + `agents.daemon` (processes, ports, restarts) and `agents.auth` (the project's agent token,
required on every route but `GET /healthz`).

Importing this package is cheap: no FastAPI, uvicorn, httpx or MLflow.
"""

from scanflow_jupyter.agents.decorators import AgentDefinitionError, actuator, rule, sensor
from scanflow_jupyter.agents.events import (
    metric_crosses,
    new_model_version,
    new_predictions,
    new_run,
)

__all__ = [
    "AgentDefinitionError",
    "actuator",
    "metric_crosses",
    "new_model_version",
    "new_predictions",
    "new_run",
    "rule",
    "sensor",
]
