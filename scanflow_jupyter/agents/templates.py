"""Built-in actions of the agent templates (monitor, analyzer, planner, executor).

Each template adds one built-in actuator to its agents, and every agent can use all four
actions through its context (`ctx.run_pipeline`, `ctx.promote_if_better`, `ctx.drift_test`,
`ctx.metric_summary`):

| template | built-in actuator | action |
| --- | --- | --- |
| monitor  | `metric_summary` | count the finished runs of an experiment and summarise a metric |
| analyzer | `drift_test`     | per feature: two-sample Kolmogorov–Smirnov test (scipy) and PSI |
| planner  | `run_pipeline`   | run a notebook's pipeline with parameters (`run_notebook`) |
| executor | `promote_model`  | point a model alias (default `champion`) at a version whose metric beats it |

Importing this module is cheap: scipy, numpy, mlflow and the runner are imported by the
action that needs them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "BUILTIN_ACTUATORS",
    "DEFAULT_ALIAS",
    "ActionError",
    "NotebookNotAllowed",
    "check_notebook_allowed",
    "builtin_actuators",
    "drift_test",
    "metric_summary",
    "population_stability_index",
    "promote_if_better",
    "run_pipeline",
]

DEFAULT_ALIAS = "champion"

#: template -> names of the actuators it adds (kept here, cheap, for the loader's clash check).
BUILTIN_ACTUATORS: dict[str, tuple[str, ...]] = {
    "monitor": ("metric_summary",),
    "analyzer": ("drift_test",),
    "planner": ("run_pipeline",),
    "executor": ("promote_model",),
}


class ActionError(RuntimeError):
    """A built-in action could not do its job; the message says why and what to change."""


# -- planner: run a pipeline ----------------------------------------------------------------


class NotebookNotAllowed(ActionError, PermissionError):
    """`run_pipeline` was asked for a notebook outside the project root and the agent's allow list."""


