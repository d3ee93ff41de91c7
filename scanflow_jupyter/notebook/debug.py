"""Debug where you work: load a step's inputs and parameters of a run into the live kernel
(`%scanflow debug STEP [--run RUN_ID]`), and write a run as a notebook for exploration.

The inputs are read from the step's own ``input.ipynb`` in the run folder (the ``__scanflow__``
context the runner injected), so they are exactly what the step received, deserialized with the
same serializers as :func:`scanflow_jupyter.data.step_io.load`.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

from scanflow_jupyter.data.store import RunState, RunStore, StoreError

__all__ = ["DebugError", "debug_step", "load_step_inputs", "run_as_notebook", "run_notebook_path"]


class DebugError(LookupError):
    """The step, the run or the step's inputs cannot be found (the message says how to fix it)."""


def _store(project_root: str | Path | None = None) -> RunStore:
    from scanflow_jupyter.tracking import scanflow_home

    return RunStore(scanflow_home(Path(project_root) if project_root is not None else None) / "runs")


def _stores(project_root: str | Path | None) -> list[RunStore]:
    """Where to look: ``$SCANFLOW_HOME/runs``, else ``.scanflow/runs`` of the project root (default:
    the kernel's folder) and of its parents (a JupyterLab server keeps runs at its root's ``.scanflow``)."""
    import os

    if project_root is not None or os.environ.get("SCANFLOW_HOME"):
        return [_store(project_root)]
    here = Path.cwd().resolve()
    return [RunStore(folder / ".scanflow" / "runs") for folder in (here, *here.parents)
            if (folder / ".scanflow" / "runs").is_dir()] or [_store(None)]


def _notebook_of(shell: Any) -> Path | None:
    try:
        from scanflow_jupyter.magics import find_notebook

        return find_notebook(None, shell)
    except Exception:  # noqa: BLE001 - no frontend: any run of the store will do
        return None


def _same(a: str | Path, b: str | Path) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def _pick_run(store: RunStore, step: str, run_id: str | None, notebook: Path | None) -> RunState:
    if run_id is not None:
        try:
            run = store.read_state(run_id)
        except StoreError as exc:
            raise DebugError(f"%scanflow debug: {exc}") from None
        if step not in run.steps:
            known = ", ".join(run.steps) or "none"
            raise DebugError(f"%scanflow debug: run {run_id} has no step '{step}' (its steps: {known}). "
                             f"Fix: use one of them, or a run that ran '{step}' (see `scanflow runs`).")
        return run
    runs = store.list_runs()
    mine = [r for r in runs if notebook is None or _same(r.notebook, notebook)]
    for run in mine:
        entry = run.steps.get(step)
        if entry is not None and entry.status not in ("pending", "queued", "skipped"):
            return run
    if not mine:
        where = f" of {notebook.name}" if notebook is not None else ""
        raise DebugError(f"%scanflow debug: no run{where} in the run store {store.root}. "
                         "Fix: run the pipeline first (%scanflow run), or pass --run RUN_ID.")
    known = sorted({s for r in mine for s in r.steps})
    raise DebugError(f"%scanflow debug: no run ran a step '{step}' (known steps: {', '.join(known) or 'none'}). "
                     "Fix: use one of those names, or pass --run RUN_ID of a run that ran it.")


def _injected(input_nb: Path) -> dict[str, Any]:
    """Name -> value of the literal assignments in the step notebook's injected-parameters cell."""
    nb = json.loads(input_nb.read_text(encoding="utf-8"))
    found: dict[str, Any] = {}
    for cell in nb.get("cells", []):
        if "injected-parameters" not in cell.get("metadata", {}).get("tags", []):
            continue
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        for node in ast.parse(source).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                found[node.targets[0].id] = ast.literal_eval(node.value)
    return found


def load_step_inputs(store: RunStore, run: RunState, step: str) -> dict[str, Any]:
    """The input variables step ``step`` received in ``run``, deserialized (DebugError if missing)."""
    from scanflow_jupyter.data.records import OutputRecord
    from scanflow_jupyter.data.serializers import load_value

    input_nb = store.step_dir(run.run_id, step) / "input.ipynb"
    if not input_nb.exists():
        status = run.steps[step].status
        raise DebugError(
            f"%scanflow debug: step '{step}' never started in run {run.run_id} (status {status}; no {input_nb}), "
            "so its inputs were never assembled: a producer did not finish. "
            "Fix: debug the failed producer first, or pick another run with --run RUN_ID.")
    ctx = _injected(input_nb).get("__scanflow__") or {}
    values: dict[str, Any] = {}
    for var, entry in (ctx.get("inputs") or {}).items():
        folder = Path(entry["folder"])
        try:
            values[var] = load_value(folder, OutputRecord.from_dict(entry["record"]))
        except FileNotFoundError:
            raise DebugError(f"%scanflow debug: input '{var}' of step '{step}' is gone from {folder} "
                             f"(run {run.run_id}). Fix: re-run the producer (%scanflow run) and debug that run.") from None
    return values


