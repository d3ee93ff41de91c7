"""Elyra `.pipeline` files → a Scanflow notebook.

Each execution node becomes an executor holding its notebook's code cells (markdown kept above
it; a `.py` node's script as one part); node links become `--requires`; `dependencies` become
`--deps`; `cpu`/`memory` (GB)/`gpu` become resources. Nodes pass data as files, so steps get no
`--inputs`/`--outputs`.
"""

from __future__ import annotations

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
    read_json,
    step_name,
    supports_continuation,
)


def import_elyra(path: Path, continuation: bool | None = None) -> ImportResult:
    doc = read_json(path, "Elyra pipeline", "give a .pipeline file saved by Elyra's pipeline editor.")
    pipelines = doc.get("pipelines") if isinstance(doc, dict) else None
    if not isinstance(pipelines, list) or not pipelines or not isinstance(pipelines[0], dict):
        raise ImportFailure(f"{path} has no 'pipelines' list, so it is not an Elyra pipeline.",
                            "give a .pipeline file saved by Elyra's pipeline editor.")
    primary = next((p for p in pipelines if isinstance(p, dict) and p.get("id") == doc.get("primary_pipeline")), pipelines[0])
    notes: list[Note] = []
    nodes = [n for n in primary.get("nodes") or [] if isinstance(n, dict)]
    properties = (primary.get("app_data") or {}).get("properties") or {}
    defaults = properties.get("pipeline_defaults") if isinstance(properties.get("pipeline_defaults"), dict) else {}
    if properties.get("pipeline_parameters"):
        notes.append(Note("pipeline", "pipeline_parameters are not carried over: write them as literals in a cell tagged "
                          "`parameters` and read them in the steps (Elyra passes them as environment variables)."))
    names: dict[str, str] = {}
    for node in nodes:
        if node.get("type", "execution_node") != "execution_node":
            notes.append(Note(f"node {node.get('id')}", f"node type '{node.get('type')}' (comments, supernodes) is not carried over."))
            continue
        data = node.get("app_data") or {}
        label = data.get("label") or (data.get("ui_data") or {}).get("label") or Path(_params(data).get("filename") or "step").stem
        name = step_name(Path(str(label)).stem)
        while name in names.values():
            name = step_name(name + "-2")
        names[str(node.get("id"))] = name
    steps: list[Step] = []
    for node in nodes:
        node_id = str(node.get("id"))
        if node_id not in names:
            continue
        name = names[node_id]
        where = f"node {name}"
        params = {**defaults, **{k: v for k, v in _params(node.get("app_data") or {}).items() if v not in (None, "", [])}}
        filename = params.get("filename")
        if not filename:
            raise ImportFailure(f"{path}: node '{name}' names no file (app_data.component_parameters.filename).",
                                "open the pipeline in Elyra and give the node a notebook or script.")
        step = Step(name)
        _load_file(step, path.parent / str(filename), where, notes)
        for port in node.get("inputs") or []:
            for link in (port or {}).get("links") or []:
                ref = str((link or {}).get("node_id_ref"))
                if ref in names:
                    step.requires.append(names[ref])
                else:
                    notes.append(Note(where, f"link to unknown node {ref} is dropped."))
        step.deps = [str(d) for d in params.get("dependencies") or []]
        if params.get("include_subdirectories"):
            notes.append(Note(where, "include_subdirectories: --deps folders already include subfolders."))
        _resources(step, params, where, notes)
        for key in ("env_vars", "kubernetes_secrets", "mounted_volumes", "kubernetes_tolerations",
                    "kubernetes_pod_annotations", "kubernetes_pod_labels", "runtime_image", "outputs"):
            if params.get(key):
                notes.append(Note(where, _DROPPED.get(key, f"{key} = {params[key]!r} is not carried over.")
                                  .format(value=params[key])))
        steps.append(step)
    app = (primary.get("app_data") or {}).get("name") or path.stem.split(".")[0]
    cells: list[dict[str, Any]] = [header_cell(str(app))]
    for step in _topological(steps):
        cells += executor_cells(step, continuation)
    return ImportResult(new_notebook(cells), notes)


_DROPPED = {
    "env_vars": "env_vars {value!r} are not carried over: set them in a %%setup cell (os.environ) or the environment of `scanflow run`.",
    "runtime_image": "runtime_image {value!r} is not carried over: `scanflow build` builds the step's image from its imports (use --image to choose a base).",
    "outputs": "outputs {value!r} are files the node writes into the project folder; readers that name them by a string literal have them in their cache key (otherwise add --deps).",
    "mounted_volumes": "mounted_volumes {value!r} are not carried over: Scanflow has no volume option.",
    "kubernetes_secrets": "kubernetes_secrets {value!r} are not carried over: pass credentials as environment variables.",
}


def _params(app_data: dict[str, Any]) -> dict[str, Any]:
    """Elyra ≥ 3.0 keeps node properties in component_parameters; older files in app_data itself."""
    params = app_data.get("component_parameters")
    return params if isinstance(params, dict) else app_data


def _load_file(step: Step, file: Path, where: str, notes: list[Note]) -> None:
    if file.suffix == ".ipynb":
        cells = read_ipynb(file)["cells"]
    elif file.suffix == ".py":
        text = file.read_text(encoding="utf-8") if file.is_file() else None
        if text is None:
            raise ImportFailure(f"{where}: script {file} does not exist.", "keep the node's file beside the .pipeline file.")
        cells = percent_cells(text) if "# %%" in text else [{"cell_type": "code", "source": text}]
    else:
        raise ImportFailure(f"{where}: {file.name} is neither a notebook nor a Python script (R nodes cannot run as Scanflow steps).",
                            "port the node to Python, or remove it from the pipeline.")
    for cell in cells:
        source = cell_source(cell)
        if cell.get("cell_type") == "markdown":
            step.items.append(("markdown", source))
        elif cell.get("cell_type") == "code" and source.strip():
            if source.lstrip().startswith("%%") and not supports_continuation():  # else its own part: runs as a cell magic
                notes.append(Note(where, f"a cell of {file.name} starts with a cell magic; it is kept as a line of the step's code."))
            step.items.append(("code", source))


def _resources(step: Step, params: dict[str, Any], where: str, notes: list[Note]) -> None:
    for key, attr, unit in (("cpu", "cpu", ""), ("memory", "memory", "G"), ("gpu", "gpu", "")):
        value = params.get(key)
        if value in (None, "", 0):
            continue
        if attr == "gpu":
            step.gpu = int(value)
        else:
            setattr(step, attr, f"{value}{unit}")
    if params.get("gpu_vendor"):
        notes.append(Note(where, f"gpu_vendor {params['gpu_vendor']!r} is not carried over (Scanflow's --gpu is nvidia.com/gpu)."))


def _topological(steps: list[Step]) -> list[Step]:
    """Producers above their consumers (Elyra's node order is the canvas order)."""
    by_name = {s.name: s for s in steps}
    done: dict[str, Step] = {}

    def visit(step: Step, seen: tuple[str, ...]) -> None:
        if step.name in done or step.name in seen:
            return
        for r in step.requires:
            if r in by_name:
                visit(by_name[r], (*seen, step.name))
        done[step.name] = step

    for s in steps:
        visit(s, ())
    return list(done.values())