def _under(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


def check_notebook_allowed(notebook: str | Path, *, base_dir: str | Path, root: str | Path,
                           allow: Sequence[str | Path] = ()) -> Path:
    """The resolved path of `notebook` (relative to `base_dir`) if it lies inside `root` or
    matches `allow` (files, or folders whose notebooks are all allowed; relative to
    `base_dir`); NotebookNotAllowed otherwise. Symlinks are followed and `..` resolved first,
    so neither leads out of the project."""
    path = Path(notebook).expanduser()
    if not path.is_absolute():
        path = Path(base_dir) / path
    resolved = path.resolve()
    root_dir = Path(root).resolve()
    if _under(resolved, root_dir):
        return resolved
    for entry in allow:
        allowed = Path(entry).expanduser()
        allowed = (allowed if allowed.is_absolute() else Path(base_dir) / allowed).resolve()
        if resolved == allowed or (allowed.is_dir() and _under(resolved, allowed)):
            return resolved
    raise NotebookNotAllowed(
        f"run_pipeline refuses notebook {str(notebook)!r}: it resolves to {resolved}, outside the project root "
        f"{root_dir} and not in this agent's allow_notebooks. Fix: keep the notebook inside the project, or "
        f"declare it in the %%agent cell: allow_notebooks = [{str(resolved)!r}].")


def run_pipeline(notebook: str | Path, *, params: Mapping[str, Any] | None = None,
                 only: Sequence[str] | None = None, no_cache: bool = False,
                 base_dir: str | Path | None = None) -> dict[str, Any]:
    """Run `notebook` as a pipeline (the runner API of `scanflow run`); return its result dict.

    A relative `notebook` is resolved against `base_dir` (the agent's notebook folder).
    An invalid notebook or unknown parameter raises ActionError with the runner's messages.
    """
    from scanflow_jupyter.runtime.runner import InvalidApplication, run_notebook

    path = Path(notebook)
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    try:
        result = run_notebook(path, params=dict(params or {}) or None, only=list(only or []) or None,
                              no_cache=no_cache, handle_signals=False)
    except InvalidApplication as exc:
        details = "; ".join(f"{m.text} Fix: {m.fix}" for m in exc.messages if m.severity == "error")
        raise ActionError(f"pipeline {path.name} was not run: {details or exc}") from None
    return {"notebook": str(path), **result.to_dict()}


# -- executor: promote a model version --------------------------------------------------------


def _is_missing(exc: BaseException) -> bool:
    code = getattr(exc, "error_code", "") or ""
    return "RESOURCE_DOES_NOT_EXIST" in str(code) or "not found" in str(exc).lower()


def promote_if_better(client: Any, model: str, metric: str, *, version: str | int | None = None,
                      run_id: str | None = None, alias: str = DEFAULT_ALIAS,
                      greater_is_better: bool = True) -> dict[str, Any]:
    """Point `alias` of registered model `model` at the candidate version if its run's `metric`
    beats the current holder's (or nobody holds the alias yet).

    The candidate is `version`, else the newest version created by `run_id`, else the newest
    version of the model. Returns what was compared and whether the alias moved.
    """
    candidate = _candidate_version(client, model, version, run_id)
    cand_value = _run_metric(client, candidate.run_id, metric)
    if cand_value is None:
        raise ActionError(f"model {model} version {candidate.version}: its run {candidate.run_id} "
                          f"has no metric '{metric}'. Log it in the training step, or compare on "
                          "another metric.")
    champion = None
    try:
        champion = client.get_model_version_by_alias(model, alias)
    except Exception as exc:  # noqa: BLE001 - MlflowException when the alias is unset
        if not _is_missing(exc):
            raise
    out: dict[str, Any] = {"model": model, "alias": alias, "metric": metric,
                           "candidate_version": str(candidate.version), "candidate_value": cand_value,
                           "champion_version": None, "champion_value": None}
    if champion is not None:
        out["champion_version"] = str(champion.version)
        out["champion_value"] = _run_metric(client, champion.run_id, metric)
        if str(champion.version) == str(candidate.version):
            return {**out, "promoted": False, "reason": f"version {candidate.version} already holds @{alias}"}
    champ_value = out["champion_value"]
    if champion is None or champ_value is None:
        better = True
        reason = f"no version held @{alias}" if champion is None else f"the champion has no '{metric}'"
    else:
        better = cand_value > champ_value if greater_is_better else cand_value < champ_value
        sign = ">" if greater_is_better else "<"
        reason = (f"{metric} {cand_value:g} {sign} {champ_value:g}" if better
                  else f"{metric} {cand_value:g} does not beat the champion's {champ_value:g}")
    if better:
        client.set_registered_model_alias(model, alias, str(candidate.version))
    return {**out, "promoted": better, "reason": reason}


def _candidate_version(client: Any, model: str, version: Any, run_id: str | None) -> Any:
    if version is not None:
        return client.get_model_version(model, str(version))
    filter_string = f"name = '{model}'" + (f" and run_id = '{run_id}'" if run_id else "")
    versions = client.search_model_versions(filter_string, max_results=200,
                                            order_by=["creation_timestamp DESC"])
    if not versions:
        what = f"created by run {run_id}" if run_id else "at all"
        raise ActionError(f"registered model '{model}' has no version {what}. Register one "
                          "(mlflow.register_model) or pass version=.")
    return max(versions, key=lambda v: int(v.version))


def _run_metric(client: Any, run_id: str | None, metric: str) -> float | None:
    if not run_id:
        return None
    value = client.get_run(run_id).data.metrics.get(metric)
    return None if value is None else float(value)


# -- analyzer: drift test -----------------------------------------------------------------


def _columns(data: Any, what: str) -> dict[str, Any]:
    """Feature name -> 1-D numpy array, from a DataFrame, a dict of columns, records or a 2-D array."""
    import numpy as np

    if hasattr(data, "columns") and hasattr(data, "__getitem__"):  # pandas DataFrame
        return {str(c): np.asarray(data[c]) for c in data.columns}
    if isinstance(data, Mapping):
        return {str(k): np.asarray(v) for k, v in data.items()}
    if isinstance(data, Sequence) and data and all(isinstance(r, Mapping) for r in data):
        keys = list(dict.fromkeys(k for r in data for k in r))
        return {str(k): np.asarray([r.get(k, np.nan) for r in data]) for k in keys}
    arr = np.asarray(data)
    if arr.ndim == 1:
        return {"0": arr}
    if arr.ndim == 2:
        return {str(i): arr[:, i] for i in range(arr.shape[1])}
    raise ActionError(f"{what} data must be a DataFrame, a dict of columns, a list of records or a "
                      f"1-D/2-D array; got {type(data).__name__} with shape {arr.shape}.")


PSI_BINS = 10
_PSI_EPS = 1e-4


def population_stability_index(reference: Any, current: Any, bins: int = PSI_BINS) -> float:
    """PSI of `current` against `reference`: bins at the reference's quantiles,
    sum((cur% - ref%) * ln(cur% / ref%)). Rule of thumb: < 0.1 stable, 0.1–0.2 moderate, > 0.2 shifted."""
    import numpy as np

    ref, cur = np.asarray(reference, dtype=float), np.asarray(current, dtype=float)
    inner = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    edges = np.concatenate(([-np.inf], inner, [np.inf]))
    ref_share = np.histogram(ref, edges)[0] / len(ref)
    cur_share = np.histogram(cur, edges)[0] / len(cur)
    ref_share, cur_share = np.clip(ref_share, _PSI_EPS, None), np.clip(cur_share, _PSI_EPS, None)
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))