def _cells(notebook: str, step: str) -> list[int]:
    """1-based cell numbers of the step's code cells in the notebook as it is now ([] if unknown)."""
    from scanflow_jupyter.notebook.parser import parse_notebook

    try:
        ex = parse_notebook(notebook).executor(step)
    except Exception:  # noqa: BLE001 - the notebook changed or moved: say so without numbers
        return []
    return [p.cell + 1 for p in ex.code_parts()]


def debug_step(step: str, run_id: str | None, shell: Any, *, project_root: str | Path | None = None) -> None:
    """Load the parameters and inputs step ``step`` received in a run into ``shell.user_ns``.

    Default run: the newest run of this kernel's notebook in which ``step`` ran. Prints what was
    loaded and which cells hold the step's body.
    """
    from scanflow_jupyter.widgets import describe_value

    notebook = _notebook_of(shell)
    stores = _stores(project_root)
    run: RunState | None = None
    for store in stores[:-1]:  # the first store that has a matching run; the last one raises if none has
        try:
            run = _pick_run(store, step, run_id, notebook)
            break
        except DebugError:
            continue
    if run is None:
        store = stores[-1]
        run = _pick_run(store, step, run_id, notebook)
    inputs = load_step_inputs(store, run, step)
    params = dict(run.params)
    params.update({k: v for k, v in _injected(store.step_dir(run.run_id, step) / "input.ipynb").items()
                   if k != "__scanflow__"})
    shell.user_ns.update(params)
    shell.user_ns.update(inputs)
    entry = run.steps[step]
    print(f"scanflow debug: step '{step}' of run {run.run_id} ({entry.status})")
    for title, values in (("parameters", params), ("inputs", inputs)):
        print(f"  {title}:" + ("" if values else " none"))
        for name, value in values.items():
            print(f"    {name}: {describe_value(value)}")
    if entry.error is not None:
        at = f" (cell {entry.error.cell + 1})" if entry.error.cell is not None else ""
        print(f"  error{at}: {entry.error.ename}: {entry.error.evalue}")
    cells = _cells(run.notebook, step)
    where = f"cell{'s' if len(cells) > 1 else ''} {', '.join(map(str, cells))}" if cells else f"the %%executor {step} cell(s)"
    print(f"  re-run the body: run {where} of {Path(run.notebook).name} "
          "(in this kernel, the variables above are already set)")


def run_notebook_path(project_root: str | Path, run_id: str) -> Path:
    """Where :func:`run_as_notebook` writes: ``<project>/scanflow-run-<run_id>.ipynb``."""
    return Path(project_root) / f"scanflow-run-{run_id}.ipynb"


def _code(source: str) -> dict[str, Any]:
    return {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": source}


def run_as_notebook(project_root: str | Path, run_id: str, *, store: RunStore | None = None) -> Path:
    """Write a notebook with the run's parameters and one cell per step loading its outputs
    (default store: the project's ``.scanflow/runs`` or ``$SCANFLOW_HOME/runs``)."""
    store = store or _store(project_root)
    try:
        run = store.read_state(run_id)
    except StoreError as exc:
        raise DebugError(str(exc)) from None
    cells: list[dict[str, Any]] = [
        {"cell_type": "markdown", "metadata": {}, "source":
            f"# Run {run.run_id} of {Path(run.notebook).name} ({run.status})\n\n"
            "Written by Scanflow (\"Open run as notebook\"): the run's parameters, then each step's outputs."},
        _code("from pathlib import Path\n\n"
              "from scanflow_jupyter.data.records import OutputRecord\n"
              "from scanflow_jupyter.data.serializers import load_value\n\n\n"
              "def _load(folder, record):\n"
              "    return load_value(Path(folder), OutputRecord.from_dict(record))"),
        _code("# Parameters\n" + "\n".join(f"{k} = {v!r}" for k, v in run.params.items())),
    ]
    for name, entry in run.steps.items():
        lines = [f"# step {name}: {entry.status}"]
        for var, rec in entry.outputs.items():
            record = dict(rec)
            folder = record.pop("folder")
            lines.append(f"{var} = _load({folder!r}, {record!r})")
        if not entry.outputs:
            lines.append("# no outputs")
        cells.append(_code("\n".join(lines)))
    nb = {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                                       "scanflow": {"run_id": run.run_id, "notebook": run.notebook}},
          "nbformat": 4, "nbformat_minor": 5}
    import nbformat

    node = nbformat.from_dict(nb)
    for cell in node.cells:
        cell.setdefault("id", nbformat.corpus.words.generate_corpus_id())
    path = run_notebook_path(project_root, run_id)
    nbformat.write(node, str(path))
    return path
