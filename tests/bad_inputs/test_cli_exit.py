"""`scanflow run NB --json` on every broken notebook: exit 2, the exact message, nothing created.

All cases run once, as real subprocesses on a small thread pool (each CLI start costs ~0.3 s),
each in its own project folder; every case is then checked by its own test.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .cases import BAD_CASES, expected_text, materialize, write_notebook

pytestmark = pytest.mark.timeout(300)


@dataclass
class CliRun:
    notebook: Path
    project: Path
    returncode: int
    stdout: str
    stderr: str

    @property
    def home(self) -> Path:
        return self.project / ".scanflow"


def run_cli(cmd: list[str], project: Path, notebook: Path, timeout: float = 240) -> CliRun:
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    env["SCANFLOW_HOME"] = str(project / ".scanflow")
    proc = subprocess.run([*cmd, "run", str(notebook), "--json"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
    return CliRun(notebook, project, proc.returncode, proc.stdout, proc.stderr)


def run_folders(home: Path) -> list[str]:
    runs = home / "runs"
    if not runs.exists():
        return []
    return sorted(p.name for p in runs.iterdir() if p.is_dir() and p.name != "cache")


def mlflow_runs(home: Path) -> int:
    """Runs in `<home>/mlflow.db` (0 if the file or its runs table does not exist)."""
    db = home / "mlflow.db"
    if not db.exists():
        return 0
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        return int(conn.execute("SELECT count(*) FROM runs").fetchone()[0]) if "runs" in tables else 0


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory: pytest.TempPathFactory, scanflow_cmd: list[str]) -> dict[str, CliRun]:
    """`scanflow run <case> --json` for every case, concurrently, each in its own folder."""
    jobs = {}
    for case_id, source, _code, _cell in BAD_CASES:
        project = tmp_path_factory.mktemp(f"cli-{case_id}")
        jobs[case_id] = (project, materialize(source, project))
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = {case_id: pool.submit(run_cli, scanflow_cmd, project, nb)
                   for case_id, (project, nb) in jobs.items()}
        return {case_id: fut.result() for case_id, fut in futures.items()}


@pytest.mark.parametrize(("case_id", "source", "code", "cell"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_cli_rejects_bad_input_with_exit_2(cli_results, case_id, source, code, cell):
    res = cli_results[case_id]
    detail = f"{case_id}: exit {res.returncode}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"

    assert res.returncode == 2, detail
    try:
        doc: dict[str, Any] = json.loads(res.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"stdout is not one JSON document. {detail}")
    assert doc["status"] == "invalid", detail
    number = None if cell is None else cell + 1  # the case names the index; --json shows the 1-based number
    matching = [m for m in doc["messages"] if m["code"] == code and m["cell"] == number]
    assert len(matching) == 1, f"expected one {code!r} message on cell {number}. {detail}"
    assert matching[0]["severity"] == "error"
    assert matching[0]["text"] == expected_text(case_id, res.notebook)
    assert matching[0]["fix"].strip()
    # nothing executed, nothing tracked
    assert run_folders(res.home) == [], detail
    assert mlflow_runs(res.home) == 0, detail


def test_the_harness_sees_runs_when_there_are_some(tmp_path, scanflow_cmd, require):
    """Control: a valid notebook through the same harness exits 0 and leaves a run + MLflow runs."""
    require("ipykernel")
    require("mlflow")
    nb = write_notebook(tmp_path, ["%%executor ok --outputs result\nresult = 1"])
    res = run_cli(scanflow_cmd, tmp_path, nb)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["status"] == "succeeded"
    assert len(run_folders(res.home)) == 1
    assert mlflow_runs(res.home) >= 2  # the pipeline run and its step
