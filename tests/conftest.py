"""Shared fixtures: an isolated project folder per test, the real `scanflow` CLI, real MLflow.

Every test that uses `project` works in its own tmp folder (cwd, `SCANFLOW_HOME`, no
`MLFLOW_TRACKING_URI`), so nothing it runs lands in the repository or leaks between tests.
In CI (`CI=true`) a missing real dependency FAILS the test instead of skipping it.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def require(module: str) -> Any:
    """Import `module`; if it is missing: fail in CI, skip elsewhere."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if IN_CI:
            pytest.fail(f"{module} is a real dependency of this test and must be installed in CI: {exc}")
        pytest.skip(f"{module} is not installed: {exc}")


def scanflow_command() -> list[str]:
    """The installed `scanflow` console script (next to this Python), else `python -m`."""
    script = Path(sys.executable).parent / "scanflow"
    if script.exists():
        return [str(script)]
    if IN_CI:
        pytest.fail(f"the `scanflow` console script is not installed next to {sys.executable}")
    return [sys.executable, "-m", "scanflow_jupyter.cli"]


def load_script(name: str) -> Any:
    """A module of scripts/ (e.g. a golden-file regenerator) loaded by file path."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def notebook_dict(cells: list[str | dict[str, Any]]) -> dict[str, Any]:
    """An nbformat 4.5 notebook with one code cell per string (or dict with source/tags/cell_type)."""
    from tests.bad_inputs.cases import build_notebook

    return build_notebook(cells, {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}})


def source_of(cell: dict[str, Any]) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def count_mlflow_runs(db: Path) -> int:
    """Rows in the `runs` table of an MLflow sqlite store (0 if the table does not exist)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "runs" not in tables:
            return 0
        return int(conn.execute("SELECT count(*) FROM runs").fetchone()[0])


class Project:
    """A project folder with copies of the example notebooks and its own `.scanflow` home."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / ".scanflow"
        self.runs_dir = self.home / "runs"
        self.db = self.home / "mlflow.db"
        for nb in NOTEBOOKS.glob("*.ipynb"):
            shutil.copy(nb, root / nb.name)

    # -- notebooks
    def nb(self, name: str) -> Path:
        path = self.root / (name if name.endswith(".ipynb") else f"{name}.ipynb")
        assert path.exists(), f"no notebook {path}"
        return path

    def write_notebook(self, name: str, cells: list[str | dict[str, Any]]) -> Path:
        path = self.root / (name if name.endswith(".ipynb") else f"{name}.ipynb")
        path.write_text(json.dumps(notebook_dict(cells), indent=1) + "\n", encoding="utf-8")
        return path

    def cell_index(self, name: str, first_line_prefix: str) -> int:
        """Index of the one cell of notebook `name` whose source starts with the prefix."""
        cells = json.loads(self.nb(name).read_text(encoding="utf-8"))["cells"]
        found = [i for i, c in enumerate(cells) if source_of(c).startswith(first_line_prefix)]
        assert len(found) == 1, f"{first_line_prefix!r} matches cells {found} of {name}"
        return found[0]

    def edit_cell(self, name: str, first_line_prefix: str, new_source: str) -> None:
        """Rewrite the notebook JSON, replacing the source of one cell (magic line included)."""
        path = self.nb(name)
        nb = json.loads(path.read_text(encoding="utf-8"))
        index = self.cell_index(name, first_line_prefix)
        nb["cells"][index]["source"] = new_source
        path.write_text(json.dumps(nb, indent=1) + "\n", encoding="utf-8")

    # -- subprocess CLI
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("MLFLOW_TRACKING_URI", None)
        env["SCANFLOW_HOME"] = str(self.home)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def cli(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*scanflow_command(), *args], cwd=self.root, env=self.env(),
                              capture_output=True, text=True, timeout=timeout, check=False)

    def cli_json(self, *args: str, timeout: float = 240) -> tuple[int, Any]:
        proc = self.cli(*args, timeout=timeout)
        try:
            doc = json.loads(proc.stdout)
        except json.JSONDecodeError:
            pytest.fail(f"`scanflow {' '.join(args)}` did not print one JSON document "
                        f"(exit {proc.returncode}).\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        return proc.returncode, doc

    # -- run store and MLflow
    @property
    def store(self) -> Any:
        from scanflow_jupyter.data.store import RunStore

        return RunStore(self.runs_dir)

    def run_folders(self) -> list[Path]:
        if not self.runs_dir.exists():
            return []
        return sorted(p for p in self.runs_dir.iterdir() if p.is_dir() and p.name != "cache")

    def tracking_uri(self) -> str:
        return f"sqlite:///{self.db.as_posix()}"

    def mlflow_client(self) -> Any:
        tracking = require("mlflow.tracking")
        assert self.db.exists(), f"no MLflow store at {self.db}"
        return tracking.MlflowClient(tracking_uri=self.tracking_uri())

    def mlflow_run_count(self) -> int:
        return count_mlflow_runs(self.db) if self.db.exists() else 0


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """An isolated project: cwd = tmp_path, SCANFLOW_HOME = tmp_path/.scanflow, no MLFLOW_TRACKING_URI."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SCANFLOW_HOME", str(tmp_path / ".scanflow"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return Project(tmp_path)


@pytest.fixture(autouse=True)
def _no_mlflow_uri_leaks_between_tests() -> Any:
    """`mlflow.set_tracking_uri`/`set_registry_uri` in the test process are global and also export
    MLFLOW_TRACKING_URI/MLFLOW_REGISTRY_URI to every later child: one test's store then answered
    another's `models:/` lookup (a CI run failed so). Put both back after each test."""
    from tests.services_support import mlflow_globals_restored

    with mlflow_globals_restored():
        yield


@pytest.fixture(name="require", scope="session")
def require_fixture() -> Any:
    """`require(module)`: import it, or fail (CI) / skip (elsewhere) when it is missing."""
    return require


@pytest.fixture(scope="session")
def scanflow_cmd() -> list[str]:
    """The command that starts the `scanflow` CLI."""
    return scanflow_command()
