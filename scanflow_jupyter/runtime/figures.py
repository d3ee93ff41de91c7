"""Rich outputs of steps: the kernels' matplotlib backend and the figures of an output notebook.

Step kernels run with matplotlib's inline backend, as JupyterLab's do, so figures land in
output.ipynb as image/png outputs (HTML displays as text/html). After a step, those images are
written to `<step dir>/figures/<cell>-<n>.png` and logged to the step's MLflow run as
`figures/<cell>-<n>.png`: <cell> is the 1-based source notebook cell (`step<k>` for a generated
cell of the step notebook), <n> counts the figures of that cell from 1.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
"""MPLBACKEND of every step kernel (ipykernel ships matplotlib_inline; matplotlib stays lazy)."""

FIGURES_DIR = "figures"


def _cell_label(cell: dict[str, Any], position: int) -> str:
    source_cell = ((cell.get("metadata") or {}).get("scanflow") or {}).get("source_cell")
    return str(source_cell + 1) if isinstance(source_cell, int) else f"step{position + 1}"


def extract_figures(output_notebook: Path, folder: Path) -> list[Path]:
    """Write the image/png outputs of `output_notebook` into `folder` (replaced); return the files.

    A missing or unreadable notebook, or one without images, gives no files and no folder.
    """
    try:
        nb = json.loads(Path(output_notebook).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    images: list[tuple[str, bytes]] = []
    for position, cell in enumerate(nb.get("cells") or []):
        count = 0
        for out in cell.get("outputs") or []:
            data = (out.get("data") or {}).get("image/png") if isinstance(out, dict) else None
            if not data:
                continue
            text = "".join(data) if isinstance(data, list) else str(data)
            try:
                png = base64.b64decode(text)
            except ValueError:
                continue
            count += 1
            images.append((f"{_cell_label(cell, position)}-{count}.png", png))
    if folder.exists():
        shutil.rmtree(folder)
    if not images:
        return []
    folder.mkdir(parents=True)
    paths = []
    for name, png in images:
        path = folder / name
        path.write_bytes(png)
        paths.append(path)
    return paths
