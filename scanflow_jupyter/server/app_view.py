"""The `app?path=` view: a notebook parsed into nodes, edges, parameters and messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scanflow_jupyter.cell_numbers import message_doc, shown


def app_view(notebook: Path, rel_path: str, content: dict[str, Any] | None = None) -> dict[str, Any]:
    """Parse + validate (no kernel); an unreadable notebook gives `valid: false` and its message.
    With `content` (the notebook JSON of an unsaved editor model), that is parsed instead of the file."""
    from scanflow_jupyter.notebook.parser import (
        NotebookReadError,
        parse_notebook,
        parse_notebook_dict,
    )
    from scanflow_jupyter.notebook.validate import has_errors, validate

    try:
        app = parse_notebook(notebook) if content is None else parse_notebook_dict(content, str(notebook.resolve()))
    except NotebookReadError as exc:
        return {"path": rel_path, "app": None, "nodes": [], "edges": [], "parameters": [],
                "messages": [message_doc(exc.message)], "valid": False}
    messages = validate(app)
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, str]] = []
    for ex in app.executors:
        deps = app.dependencies(ex)
        nodes.append({"id": ex.name, "kind": "executor", "cell": shown(ex.cell),
                      "cells": [shown(p.cell) for p in ex.code_parts()], "inputs": list(ex.inputs),
                      "outputs": list(ex.outputs), "requires": deps, "retries": ex.retries,
                      "timeout": ex.timeout, "cache": ex.cache, "image": ex.image})
        edges += [{"source": dep, "target": ex.name} for dep in deps]
    nodes += [{"id": s.name, "kind": "service", "cell": shown(s.cell), "inputs": [], "outputs": [], "model": s.model,
               "replicas": s.replicas} for s in app.services]
    nodes += [{"id": a.name, "kind": "agent", "cell": shown(a.cell), "inputs": [], "outputs": [], "template": a.template}
              for a in app.agents]
    parameters = [{"name": name, "value": value, "type": _type_name(value)} for name, value in app.parameters.items()]
    return {
        "path": rel_path,
        "app": {"name": app.name, "team": app.team, "notebook": rel_path},
        "nodes": nodes, "edges": edges, "parameters": parameters,
        "messages": [message_doc(m) for m in messages],
        "valid": not has_errors(messages) and bool(app.executors or app.services or app.agents),
    }


def _type_name(value: Any) -> str:
    if value is None:
        return "none"
    return {bool: "bool", int: "int", float: "float", str: "str"}.get(type(value), type(value).__name__)
