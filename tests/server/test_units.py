"""Small pure parts of the server extension: path resolution, journal tailing, the params file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scanflow_jupyter.server.events import JournalTail, read_events
from scanflow_jupyter.server.paths import (
    PathInvalid,
    PathMissing,
    PathRefused,
    relative_to_root,
    resolve_in_root,
)
from scanflow_jupyter.server.run_manager import RunRequestError, write_params_file


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


def test_over_long_and_looping_paths_are_invalid_not_os_errors(tmp_path: Path) -> None:
    (tmp_path / "loop.ipynb").symlink_to(tmp_path / "loop2.ipynb")
    (tmp_path / "loop2.ipynb").symlink_to(tmp_path / "loop.ipynb")
    for bad, match in [("a" * 256, "component of 256"), ("d/" * 2049, "limit 4096"), ("loop.ipynb", "cannot be resolved")]:
        for must_exist in (True, False):
            with pytest.raises(PathInvalid, match=match):
                resolve_in_root(tmp_path, bad, must_exist=must_exist)
    assert resolve_in_root(tmp_path, "a" * 255, must_exist=False) == (tmp_path / ("a" * 255)).resolve()


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


def test_events_show_the_notebook_cell_one_based(tmp_path: Path) -> None:
    """The runner's journal keeps 0-based indices; the REST events show 1-based cell numbers."""
    lines = [{"type": "step_cell", "step": "a", "data": {"index": 3, "cell": 4, "text": ""}},
             {"type": "step_failed", "step": "a", "data": {"cell": 0, "ename": "E", "evalue": "v"}},
             {"type": "step_failed", "step": "b", "data": {"cell": None, "ename": "DeadKernelError"}}]
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
    events, _ = read_events(tmp_path, 0)
    assert [e["data"]["cell"] for e in events] == [5, 1, None]
    assert events[0]["data"]["index"] == 3  # the position inside the step notebook is left as it is


@pytest.mark.parametrize("value", ["1", "true", "null", "[1, 2]", "abc: d", "a b=c", "0.5", "", "#x", "😀 é",
                                   "\u2028\x85\x7f\x00\ud800\ufeff", "x" * 300_000, 5, -0.25, True, None])
def test_params_file_reads_back_the_same_value_in_the_cli(value: object) -> None:
    """What the server writes is what `scanflow run --params-file` reads: no re-typing, any size."""
    import os
    import stat

    from scanflow_jupyter.cli.view import load_params_file

    path = write_params_file({"p": value})
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert load_params_file(path) == {"p": value}
        assert json.loads(Path(path).read_text(encoding="utf-8")) == {"p": value}
    finally:
        os.unlink(path)


def test_params_file_refuses_what_cannot_be_passed() -> None:
    assert write_params_file({}) is None
    for params, match in [({"xs": [1, 2]}, "cannot be passed"), ({"not-a-name": 1}, "identifier"),
                          ({"x": float("inf")}, "finite"), ({"x": float("nan")}, "finite")]:
        with pytest.raises(RunRequestError, match=match):
            write_params_file(params)
