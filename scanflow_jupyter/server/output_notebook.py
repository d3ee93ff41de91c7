"""Read-only access to a step's output notebook (`runs/{id}/notebook?step=`) and checks of an
unsaved notebook model posted for validation (`POST app`).

Output notebooks live in the run store (`.scanflow/runs/<run>/<step>/output.ipynb`), a hidden folder
Jupyter's contents API refuses; the sidebar reads them here, confined to the run's step folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MAX_NOTEBOOK_BYTES = 50 << 20  # an output notebook larger than this is not sent to the browser


class OutputNotebookError(Exception):
    """`status` (404/409/413), `message` and `fix` for the REST answer."""

    def __init__(self, status: int, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.fix = status, message, fix


def read_output_notebook(step_dir: Path, run_id: str, step: str) -> dict[str, Any]:
    """The output notebook JSON of `step` in `run_id` (the caller checked the step is the run's)."""
    path = step_dir / "output.ipynb"
    if path.is_symlink() or (path.exists() and step_dir.resolve() not in path.resolve().parents):
        raise OutputNotebookError(404, f"step '{step}' of run {run_id} has no output notebook in its folder")
    if not path.is_file():
        raise OutputNotebookError(404, f"step '{step}' of run {run_id} has no output notebook (it did not execute)",
                                  "open the step's log instead; cached and skipped steps write no notebook")
    size = path.stat().st_size
    if size > MAX_NOTEBOOK_BYTES:
        raise OutputNotebookError(413, f"the output notebook of step '{step}' is {size} bytes "
                                  f"(limit {MAX_NOTEBOOK_BYTES})", f"open {path} with `jupyter nbconvert` or a text editor")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OutputNotebookError(409, f"the output notebook of step '{step}' of run {run_id} is unreadable: {exc}",
                                  "re-run the step (scanflow run --only STEP)") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("cells"), list):
        raise OutputNotebookError(409, f"the output notebook of step '{step}' of run {run_id} has no 'cells' list",
                                  "re-run the step (scanflow run --only STEP)")
    return doc


def check_notebook_content(content: Any) -> dict[str, Any]:
    """A posted notebook model, checked enough to parse: a dict with a `cells` list of cell dicts
    whose `source` is text (or a list of text) and `metadata` a dict. Raises ValueError(what is wrong)."""
    if not isinstance(content, dict):
        raise ValueError("`notebook` must be the notebook JSON object (nbformat 4)")
    cells = content.get("cells")
    if not isinstance(cells, list):
        raise ValueError("`notebook.cells` must be a list")
    if not isinstance(content.get("metadata", {}), dict):
        raise ValueError("`notebook.metadata` must be an object")
    for number, cell in enumerate(cells, start=1):
        if not isinstance(cell, dict):
            raise ValueError(f"cell {number} of `notebook.cells` is not an object")
        source = cell.get("source", "")
        if not (isinstance(source, str) or (isinstance(source, list) and all(isinstance(s, str) for s in source))):
            raise ValueError(f"cell {number}: `source` must be text or a list of text")
        if not isinstance(cell.get("metadata", {}), dict):
            raise ValueError(f"cell {number}: `metadata` must be an object")
    return content
