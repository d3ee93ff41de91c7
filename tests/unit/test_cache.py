"""Cache keys: comments and formatting never bust the cache; code, params, inputs do."""

from __future__ import annotations

import json
import os
import time

from scanflow_jupyter.model import Application, CodeBlock, Executor
from scanflow_jupyter.runtime.cache import (
    FileDigests,
    StepKeys,
    explain_changes,
    inspect_ingredients,
    normalize_code,
    resolve_deps,
    step_cache_key,
)


def _key(body: str, params=None, upstream=None, setup: str = "import math") -> str:
    app = Application(name="t", notebook="t.ipynb", kernel_name="python3", setup=[CodeBlock(0, setup)])
    ex = Executor(name="s", cell=1, source=body, outputs=["y"])
    return step_cache_key(app, ex, params or {"n": 1}, upstream or {"x": "abc"})


def test_comments_blank_lines_and_spacing_do_not_change_the_key():
    assert _key("y = x+1") == _key("# add one\n\ny = x + 1  # done\n")


def test_code_params_read_inputs_and_setup_change_the_key():
    base = _key("y = x + n")
    assert _key("y = x + 2") != base
    assert _key("y = x + n", params={"n": 2}) != base
    assert _key("y = x + n", upstream={"x": "def"}) != base
    assert _key("y = x + n", setup="import os") != base


def test_only_the_parameters_a_step_reads_are_in_its_key():
    assert _key("y = x + 1", params={"n": 1}) == _key("y = x + 1", params={"n": 2})
    assert _key("y = x + 1", params={"n": 1}, setup="m = n * 2") != _key("y = x + 1", params={"n": 2}, setup="m = n * 2")
    # names in magic lines count, and dynamic reads depend on every parameter
    assert _key("!echo {n}\ny = 1", params={"n": 1}) != _key("!echo {n}\ny = 1", params={"n": 2})
    assert _key("y = globals()['n']", params={"n": 1}) != _key("y = globals()['n']", params={"n": 2})


def test_magic_lines_take_part_in_the_key():
    assert normalize_code("!pip install a\ny = 1") != normalize_code("!pip install b\ny = 1")
    assert _key("%time y = 1") != _key("%timeit y = 1")


def test_unparsable_code_still_normalizes():
    assert normalize_code("y = (\n\n") == "y = ("


# --- ingredients ---------------------------------------------------------------------------


def _project(tmp_path, body: str, setup: str = "", deps=None, params=None):
    app = Application(name="t", notebook=str(tmp_path / "nb.ipynb"), kernel_name="python3",
                      setup=[CodeBlock(0, setup)] if setup else [], parameters=params or {"lr": 0.1, "n": 1})
    return app, Executor(name="s", cell=1, source=body, deps=list(deps or []))


def _write(root, rel, text):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_local_modules_are_followed_recursively_with_relative_imports(tmp_path):
    _write(tmp_path, "helpers.py", "from pkg import util\nimport numpy\n")
    _write(tmp_path, "pkg/__init__.py", "")
    _write(tmp_path, "pkg/util.py", "from . import inner\nfrom .deep.leaf import x\n")
    _write(tmp_path, "pkg/inner.py", "y = 1\n")
    _write(tmp_path, "pkg/deep/__init__.py", "")
    _write(tmp_path, "pkg/deep/leaf.py", "x = 2\n")
    _write(tmp_path, "unused.py", "")
    app, ex = _project(tmp_path, "import helpers\nimport os")
    ing = inspect_ingredients(app, ex)
    assert sorted(ing["local_modules"]) == ["helpers.py", "pkg/__init__.py", "pkg/deep/__init__.py",
                                            "pkg/deep/leaf.py", "pkg/inner.py", "pkg/util.py"]
    assert "numpy" in ing["distributions"]  # imported by a local module: its version counts


def test_run_notebooks_are_followed_recursively(tmp_path):
    nb = {"cells": [{"cell_type": "code", "source": "%run -i second.ipynb\nimport helpers\nv = lr"},
                    {"cell_type": "markdown", "source": "%run ignored.ipynb"}]}
    _write(tmp_path, "first.ipynb", json.dumps(nb))
    _write(tmp_path, "second.ipynb", json.dumps({"cells": [{"cell_type": "code", "source": "w = open('data.txt').read()"}]}))
    _write(tmp_path, "helpers.py", "")
    _write(tmp_path, "data.txt", "d")
    app, ex = _project(tmp_path, "%run first.ipynb\nx = v")
    ing = inspect_ingredients(app, ex)
    assert sorted(ing["run_notebooks"]) == ["first.ipynb", "second.ipynb"]
    assert list(ing["local_modules"]) == ["helpers.py"]
    assert list(ing["data_files"]) == ["data.txt"]
    assert ing["params_read"] == ["lr"]  # read by the %run notebook, in the step's namespace


