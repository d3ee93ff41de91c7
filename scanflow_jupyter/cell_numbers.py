"""Cell numbers as users see them: 1-based, as JupyterLab counts a notebook's cells.

Inside the package (model, run.json, the event journal) `cell` is the 0-based index in the
notebook's cell list. Every output a user reads — CLI text, `--json`, the REST API and its
events, the sidebar — shows `cell` as the 1-based number; these helpers convert at that edge.
"""

from __future__ import annotations

from typing import Any


def shown(index: Any) -> int | None:
    """0-based cell index -> 1-based cell number (None stays None)."""
    return None if index is None or isinstance(index, bool) else int(index) + 1


def message_doc(message: Any) -> dict[str, Any]:
    """A validation `Message` as JSON, with its 1-based cell number."""
    doc = dict(vars(message))
    doc["cell"] = shown(doc.get("cell"))
    return doc


def error_doc(error: dict[str, Any] | None) -> dict[str, Any] | None:
    """A step error dict (`StepError.to_dict()`) with its 1-based cell number."""
    return None if error is None else {**error, "cell": shown(error.get("cell"))}


def event_doc(event: dict[str, Any]) -> dict[str, Any]:
    """A runner event as JSON for users: `data.cell` (the notebook cell) as a 1-based number.

    `data.index` of `step_cell` (the position inside the step notebook) is left as it is.
    """
    data = event.get("data")
    if isinstance(data, dict) and isinstance(data.get("cell"), int):
        return {**event, "data": {**data, "cell": shown(data["cell"])}}
    return event
