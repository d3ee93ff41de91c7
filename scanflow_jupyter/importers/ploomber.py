"""Ploomber `pipeline.yaml` → a Scanflow notebook.

Each notebook or script task becomes an executor: its cells (the `parameters` cell replaced by
the `upstream` and `product` values Ploomber would inject), `upstream` → `--requires`. Products
are files the task writes; the readers' cache keys follow them as data files named by literals.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

from scanflow_jupyter.importers.common import (
    ImportFailure,
    ImportResult,
    Note,
    Step,
    cell_source,
    executor_cells,
    header_cell,
    new_notebook,
    percent_cells,
    read_ipynb,
    step_name,
)
from scanflow_jupyter.notebook import ipython_source


def import_ploomber(path: Path, continuation: bool | None = None) -> ImportResult:
    import yaml

    if not path.is_file():
        raise ImportFailure(f"Ploomber pipeline {path} does not exist.", "check the path.")
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ImportFailure(f"{path} is not readable YAML: {exc}.", "give Ploomber's pipeline.yaml.") from exc
    tasks = spec.get("tasks") if isinstance(spec, dict) else None
    if not isinstance(tasks, list) or not tasks:
        raise ImportFailure(f"{path} has no 'tasks' list, so it is not a Ploomber pipeline.", "give Ploomber's pipeline.yaml.")
    notes: list[Note] = []
    for key in sorted(set(spec) - {"tasks", "meta"}):
        notes.append(Note("pipeline.yaml", f"'{key}' is not carried over (clients, serializers and hooks have no Scanflow equivalent)."))
    products: dict[str, Any] = {}
    loaded: list[tuple[Step, dict[str, Any], list[dict[str, Any]], list[str]]] = []
    for i, task in enumerate(tasks, start=1):
        if not isinstance(task, dict) or not task.get("source"):
            raise ImportFailure(f"{path}: task {i} has no 'source'.", "give each task a notebook or script source.")
        source = path.parent / str(task["source"])
        name = step_name(str(task.get("name") or source.stem))
        where = f"task {name}"
        if source.suffix == ".ipynb":
            cells = read_ipynb(source)["cells"]
        elif source.suffix == ".py" and source.is_file():
            cells = percent_cells(source.read_text(encoding="utf-8"))
        else:
            raise ImportFailure(f"{where}: {task['source']} is not a notebook or a percent-format script beside {path.name} "
                                "(SQL and function tasks are not supported).", "port the task to a notebook or script.")
        products[name] = task.get("product")
        if "{{" in json.dumps(task.get("product")):
            notes.append(Note(where, "product paths with {{placeholders}} (env.yaml) are kept verbatim: replace them with real paths."))
        upstream = _declared_upstream(cells, task)
        loaded.append((Step(name), task, cells, upstream))
        for key in sorted(set(task) - {"source", "product", "name", "upstream", "params"}):
            notes.append(Note(where, f"task option '{key}' is not carried over."))
    steps: list[Step] = []
    for step, task, cells, upstream in loaded:
        unknown = [u for u in upstream if step_name(u) not in products]
        if unknown:
            raise ImportFailure(f"task {step.name} declares upstream {', '.join(unknown)}, which no task of {path.name} is.",
                                "fix the names in the task's `upstream = [...]`.")
        step.requires = [step_name(u) for u in upstream]
        prelude = [f"upstream = {({u: products[step_name(u)] for u in upstream})!r}" if upstream else "",
                   f"product = {task.get('product')!r}"]
        prelude += [f"{k} = {v!r}" for k, v in (task.get("params") or {}).items()]
        files = _product_files(task.get("product"))
        if files:  # Ploomber creates the products' folders before the task runs
            prelude.append(f"import pathlib\nfor _folder in {sorted({str(Path(f).parent) for f in files})!r}:\n"
                           "    pathlib.Path(_folder).mkdir(parents=True, exist_ok=True)")
        if isinstance(task.get("product"), dict) and "nb" in task["product"] or isinstance(task.get("product"), str):
            notes.append(Note(f"task {step.name}", "the executed-notebook product is not written there: Scanflow keeps each "
                              "step's output notebook in the run store (.scanflow/runs/RUN/STEP/output.ipynb)."))
        for cell in cells:
            source = cell_source(cell)
            tags = (cell.get("metadata") or {}).get("tags") or []
            if cell.get("cell_type") == "markdown":
                step.items.append(("markdown", source))
            elif cell.get("cell_type") == "code" and "parameters" in tags:
                prelude.insert(0, _without_injected(source).strip("\n"))
            elif cell.get("cell_type") == "code" and source.strip():
                step.items.append(("code", source))
        # the parameters' defaults, then what Ploomber injects: before the task's first code cell
        at = next((i for i, (kind, _) in enumerate(step.items) if kind == "code"), len(step.items))
        step.items.insert(at, ("code", "\n".join(p for p in prelude if p)))
        steps.append(step)
    cells_out: list[dict[str, Any]] = [header_cell(path.resolve().parent.name or "pipeline")]
    for step in steps:
        cells_out += executor_cells(step, continuation)
    return ImportResult(new_notebook(cells_out), notes)


def _declared_upstream(cells: list[dict[str, Any]], task: dict[str, Any]) -> list[str]:
    """`upstream` from the task (pipeline.yaml) or the notebook's parameters cell (`upstream = [...]`)."""
    if task.get("upstream"):
        up = task["upstream"]
        return [str(u) for u in (up if isinstance(up, list) else [up])]
    for cell in cells:
        if "parameters" in ((cell.get("metadata") or {}).get("tags") or []):
            try:
                tree = ipython_source.parse(cell_source(cell))
            except SyntaxError:
                return []
            for node in tree.body:
                if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "upstream" for t in node.targets):
                    try:
                        value = ast.literal_eval(node.value)
                    except ValueError:
                        return []
                    return [str(u) for u in (value or [])] if isinstance(value, (list, tuple)) else []
    return []


def _without_injected(source: str) -> str:
    """The parameters cell's defaults without `upstream`/`product` (Ploomber injects those)."""
    try:
        tree = ipython_source.parse(source)  # same line numbers as the cell
    except SyntaxError:
        return source
    lines = source.split("\n")
    for node in reversed(tree.body):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id in ("upstream", "product") for t in node.targets):
            del lines[node.lineno - 1:node.end_lineno]
    return "\n".join(lines)


def _product_files(product: Any) -> list[str]:
    if isinstance(product, str):
        return [product]
    if isinstance(product, dict):
        return [str(v) for v in product.values() if isinstance(v, str)]
    return []