def test_data_files_are_existing_files_inside_the_project_only(tmp_path):
    _write(tmp_path, "data/train.csv", "x")
    _write(tmp_path, ".scanflow/runs/x.json", "{}")
    (tmp_path / "folder").mkdir()
    outside = _write(tmp_path.parent, f"{tmp_path.name}-outside.txt", "o")
    body = (f"a = 'data/train.csv'\nb = 'data/absent.csv'\nc = 'folder'\nd = {str(outside)!r}\n"
            "e = '.scanflow/runs/x.json'\nf = 'https://example.com/data/train.csv'")
    app, ex = _project(tmp_path, body)
    assert list(inspect_ingredients(app, ex)["data_files"]) == ["data/train.csv"]


def test_resolve_deps_files_folders_globs(tmp_path):
    for rel in ("d/a.csv", "d/sub/b.csv", "d/sub/c.txt", "d/__pycache__/x.pyc", "top.txt"):
        _write(tmp_path, rel, rel)
    names = lambda paths: [p.relative_to(tmp_path).as_posix() for p in paths]  # noqa: E731
    assert names(resolve_deps(tmp_path, "top.txt")) == ["top.txt"]
    assert names(resolve_deps(tmp_path, "d")) == ["d/a.csv", "d/sub/b.csv", "d/sub/c.txt"]
    assert names(resolve_deps(tmp_path, "d/**/*.csv")) == ["d/a.csv", "d/sub/b.csv"]
    assert resolve_deps(tmp_path, "absent") == [] and resolve_deps(tmp_path, "d/*.parquet") == []
    assert names(resolve_deps(tmp_path, str(tmp_path / "top.txt"))) == ["top.txt"]


def test_deps_content_changes_the_key(tmp_path):
    _write(tmp_path, "d/a.csv", "1")
    app, ex = _project(tmp_path, "x = 1", deps=["d"])
    keys = StepKeys(app, app.parameters)
    before = keys.key(ex, {})
    _write(tmp_path, "d/a.csv", "2")
    assert StepKeys(app, app.parameters).key(ex, {}) != before
    _write(tmp_path, "d/new.csv", "")
    assert "d/new.csv" in StepKeys(app, app.parameters).ingredients(ex, {})["deps"]