def drift_test(reference: Any, current: Any, *, threshold: float = 0.05,
               features: Sequence[str] | None = None, psi_threshold: float | None = 0.2,
               bins: int = PSI_BINS) -> dict[str, Any]:
    """Per numeric feature: the two-sample Kolmogorov–Smirnov test and the population stability
    index (PSI). A feature drifts when its KS p-value is below `threshold` or its PSI reaches
    `psi_threshold` (None: KS only). `current` may be a `PredictionBatch` (the `new_predictions`
    trigger's events: its logged inputs are compared). Returns per-feature statistics and the
    list of drifted features."""
    import numpy as np
    from scipy.stats import ks_2samp

    if not 0 < float(threshold) < 1:
        raise ActionError(f"threshold {threshold!r} must be a p-value between 0 and 1 (e.g. 0.05).")
    if psi_threshold is not None and not float(psi_threshold) > 0:
        raise ActionError(f"psi_threshold {psi_threshold!r} must be positive (0.2 is the usual 'shifted').")
    if hasattr(current, "inputs_frame"):
        current = current.inputs_frame()
    if hasattr(reference, "inputs_frame"):
        reference = reference.inputs_frame()
    ref, cur = _columns(reference, "reference"), _columns(current, "current")
    names = list(features) if features is not None else [c for c in ref if c in cur]
    missing = [f for f in names if f not in ref or f not in cur]
    if missing:
        raise ActionError(f"feature(s) {', '.join(missing)} missing from the "
                          f"{'reference' if any(f not in ref for f in missing) else 'current'} data.")
    if not names:
        raise ActionError("the reference and current data share no feature name.")
    results: dict[str, Any] = {}
    skipped: list[str] = []
    for name in names:
        a, b = ref[name], cur[name]
        if not (np.issubdtype(a.dtype, np.number) and np.issubdtype(b.dtype, np.number)):
            skipped.append(name)
            continue
        a = a[~np.isnan(a.astype(float))]
        b = b[~np.isnan(b.astype(float))]
        if len(a) == 0 or len(b) == 0:
            skipped.append(name)
            continue
        test = ks_2samp(a, b)
        p_value = float(test.pvalue)
        psi = population_stability_index(a, b, bins)
        drift = p_value < threshold or (psi_threshold is not None and psi >= float(psi_threshold))
        results[name] = {"statistic": float(test.statistic), "p_value": p_value, "psi": psi,
                         "drift": bool(drift), "n_reference": int(len(a)), "n_current": int(len(b))}
    drifted = [n for n, r in results.items() if r["drift"]]
    return {"drift": bool(drifted), "drifted": drifted, "threshold": float(threshold),
            "psi_threshold": None if psi_threshold is None else float(psi_threshold),
            "max_psi": max((r["psi"] for r in results.values()), default=None),
            "features": results, "skipped": skipped}


# -- monitor: summarise a metric ------------------------------------------------------------


