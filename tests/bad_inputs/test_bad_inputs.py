"""Every broken notebook gets one precise, actionable error (data-driven from `cases.py`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from scanflow_jupyter.model import Message
from scanflow_jupyter.notebook.parser import NotebookReadError, parse_notebook
from scanflow_jupyter.notebook.validate import has_errors, validate

from .cases import (
    BAD_CASES,
    EXPECTED_TEXT,
    EXTRA_ERRORS,
    build_notebook,
    expected_text,
    materialize,
    write_notebook,
)


def findings(path: Path) -> list[Message]:
    """What the CLI would report for `path`: the read error, or every validation message."""
    try:
        app = parse_notebook(path)
    except NotebookReadError as err:
        return [err.message]
    return validate(app)


def test_there_are_enough_cases():
    assert len(BAD_CASES) >= 45
    ids = [case[0] for case in BAD_CASES]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    assert set(ids) == set(EXPECTED_TEXT)
    assert set(EXTRA_ERRORS) <= set(ids)


@pytest.mark.parametrize(("case_id", "source", "code", "cell"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_input(case_id, source, code, cell, tmp_path):
    path = materialize(source, tmp_path)
    messages = findings(path)

    assert has_errors(messages), f"{case_id}: no error reported; got {messages}"
    matching = [m for m in messages if m.code == code and m.cell == cell]
    assert len(matching) == 1, f"{case_id}: expected one {code!r} error on cell {cell}; got {[str(m) for m in messages]}"
    message = matching[0]
    assert message.severity == "error"
    assert message.text == expected_text(case_id, path)
    assert message.fix.strip(), "every message says how to fix it"
    assert message.fix.endswith((".", "?")), f"{case_id}: the fix is a sentence: {message.fix!r}"

    others = [(m.code, m.cell) for m in messages if m.severity == "error" and m is not message]
    assert others == EXTRA_ERRORS.get(case_id, []), f"{case_id}: unexpected extra errors {others}"


def test_raw_case_files_are_where_the_cases_say(tmp_path):
    for case_id, source, code, _cell in BAD_CASES:
        if isinstance(source, Path) and code != "notebook-not-found":
            assert source.exists(), f"{case_id}: missing {source}"
            assert source.is_file() or case_id == "directory", f"{case_id}: {source} is not a file"


def test_materialize_writes_a_readable_notebook(tmp_path):
    path = materialize(["%%executor a\nx = 1", {"source": "n = 1", "tags": ["parameters"]}], tmp_path)
    app = parse_notebook(path)
    assert app.name == "case"
    assert [e.name for e in app.executors] == ["a"]
    assert app.parameters == {"n": 1}
    assert not has_errors(validate(app))


def test_all_problems_are_reported_at_once(tmp_path):
    """Validation does not stop at the first problem: the user fixes everything in one go."""
    cells = [
        "%load_ext scanflow_jupyter\n%scanflow_app 9lives",           # bad app name (on its cell)
        "%%executor load --retries many\nx = 1",                      # bad option value
        "%%executor train --inputs features --outputs model\nm = 1",  # no producer, not assigned
        "%%executor score --requires trian --memory 2GB\ny = 2",      # unknown dep, bad memory
        "%%executor score --retries 1\nz = 3",                        # options on a continuation
        "%%setup\nimport (",                                          # syntax error
    ]
    metadata = {"language_info": {"name": "python"}}                  # no kernelspec
    path = write_notebook(tmp_path, cells, metadata=metadata)

    messages = findings(path)

    got = {(m.code, m.cell) for m in messages if m.severity == "error"}
    assert got == {
        ("no-kernelspec", None),
        ("bad-arguments", 1),
        ("bad-app-name", 0),
        ("continuation-options", 4),
        ("syntax-error", 5),
        ("input-without-producer", 2),
        ("output-not-assigned", 2),
        ("unknown-dependency", 3),
        ("bad-quantity", 3),
    }
    # Findings made while reading the notebook come first, in cell order.
    assert [m.code for m in messages[:2]] == ["no-kernelspec", "bad-arguments"]


def test_warnings_alone_do_not_block(tmp_path):
    path = write_notebook(tmp_path, ["%%executor a\n", "%%executor b\ny = undefined_name"])
    messages = findings(path)
    assert {m.code for m in messages} == {"empty-executor", "undefined-name"}
    assert not has_errors(messages)


def test_build_notebook_is_valid_nbformat():
    nbformat = pytest.importorskip("nbformat")
    nb = build_notebook(["x = 1", {"cell_type": "markdown", "source": "# hi"}, {"source": "n = 1", "tags": ["parameters"]}])
    nbformat.validate(nbformat.from_dict(nb))
