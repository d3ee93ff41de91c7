"""Generate the benchmark notebooks (nbformat 4 JSON, kernelspec python3) into a folder.

Scanflow notebooks declare steps with `%%executor`; the papermill baselines are the plain
notebooks a user would write instead: a `parameters` cell, the step's body, and a cell that
writes the value the next notebook needs to a small file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def _cell(index: int, source: str, tags: list[str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"tags": tags} if tags else {}
    return {"cell_type": "code", "execution_count": None, "id": f"c{index}", "metadata": meta,
            "outputs": [], "source": source}


def notebook(sources: list[str | tuple[str, list[str]]]) -> dict[str, Any]:
    """A notebook of code cells; an item may be `(source, tags)`."""
    cells = []
    for i, item in enumerate(sources):
        source, tags = item if isinstance(item, tuple) else (item, None)
        cells.append(_cell(i, source, tags))
    return {"cells": cells,
            "metadata": {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def write(nb: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1) + "\n", encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- scanflow

def chain_body(i: int) -> str:
    """Body of step i of the chain: x_i = x_{i-1} + 1 (step 0 starts from 0)."""
    return "x0 = 0 + 1" if i == 0 else f"x{i} = x{i - 1} + 1"


def scanflow_chain(path: Path, steps: int = 10) -> Path:
    """`steps` executors in a chain, each passing one int to the next (x0 .. x{steps-1})."""
    cells: list[str | tuple[str, list[str]]] = ["%load_ext scanflow_jupyter\n%scanflow_app bench-chain"]
    for i in range(steps):
        io = f"--outputs x{i}" if i == 0 else f"--inputs x{i - 1} --outputs x{i}"
        cells.append(f"%%executor s{i} {io}\n{chain_body(i)}")
    return write(notebook(cells), path)


def edit_step_body(path: Path, step: str, new_body: str) -> None:
    """Replace the body of executor `step` in the notebook JSON (the magic line is kept)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        first, _, _ = source.partition("\n")
        if first.startswith("%%executor ") and first.split()[1] == step:
            cell["source"] = f"{first}\n{new_body}"
            break
    else:
        raise LookupError(f"no executor {step} in {path}")
    path.write_text(json.dumps(nb, indent=1) + "\n", encoding="utf-8")


def scanflow_sleep(path: Path, steps: int = 8, seconds: float = 1.0) -> Path:
    """`steps` independent executors, each `time.sleep(seconds)`."""
    cells: list[str | tuple[str, list[str]]] = ["%load_ext scanflow_jupyter\n%scanflow_app bench-sleep",
                                                "%%setup\nimport time"]
    cells += [f"%%executor nap{i}\ntime.sleep({seconds})" for i in range(steps)]
    return write(notebook(cells), path)


def scanflow_array(path: Path, size_bytes: int) -> Path:
    """Two executors: `make` creates a float64 array of `size_bytes`, `use` consumes it."""
    n = max(1, size_bytes // 8)
    cells: list[str | tuple[str, list[str]]] = [
        "%load_ext scanflow_jupyter\n%scanflow_app bench-array",
        "%%setup\nimport numpy as np",
        f"%%executor make --outputs arr\narr = np.arange({n}, dtype=np.float64)",
        "%%executor use --inputs arr --outputs total\ntotal = float(arr[-1])",
    ]
    return write(notebook(cells), path)


# ----------------------------------------------------------------------------- papermill

def papermill_chain_step(path: Path) -> Path:
    """Plain notebook of one chain step: parameters (x, out), body, write x for the next one."""
    return write(notebook([
        ("x = 0\nout = 'x.json'", ["parameters"]),
        "x = x + 1",
        "import json\nwith open(out, 'w') as f:\n    json.dump(x, f)",
    ]), path)


def papermill_sleep_step(path: Path, seconds: float = 1.0) -> Path:
    return write(notebook(["import time", f"time.sleep({seconds})"]), path)


def floor_chain(path: Path, steps: int = 10) -> Path:
    """The one-kernel floor: every step's body as a cell of ONE notebook."""
    return write(notebook([chain_body(i) for i in range(steps)]), path)


def floor_sleep(path: Path, steps: int = 8, seconds: float = 1.0) -> Path:
    return write(notebook(["import time"] + [f"time.sleep({seconds})" for _ in range(steps)]), path)
