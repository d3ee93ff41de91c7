"""`scanflow run NB -p/-f ...` with values that do not fit the parameters: exit 2, nothing runs.

Real CLI subprocesses; each case checks the exit code, the message (parameter, type, value)
and that no run folder and no MLflow run were created.
"""

from __future__ import annotations

import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from .cases import write_notebook
from .test_cli_exit import mlflow_runs, run_folders

pytestmark = pytest.mark.timeout(300)

PARAMS = {"source": "n = 1\nlr = 0.1\nname = 'a'\nflag = False\nfree = None", "tags": ["parameters"]}
STEP = "%%executor a\nx = (n, lr, name, flag, free)"

# (case id, CLI arguments, file name -> text written beside the notebook, parameter, fragments of the text)
CASES: list[tuple[str, list[str], dict[str, str], str | None, list[str]]] = [
    ("float-gets-text", ["-p", "lr=abc"], {}, "lr", ["'lr' takes a number", "default in the parameters cell is 0.1", "string 'abc'"]),
    ("int-gets-float", ["-p", "n=1.5"], {}, "n", ["'n' takes a whole number", "number 1.5"]),
    ("int-gets-list", ["-p", "n=[1,2]"], {}, "n", ["'n' takes a whole number", "list [1, 2]"]),
    ("str-gets-number", ["-p", "name=5"], {}, "name", ["'name' takes a string", "whole number 5"]),
    ("bool-gets-int", ["-p", "flag=1"], {}, "flag", ["'flag' takes a boolean", "whole number 1"]),
    ("file-value-does-not-fit", ["-f", "p.yaml"], {"p.yaml": "n: {a: 1}\n"}, "n", ["'n' takes a whole number", "mapping {'a': 1}"]),
    ("file-missing", ["-f", "absent.yaml"], {}, None, ["cannot read parameters file", "absent.yaml"]),
    ("file-not-a-mapping", ["-f", "p.yaml"], {"p.yaml": "- 1\n- 2\n"}, None, ["must be a mapping"]),
    ("file-not-yaml", ["-f", "p.yaml"], {"p.yaml": "n: [1\n"}, None, ["not valid YAML"]),
]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory, scanflow_cmd: list[str]) -> dict[str, Any]:
    def one(case_id: str, args: list[str], files: dict[str, str]) -> tuple[Path, subprocess.CompletedProcess[str]]:
        project = tmp_path_factory.mktemp(f"params-{case_id}")
        notebook = write_notebook(project, [PARAMS, STEP])
        for name, text in files.items():
            (project / name).write_text(text, encoding="utf-8")
        env = dict(os.environ)
        env.pop("MLFLOW_TRACKING_URI", None)
        env["SCANFLOW_HOME"] = str(project / ".scanflow")
        proc = subprocess.run([*scanflow_cmd, "run", str(notebook), "--json", *args], cwd=project, env=env,
                              capture_output=True, text=True, timeout=240, check=False)
        return project, proc

    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = {c[0]: pool.submit(one, c[0], c[1], c[2]) for c in CASES}
        return {case_id: fut.result() for case_id, fut in futures.items()}


@pytest.mark.parametrize(("case_id", "args", "files", "param", "fragments"), CASES, ids=[c[0] for c in CASES])
def test_values_that_do_not_fit_exit_2(results, case_id, args, files, param, fragments):
    project, proc = results[case_id]
    detail = f"{case_id}: exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.returncode == 2, detail
    if param is None:  # a bad -f file is a usage error of the option, before the notebook is read
        text = proc.stderr
        assert "-f/--params-file" in text, detail
    else:
        doc = json.loads(proc.stdout)
        assert doc["status"] == "invalid", detail
        (message,) = [m for m in doc["messages"] if m["code"] == "bad-parameter-type"]
        assert message["cell"] == 1 and message["severity"] == "error"  # 1-based: the parameters cell is the first
        text = message["text"]
        assert text.startswith(f"-p {param}: "), detail
        assert "None" in message["fix"], message["fix"]
    for fragment in fragments:
        assert fragment in " ".join(text.split()), f"{fragment!r} not in {text!r}"
    home = project / ".scanflow"
    assert run_folders(home) == [] and mlflow_runs(home) == 0, detail
