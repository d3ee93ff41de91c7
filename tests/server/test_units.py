"""Small pure parts of the server extension: path resolution, journal tailing, -p arguments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scanflow_jupyter.server.events import JournalTail, read_events
from scanflow_jupyter.server.paths import (
    PathMissing,
    PathRefused,
    relative_to_root,
    resolve_in_root,
)
from scanflow_jupyter.server.run_manager import RunRequestError, param_arg


def test_resolve_in_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a" / "nb.ipynb").write_text("{}")
    (tmp_path / "secret.ipynb").write_text("{}")
    (root / "escape.ipynb").symlink_to(tmp_path / "secret.ipynb")
    (root / "inside.ipynb").symlink_to(root / "a" / "nb.ipynb")
    assert resolve_in_root(root, "a/nb.ipynb") == (root / "a" / "nb.ipynb").resolve()
    assert resolve_in_root(root, "inside.ipynb") == (root / "a" / "nb.ipynb").resolve()
    for bad in ("../secret.ipynb", "/etc/passwd", "a/../../secret.ipynb", "escape.ipynb", "a\0b"):
        with pytest.raises(PathRefused):
            resolve_in_root(root, bad)
    for missing in ("a/none.ipynb", "", "a"):
        with pytest.raises(PathMissing):
            resolve_in_root(root, missing)
    assert resolve_in_root(root, "new.ipynb", must_exist=False) == (root / "new.ipynb").resolve()
    assert relative_to_root(root, root / "a" / "nb.ipynb") == "a/nb.ipynb"
    assert relative_to_root(root, tmp_path / "secret.ipynb") is None


def test_journal_tail_reads_complete_lines_only(tmp_path: Path) -> None:
    journal = tmp_path / "events.jsonl"
    first = json.dumps({"type": "run_started", "run_id": "r"}) + "\n"
    journal.write_text(first + '{"type": "step_sta')
    tail = JournalTail(tmp_path)
    assert [e["seq"] for e in tail.read_new()] == [1]
    assert tail.read_new() == []
    with journal.open("a") as fh:
        fh.write('rted", "step": "a"}\n' + json.dumps({"type": "run_finished"}) + "\n")
    events = tail.read_new()
    assert [(e["seq"], e["type"]) for e in events] == [(2, "step_started"), (3, "run_finished")]
    assert tail.finished
    later, finished = read_events(tmp_path, after=2)
    assert [e["seq"] for e in later] == [3] and finished
    none, finished = read_events(tmp_path, after=3)
    assert none == [] and finished, "finished is known even when run_finished is before `after`"
    assert read_events(tmp_path / "missing", 0) == ([], False)


def test_param_arg() -> None:
    assert param_arg("n", 5) == "n=5"
    assert param_arg("lr", 0.1) == "lr=0.1"
    assert param_arg("flag", True) == "flag=True"
    assert param_arg("x", None) == "x=None"
    assert param_arg("name", "a b=c") == "name=a b=c"
    with pytest.raises(RunRequestError, match="cannot be passed"):
        param_arg("xs", [1, 2])
    with pytest.raises(RunRequestError, match="identifier"):
        param_arg("not-a-name", 1)


def test_param_arg_strings_read_back_as_the_same_string() -> None:
    """`-p` values parse as YAML: a string that looks like a number or boolean is quoted."""
    from scanflow_jupyter.params import parse_params

    for value in ("1", "true", "null", "[1, 2]", "abc", "a b=c", "0.5", ""):
        assert parse_params([param_arg("s", value)]) == {"s": value}, value
    assert parse_params([param_arg("n", 5), param_arg("x", None), param_arg("f", False)]) == {"n": 5, "x": None, "f": False}
