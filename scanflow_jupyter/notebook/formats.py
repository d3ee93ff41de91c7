"""Text notebooks (jupytext): percent-format `.py` and MyST / Markdown `.md` files.

`read_text_notebook` turns such a file into the same nbformat-4 JSON dict that an `.ipynb`
gives, so every command (inspect, run, build, export/deploy, the server's `app?path=`) works on
it unchanged. jupytext comments magics out in `.py` files (`# %%executor train`) and un-comments
them when reading, so magic lines reach the parser as `%%executor train`. Cell numbers refer
to the cells jupytext makes (the ones JupyterLab shows when it opens the file as a notebook).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scanflow_jupyter.model import Message
from scanflow_jupyter.notebook.parser import NotebookReadError

#: Suffixes read with jupytext, and the format each one must be in.
TEXT_SUFFIXES = {".py": "a jupytext percent-format notebook",
                 ".md": "a MyST or jupytext Markdown notebook (```{code-cell} blocks)"}
_PYTHON_KERNEL = {"name": "python3", "display_name": "Python 3", "language": "python"}


def is_text_notebook(path: str | Path) -> bool:
    """True for the file suffixes read through jupytext (`.py`, `.md`)."""
    return Path(path).suffix.lower() in TEXT_SUFFIXES


def _refuse(p: Path, problem: str) -> NotebookReadError:
    expected = TEXT_SUFFIXES[p.suffix.lower()]
    return NotebookReadError(Message(
        "error", "not-a-notebook", f"{p.name} is not {expected}: {problem}.",
        "start each cell with a `# %%` line, or convert a notebook with "
        "`jupytext --to py:percent NB.ipynb` / `jupytext --to myst NB.ipynb`; or give the .ipynb itself."))


def read_text_notebook(path: str | Path) -> dict[str, Any]:
    """Read a percent `.py` or MyST/Markdown `.md` notebook as nbformat-4 JSON (a plain dict)."""
    p = Path(path)
    try:
        import jupytext
        from jupytext.formats import guess_format
    except ImportError as exc:
        raise NotebookReadError(Message(
            "error", "jupytext-missing", f"{p.name} is a text notebook and reading it needs jupytext ({exc}).",
            "pip install jupytext (it is a dependency of scanflow-jupyter: reinstall the package).")) from exc
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise NotebookReadError(Message("error", "unreadable-notebook", f"cannot read {p}: {exc.strerror}.",
                                        "check the file's permissions.")) from exc
    except UnicodeDecodeError as exc:
        raise _refuse(p, f"it is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    ext = p.suffix.lower()
    fmt_name, _ = guess_format(text, ext)
    if ext == ".py" and fmt_name != "percent" and f"format_name: {fmt_name}" not in text:
        raise _refuse(p, "it has no `# %%` cell marker")  # a plain script, not a notebook
    try:
        nb = jupytext.reads(text, fmt={"extension": ext, "format_name": fmt_name})
        data = json.loads(json.dumps(nb))
    except Exception as exc:  # noqa: BLE001 - jupytext raises many types; name the file and the cause
        raise _refuse(p, f"jupytext cannot read it ({type(exc).__name__}: {exc})") from exc
    if ext == ".py" and not (data.get("metadata") or {}).get("kernelspec"):
        data.setdefault("metadata", {})["kernelspec"] = dict(_PYTHON_KERNEL)  # a .py file is Python
    return data
