"""Helpers shared by the agent tests: a fresh MLflow sqlite store in milliseconds.

Creating an MLflow sqlite store (tables + migrations) takes seconds; the first call creates a
template once per test session and every call copies it into the test's own folder.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

_template: Path | None = None


def fresh_store(folder: Path, name: str = "mlflow.db") -> str:
    """Copy an empty, fully migrated MLflow store to `folder/name`; return its tracking URI."""
    global _template
    if _template is None:
        from scanflow_jupyter.tracking import Recorder

        template = Path(tempfile.mkdtemp(prefix="scanflow-mlflow-template-")) / "mlflow.db"
        Recorder(f"sqlite:///{template}").warm_up()
        _template = template
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_template, folder / name)
    return f"sqlite:///{folder / name}"