def metric_summary(client: Any, experiment: str, metric: str, *, since_ms: int | None = None,
                   max_runs: int = 1000) -> dict[str, Any]:
    """Finished runs of `experiment` (since `since_ms`): how many, and count/sum/last/min/max/mean
    of `metric` over those that logged it."""
    exp = client.get_experiment_by_name(experiment)
    empty = {"experiment": experiment, "metric": metric, "runs": 0, "count": 0, "sum": 0.0,
             "last": None, "min": None, "max": None, "mean": None}
    if exp is None:
        return empty
    filter_string = "attributes.status = 'FINISHED'"
    if since_ms is not None:
        filter_string += f" and attributes.end_time >= {int(since_ms)}"
    runs = client.search_runs([exp.experiment_id], filter_string=filter_string,
                              order_by=["attributes.end_time DESC"], max_results=max_runs)
    values = [float(r.data.metrics[metric]) for r in runs if metric in r.data.metrics]
    if not values:
        return {**empty, "runs": len(runs)}
    return {**empty, "runs": len(runs), "count": len(values), "sum": sum(values), "last": values[0],
            "min": min(values), "max": max(values), "mean": sum(values) / len(values)}


# -- the built-in actuators -----------------------------------------------------------------


def _payload(payload: Any, action: str) -> dict[str, Any]:
    if payload is None:
        return {}
    if not isinstance(payload, Mapping):
        raise ActionError(f"{action} takes a JSON object payload, got {type(payload).__name__}.")
    return dict(payload)


def _allowed(payload: dict[str, Any], action: str, allowed: set[str], required: set[str] = frozenset()) -> None:
    unknown = sorted(set(payload) - allowed)
    if unknown:
        raise ActionError(f"{action}: unknown field(s) {', '.join(unknown)}; use {', '.join(sorted(allowed))}.")
    missing = sorted(required - set(payload))
    if missing:
        raise ActionError(f"{action}: missing field(s) {', '.join(missing)}.")


def _act_run_pipeline(ctx: Any, payload: Any) -> dict[str, Any]:
    p = _payload(payload, "run_pipeline")
    _allowed(p, "run_pipeline", {"notebook", "params", "only", "no_cache"})
    return ctx.run_pipeline(p.get("notebook"), params=p.get("params"), only=p.get("only"),
                            no_cache=bool(p.get("no_cache", False)))


def _act_promote_model(ctx: Any, payload: Any) -> dict[str, Any]:
    p = _payload(payload, "promote_model")
    _allowed(p, "promote_model", {"model", "metric", "version", "run_id", "alias", "greater_is_better"},
             {"model", "metric"})
    return ctx.promote_if_better(p["model"], p["metric"], version=p.get("version"), run_id=p.get("run_id"),
                                 alias=p.get("alias", DEFAULT_ALIAS),
                                 greater_is_better=bool(p.get("greater_is_better", True)))


def _act_drift_test(ctx: Any, payload: Any) -> dict[str, Any]:
    p = _payload(payload, "drift_test")
    _allowed(p, "drift_test", {"reference", "current", "threshold", "features", "psi_threshold"},
             {"reference", "current"})
    return ctx.drift_test(p["reference"], p["current"], threshold=float(p.get("threshold", 0.05)),
                          features=p.get("features"), psi_threshold=p.get("psi_threshold", 0.2))


def _act_metric_summary(ctx: Any, payload: Any) -> dict[str, Any]:
    p = _payload(payload, "metric_summary")
    _allowed(p, "metric_summary", {"experiment", "metric", "since_ms"}, {"metric"})
    return ctx.metric_summary(p.get("experiment") or ctx.app, p["metric"], since_ms=p.get("since_ms"))


_BUILTIN_FUNCTIONS = {
    "metric_summary": _act_metric_summary,
    "drift_test": _act_drift_test,
    "run_pipeline": _act_run_pipeline,
    "promote_model": _act_promote_model,
}
_BUILTIN_DOCS = {
    "metric_summary": "payload {metric, experiment?, since_ms?}: runs and metric count/sum/last/min/max/mean",
    "drift_test": "payload {reference, current, threshold?, features?, psi_threshold?}: KS test and PSI per feature",
    "run_pipeline": "payload {notebook?, params?, only?, no_cache?}: run a pipeline, return its result",
    "promote_model": "payload {model, metric, version?|run_id?, alias?, greater_is_better?}: promote if better",
}


def builtin_actuators(template: str | None) -> dict[str, tuple[Any, str]]:
    """name -> (function(ctx, payload), one-line doc) of the actuators `template` adds."""
    return {name: (_BUILTIN_FUNCTIONS[name], _BUILTIN_DOCS[name])
            for name in BUILTIN_ACTUATORS.get(template or "", ())}