def test_file_digests_trust_an_unchanged_stat_and_not_a_racy_one(tmp_path):
    path = _write(tmp_path, "f.bin", "aaaa")
    old = time.time() - 60
    os.utime(path, (old, old))
    digests = FileDigests(tmp_path / "files.json")
    first = digests.digest(path)
    digests.save()
    # same size, mtime and inode, other bytes: the remembered digest is used (no read)
    with open(path, "r+b") as fh:
        fh.write(b"bbbb")
    os.utime(path, (old, old))
    assert FileDigests(tmp_path / "files.json").digest(path) == first
    # a changed mtime is hashed again
    os.utime(path, (old + 1, old + 1))
    assert FileDigests(tmp_path / "files.json").digest(path) != first
    # a file modified right before it was hashed is not trusted the next time
    fresh = _write(tmp_path, "g.bin", "cccc")
    racy = FileDigests(tmp_path / "g.json")
    digest = racy.digest(fresh)
    racy.save()
    st = fresh.stat()
    with open(fresh, "r+b") as fh:
        fh.write(b"dddd")
    os.utime(fresh, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert FileDigests(tmp_path / "g.json").digest(fresh) != digest
    assert FileDigests(None).digest(tmp_path / "absent") == "missing"


def test_explain_changes_names_what_changed():
    base = {"setup": "s", "code": "c", "params": {"lr": 0.1}, "inputs": {"x": "1"}, "deps": {"d/a": "1"},
            "modules": {"helpers.py": "1"}, "notebooks": {"prep.ipynb": "1"}, "data_files": {"data/t.csv": "1"},
            "distributions": {"numpy": "1.0"}, "environment": {"kernel": "python3", "python": "3.11"}}
    assert explain_changes(base, json.loads(json.dumps(base))) == []
    new = {"setup": "s2", "code": "c2", "params": {"lr": 0.2, "n": 1}, "inputs": {"x": "2"}, "deps": {"d/a": "2", "d/b": "1"},
           "modules": {"helpers.py": "2"}, "notebooks": {"prep.ipynb": "2"}, "data_files": {"data/t.csv": "missing"},
           "distributions": {"numpy": "2.0"}, "environment": {"kernel": "other", "python": "3.12"}}
    assert explain_changes(base, new) == [
        "setup code changed", "code changed", "parameter lr changed", "now reads parameter n", "input x changed",
        "d/a changed", "d/b added", "helpers.py changed", "%run prep.ipynb changed", "data/t.csv is missing",
        "package numpy 1.0 -> 2.0", "kernel changed", "Python version changed"]


def test_why_not_cached_compares_with_the_latest_entry(tmp_path):
    app, ex = _project(tmp_path, "y = lr")
    keys = StepKeys(app, {"lr": 0.1, "n": 1}, tmp_path / "store")
    ing = keys.ingredients(ex, {})
    assert keys.why_not_cached("s", ing) == "no cache entry"
    keys.remember("s", "k" * 64, ing, "run-1")
    assert keys.why_not_cached("s", ing) == "no cache entry (the outputs of run run-1 are gone)"
    changed = StepKeys(app, {"lr": 0.2, "n": 1}, tmp_path / "store")
    assert changed.why_not_cached("s", changed.ingredients(ex, {})) == "parameter lr changed"
    unread = StepKeys(app, {"lr": 0.1, "n": 5}, tmp_path / "store")
    assert unread.key(ex, {}) == keys.key(ex, {})  # a parameter the step does not read


def test_code_with_ipython_syntax_inside_statements_is_still_followed(tmp_path):
    """`files = !ls` is not Python: IPython's own transform lets imports and literals be found."""
    _write(tmp_path, "helpers.py", "")
    _write(tmp_path, "data.csv", "x")
    app, ex = _project(tmp_path, "files = !ls\nimport helpers\nd = open('data.csv').read()")
    ing = inspect_ingredients(app, ex)
    assert list(ing["local_modules"]) == ["helpers.py"] and list(ing["data_files"]) == ["data.csv"]
    assert ing["params_read"] == []  # `!ls` names no parameter
    app, ex = _project(tmp_path, "files = !ls {n}\nget_ipython().user_ns")
    assert inspect_ingredients(app, ex)["params_read"] == ["lr", "n"]  # the user's own get_ipython() can read anything
    app, ex = _project(tmp_path, "files = !ls {n}")
    assert inspect_ingredients(app, ex)["params_read"] == ["n"]  # a command interpolates the names it spells


def test_deps_match_agrees_with_resolve_deps(tmp_path):
    from scanflow_jupyter.runtime.cache import deps_match

    for rel in ("d/sub/b.csv", "e/__pycache__/x.pyc", "top.txt"):
        _write(tmp_path, rel, rel)
    (tmp_path / "empty").mkdir()
    for pattern in ("top.txt", "d", "d/**/*.csv", "e", "empty", "absent", "*.parquet", "**/*.txt"):
        assert deps_match(tmp_path, pattern) == bool(resolve_deps(tmp_path, pattern)), pattern


def test_distribution_versions_are_remembered_until_the_environment_changes(tmp_path, monkeypatch):
    import importlib

    site = tmp_path / "site"
    (site / "memopkg").mkdir(parents=True)
    (site / "memopkg" / "__init__.py").write_text("", encoding="utf-8")

    def install(version: str) -> None:
        for old in site.glob("memopkg-*.dist-info"):
            for f in old.iterdir():
                f.unlink()
            old.rmdir()
        info = site / f"memopkg-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: memopkg\nVersion: {version}\n", encoding="utf-8")
        (info / "top_level.txt").write_text("memopkg\n", encoding="utf-8")

    install("1.0")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    app, ex = _project(tmp_path / "project", "import memopkg")
    (tmp_path / "project").mkdir()
    store = tmp_path / "store"

    def versions() -> dict:
        keys = StepKeys(app, app.parameters, store)
        found = keys.ingredients(ex, {})["distributions"]
        keys.save()
        return found

    assert versions() == {"memopkg": "1.0"}
    # the version changes without the folder changing (no install): the remembered mapping is used
    st = site.stat()
    meta = site / "memopkg-1.0.dist-info" / "METADATA"
    meta.write_text(meta.read_text(encoding="utf-8").replace("1.0", "9.9"), encoding="utf-8")
    os.utime(site, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert versions() == {"memopkg": "1.0"}
    # a real upgrade replaces the dist-info folder: the environment changed, versions are read again
    install("1.1")
    assert versions() == {"memopkg": "1.1"}


def test_every_part_of_a_multi_cell_step_is_in_its_key_and_markdown_is_not():
    from scanflow_jupyter.notebook.parser import parse_notebook_dict

    def key(second_part: str, prose: str = "Then refine.", m: int = 2) -> str:
        nb = {"cells": [
            {"cell_type": "code", "metadata": {}, "source": "%%executor s --outputs y\ny = 1"},
            {"cell_type": "markdown", "metadata": {}, "source": prose},
            {"cell_type": "code", "metadata": {}, "source": f"%%executor s\n{second_part}"},
        ], "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}}, "nbformat": 4, "nbformat_minor": 5}
        app = parse_notebook_dict(nb, "/work/t.ipynb")
        app.parameters = {"n": 1, "m": 2}
        return step_cache_key(app, app.executor("s"), {"n": 1, "m": m}, {})

    base = key("y = y + m")
    assert key("y = y + m", prose="Reworded prose.") == base     # markdown between the parts
    assert key("y = y + m  # same") == base                      # comments, as everywhere
    assert key("y = y + 2 * m") != base                          # code of the later part
    assert key("y = y + m", m=3) != base                         # a parameter only the later part reads
    assert key("y = y + n", m=3) == key("y = y + n")             # ... and one no part reads
