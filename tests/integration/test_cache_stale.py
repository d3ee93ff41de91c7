"""The cache is never stale: edit what a step depends on and exactly that step re-executes.

Real `scanflow run --json --explain` subprocesses (real kernels, run store and MLflow store) in
one project folder. Each edit is followed by a run that must re-execute exactly the steps
that depend on what changed — with the `explain` text saying why — and serve every other
step from the cache. The package upgrade is a real distribution (dist-info + module) in a
site-packages folder on PYTHONPATH whose version changes between two runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import notebook_dict, scanflow_command

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]

STEPS = ["load", "feat", "extra", "assets", "versioned", "tagged"]

CELLS: list[Any] = [
    "%load_ext scanflow_jupyter\n%scanflow_app stale",
    {"source": "scale = 2\nlabel = 'x'", "tags": ["parameters"]},
    "%%setup\nimport os",
    # a data file read by a path literal
    '%%executor load --outputs rows\nimport csv\nwith open("data/train.csv") as fh:\n'
    '    rows = [int(r["x"]) for r in csv.DictReader(fh)]',
    # a local module that imports another local module; reads parameter `scale`
    "%%executor feat --inputs rows --outputs feats\nimport helpers\nfeats = [helpers.double(v) * scale for v in rows]",
    # a notebook it %runs
    "%%executor extra --outputs offset\n%run extra.ipynb\noffset = OFFSET",
    # a --deps folder, read without any literal naming a file
    "%%executor assets --deps assets --outputs total\n"
    "total = sum(len(open(os.path.join(d, f)).read()) for d, _, files in os.walk('assets') for f in files)",
    # an installed distribution
    "%%executor versioned --outputs version\nimport stalepkg\nversion = stalepkg.VERSION",
    # the only step reading `label`
    "%%executor tagged --outputs tag\ntag = label.upper()",
]


def write_distribution(site: Path, version: str) -> None:
    """A real installed distribution `stalepkg` (module + dist-info) at `version`."""
    for old in site.glob("stalepkg-*.dist-info"):
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    (site / "stalepkg").mkdir(parents=True, exist_ok=True)
    (site / "stalepkg" / "__init__.py").write_text(f"VERSION = {version!r}\n", encoding="utf-8")
    info = site / f"stalepkg-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: stalepkg\nVersion: {version}\n", encoding="utf-8")
    (info / "top_level.txt").write_text("stalepkg\n", encoding="utf-8")
    (info / "RECORD").write_text(f"stalepkg/__init__.py,,\nstalepkg-{version}.dist-info/METADATA,,\n", encoding="utf-8")


class Project:
    def __init__(self, root: Path, site: Path) -> None:
        self.root = root
        self.site = site
        self.nb = root / "stale.ipynb"

    def run(self, *args: str) -> dict[str, Any]:
        env = dict(os.environ)
        env.pop("MLFLOW_TRACKING_URI", None)
        env["SCANFLOW_HOME"] = str(self.root / ".scanflow")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(self.site), env.get("PYTHONPATH")) if p)
        proc = subprocess.run([*scanflow_command(), "run", str(self.nb), "--json", "--explain", *args],
                              cwd=self.root, env=env, capture_output=True, text=True, timeout=600, check=False)
        try:
            doc = json.loads(proc.stdout)
        except json.JSONDecodeError:
            pytest.fail(f"no JSON (exit {proc.returncode})\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-3000:]}")
        assert proc.returncode == 0, json.dumps(doc, indent=1)
        return doc

    def write(self, rel: str, text: str) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def executed(doc: dict[str, Any]) -> set[str]:
    return {name for name, s in doc["steps"].items() if s["status"] == "succeeded"}


def check(doc: dict[str, Any], expected: dict[str, str], stage: str) -> None:
    """`expected`: step -> a fragment of its `explain`; those steps executed, all others cached."""
    steps = doc["steps"]
    assert executed(doc) == set(expected), f"{stage}: executed {sorted(executed(doc))}, expected {sorted(expected)}; " + \
        json.dumps({n: (s["status"], s.get("explain")) for n, s in steps.items()}, indent=1)
    for name in STEPS:
        explain = steps[name]["explain"]
        if name in expected:
            assert expected[name] in explain, f"{stage}: {name}: {explain!r} does not say {expected[name]!r}"
        else:
            assert steps[name]["status"] == "cached", f"{stage}: {name} is {steps[name]['status']}"
            assert explain.startswith("cached"), f"{stage}: {name}: {explain!r}"


@pytest.fixture
def stale_project(tmp_path: Path, require: Any) -> Project:
    from tests.integration.conftest import _check_kernel

    _check_kernel(require)
    root = tmp_path / "project"
    project = Project(root, tmp_path / "site")
    project.write("data/train.csv", "x\n1\n2\n3\n")
    project.write("helpers.py", "from mathutil import twice\n\n\ndef double(v):\n    return twice(v)\n")
    project.write("mathutil.py", "def twice(v):\n    return 2 * v\n")
    project.write("assets/a.txt", "aaaa")
    project.write("assets/sub/b.txt", "bb")
    (root / "extra.ipynb").write_text(json.dumps(notebook_dict(["OFFSET = 10"])), encoding="utf-8")
    project.nb.write_text(json.dumps(notebook_dict(CELLS), indent=1), encoding="utf-8")
    write_distribution(project.site, "1.0")
    return project


def test_exactly_the_steps_whose_dependencies_changed_re_execute(stale_project: Project) -> None:
    p = stale_project
    first = p.run()
    check(first, dict.fromkeys(STEPS, "no cache entry"), "first run")

    check(p.run(), {}, "unchanged rerun")

    p.write("data/train.csv", "x\n1\n2\n4\n")
    check(p.run(), {"load": "data/train.csv changed", "feat": "input rows changed"}, "data file edited")

    p.write("mathutil.py", "def twice(v):\n    return v + v  # same values, new code\n")
    check(p.run(), {"feat": "mathutil.py changed"}, "module imported by a module edited")

    p.write("helpers.py", "from mathutil import twice\n\n\ndef double(v):\n    return twice(v) + 0\n")
    check(p.run(), {"feat": "helpers.py changed"}, "local module edited")

    (p.root / "extra.ipynb").write_text(json.dumps(notebook_dict(["OFFSET = 11"])), encoding="utf-8")
    check(p.run(), {"extra": "%run extra.ipynb changed"}, "%run notebook edited")

    p.write("assets/sub/b.txt", "bbb")
    check(p.run(), {"assets": "assets/sub/b.txt changed"}, "--deps folder file edited")

    write_distribution(p.site, "1.1")
    doc = p.run()
    check(doc, {"versioned": "package stalepkg 1.0 -> 1.1"}, "package upgraded")

    doc = p.run("-p", "label=y")
    check(doc, {"tagged": "parameter label changed"}, "parameter only one step reads")

    doc = p.run("-p", "label=y", "--no-cache")
    check(doc, dict.fromkeys(STEPS, "--no-cache"), "--no-cache")


def test_results_follow_the_edits(stale_project: Project) -> None:
    """The values a rerun reports are those of the edited files (not only the statuses)."""
    from scanflow_jupyter.data.records import OutputRecord
    from scanflow_jupyter.data.serializers import load_value

    p = stale_project

    def outputs(doc: dict[str, Any]) -> dict[str, Any]:
        state = json.loads(Path(doc["run_dir"], "run.json").read_text(encoding="utf-8"))
        values = {}
        for step in state["steps"].values():
            for var, record in step["outputs"].items():
                record = dict(record)
                values[var] = load_value(Path(record.pop("folder")), OutputRecord.from_dict(record))
        return values

    assert outputs(p.run()) == {"rows": [1, 2, 3], "feats": [4, 8, 12], "offset": 10, "total": 6,
                                "version": "1.0", "tag": "X"}
    p.write("data/train.csv", "x\n5\n")
    p.write("assets/a.txt", "a")
    (p.root / "extra.ipynb").write_text(json.dumps(notebook_dict(["OFFSET = 3"])), encoding="utf-8")
    write_distribution(p.site, "2.0")
    assert outputs(p.run("-p", "scale=3")) == {"rows": [5], "feats": [30], "offset": 3, "total": 3,
                                               "version": "2.0", "tag": "X"}


def test_inspect_shows_each_steps_key_ingredients(stale_project: Project) -> None:
    p = stale_project
    env = dict(os.environ, PYTHONPATH=str(p.site), SCANFLOW_HOME=str(p.root / ".scanflow"))
    proc = subprocess.run([*scanflow_command(), "inspect", str(p.nb), "--json"], cwd=p.root, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cache = {e["name"]: e["cache"] for e in json.loads(proc.stdout)["executors"]}
    assert set(cache) == set(STEPS)
    assert cache["load"]["data_files"].keys() == {"data/train.csv"}
    assert cache["feat"]["params_read"] == ["scale"] and cache["feat"]["inputs"] == ["rows"]
    assert cache["feat"]["local_modules"].keys() == {"helpers.py", "mathutil.py"}
    assert cache["extra"]["run_notebooks"].keys() == {"extra.ipynb"}
    assert cache["assets"]["deps"].keys() == {"assets/a.txt", "assets/sub/b.txt"}
    assert cache["versioned"]["distributions"] == {"stalepkg": "1.0"}
    assert cache["tagged"]["params_read"] == ["label"]
    for step in STEPS:
        assert cache[step]["enabled"] is True and cache[step]["kernel"] == "python3"
        assert len(cache[step]["code_digest"]) == 64 and cache[step]["python"].count(".") == 2
    text = subprocess.run([*scanflow_command(), "inspect", str(p.nb)], cwd=p.root, env=env,
                          capture_output=True, text=True, timeout=120, check=False).stdout
    assert "feat cache key: parameters scale; files helpers.py, mathutil.py" in " ".join(text.split())
