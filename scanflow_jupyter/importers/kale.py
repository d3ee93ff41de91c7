"""Kale notebooks (cell tags) → a Scanflow notebook.

Tags: `imports`/`functions` → `%%setup`; `pipeline-parameters` → the `parameters` cell;
`block:NAME` / `step:NAME` start (or, repeated, continue) a step; untagged cells continue the
current step; `prev:NAME` → `--requires`; `skip` cells stay exploration; `pipeline-metrics` →
a last step logging those variables to MLflow, marked `--metrics` (they land on the pipeline's run too); `limit:KEY:VALUE` → `--cpu`/`--memory`/`--gpu`.
Inputs and outputs are inferred as Kale infers them (names a step reads that an earlier step defines).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from scanflow_jupyter.importers.common import (
    ImportFailure,
    ImportResult,
    Note,
    Step,
    cell_source,
    code_cell,
    defined_names,
    executor_cells,
    header_cell,
    infer_io,
    markdown_cell,
    new_notebook,
    read_ipynb,
    step_name,
)
from scanflow_jupyter.notebook import ipython_source

_LIMITS = {"cpu": "cpu", "memory": "memory", "nvidia.com/gpu": "gpu", "amd.com/gpu": "gpu"}
METRICS_STEP = "pipeline-metrics"


def import_kale(path: Path, continuation: bool | None = None) -> ImportResult:
    nb = read_ipynb(path)
    meta = (nb.get("metadata") or {}).get("kubeflow_notebook") or {}
    notes: list[Note] = []
    for key in ("docker_image", "volumes", "katib_run", "katib_metadata", "snapshot_volumes", "autosnapshot"):
        if meta.get(key):
            notes.append(Note("notebook metadata", f"kubeflow_notebook.{key} = {meta[key]!r} is not carried over: Scanflow builds step images itself (`scanflow build`) and passes data through its run store."))
    steps: dict[str, Step] = {}
    order: list[str] = []
    # (kind, payload): "md" text, "setup" code, "params" code, "explore" code, "step" name (first cell)
    layout: list[tuple[str, str]] = []
    pending_md: list[str] = []
    metrics_vars: list[str] = []
    current: str | None = None
    setup_names: set[str] = set()
    param_names: set[str] = set()
    for index, cell in enumerate(nb["cells"], start=1):
        source = cell_source(cell)
        if cell.get("cell_type") == "markdown":
            pending_md.append(source)
            continue
        if cell.get("cell_type") != "code":
            continue
        tags = [str(t) for t in (cell.get("metadata") or {}).get("tags") or []]
        where = f"cell {index}"
        kinds = {t.split(":", 1)[0] for t in tags}
        if kinds & {"imports", "functions"}:
            layout += [("md", m) for m in pending_md] + [("setup", source)]
            pending_md = []
            setup_names |= defined_names(source)
            continue
        if "pipeline-parameters" in kinds:
            layout += [("md", m) for m in pending_md] + [("params", source)]
            pending_md = []
            param_names |= defined_names(source)
            continue
        if "pipeline-metrics" in kinds:
            metrics_vars += _metric_names(source, where, notes)
            continue
        if "skip" in kinds:
            layout += [("md", m) for m in pending_md] + [("explore", source)]
            pending_md = []
            continue
        blocks = [t.split(":", 1)[1] for t in tags if t.split(":", 1)[0] in ("block", "step") and t.split(":", 1)[1]]
        block = blocks[0] if blocks else None
        if len(blocks) > 1:
            notes.append(Note(where, f"the cell belongs to blocks {', '.join(blocks)} in Kale; here only to '{blocks[0]}' "
                              "(copy it into the other steps, or move it to a %%setup cell)."))
        if block is not None:
            current = step_name(block)
            if current != block:
                notes.append(Note(where, f"step '{block}' is renamed '{current}' (Scanflow names: letters, digits, '-', '_')."))
        elif current is None:
            if source.strip():
                notes.append(Note(where, "untagged cell before any block: kept as exploration (not part of the pipeline), as in Kale."))
            layout += [("md", m) for m in pending_md] + [("explore", source)]
            pending_md = []
            continue
        step = steps.get(current)
        if step is None:
            step = steps[current] = Step(current)
            order.append(current)
            layout += [("md", m) for m in pending_md] + [("step", current)]
        else:
            step.items += [("markdown", m) for m in pending_md]
        pending_md = []
        step.items.append(("code", source))
        for tag in tags:
            _apply_tag(step, tag, where, notes)
    layout += [("md", m) for m in pending_md]
    ordered = [steps[n] for n in order]
    for s in ordered:
        s.requires = [r for r in dict.fromkeys(s.requires) if r != s.name]
        for r in s.requires:
            if r not in steps:
                notes.append(Note(f"step {s.name}", f"prev:{r} names no block of the notebook; Scanflow's validation reports it."))
    metrics = Step(METRICS_STEP, items=[("code", "import mlflow\n\n" + "\n".join(
        f"mlflow.log_metric({v!r}, float({v}))" for v in metrics_vars))], metrics=list(dict.fromkeys(metrics_vars)))
    infer_io(ordered + ([metrics] if metrics_vars else []), setup_names | param_names)
    if metrics_vars:
        missing = [v for v in metrics_vars if v not in metrics.inputs]
        if missing:
            notes.append(Note("pipeline-metrics", f"no step defines {', '.join(missing)}; the metrics step will fail on them."))
        layout.append(("step", METRICS_STEP))
        steps[METRICS_STEP] = metrics
    app = meta.get("pipeline_name") or meta.get("experiment_name") or path.stem
    cells: list[dict[str, Any]] = [header_cell(str(app))]
    for kind, payload in layout:
        if kind == "md":
            cells.append(markdown_cell(payload))
        elif kind == "setup":
            cells.append(code_cell("%%setup\n" + payload))
        elif kind == "params":
            cells.append(code_cell(payload, ["parameters"]))
        elif kind == "explore":
            cells.append(code_cell(payload))
        else:
            cells += executor_cells(steps[payload], continuation)
    return ImportResult(new_notebook(cells), notes)


def _apply_tag(step: Step, tag: str, where: str, notes: list[Note]) -> None:
    kind, _, value = tag.partition(":")
    if kind in ("block", "step", "skip"):
        return
    if kind == "image" and value:
        step.image = value
    elif kind == "prev" and value:
        step.requires.append(step_name(value))
    elif kind == "limit" and value:
        key, _, amount = value.rpartition(":")
        option = _LIMITS.get(key)
        if option == "gpu" and amount.isdigit():
            step.gpu = int(amount)
        elif option in ("cpu", "memory") and amount:
            setattr(step, option, amount)
        else:
            notes.append(Note(where, f"tag '{tag}': resource '{key}' has no Scanflow option (only cpu, memory, nvidia.com/gpu)."))
    else:
        notes.append(Note(where, f"tag '{tag}' is not carried over (Kale's annotations, labels and unknown tags have no Scanflow equivalent)."))


def _metric_names(source: str, where: str, notes: list[Note]) -> list[str]:
    """Kale's metrics cell: one variable per line, bare or printed (`print(accuracy)`)."""
    try:
        tree = ipython_source.parse(source)  # a magic line is noted below, not refused
    except SyntaxError as exc:
        raise ImportFailure(f"{where} (pipeline-metrics) is not valid Python: {exc.msg}, line {exc.lineno}.",
                            "write one metric variable per line, e.g. `print(accuracy)`.") from exc
    names: list[str] = []
    for stmt in tree.body:
        value = stmt.value if isinstance(stmt, ast.Expr) else None
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "print" and len(value.args) == 1:
            value = value.args[0]
        if isinstance(value, ast.Name):
            names.append(value.id)
        else:
            notes.append(Note(where, f"pipeline-metrics line {stmt.lineno} is not a variable name; it is not logged."))
    return names
