"""Text notebooks (jupytext percent `.py`, MyST `.md`) parse into the same application as the `.ipynb`."""

from __future__ import annotations

from pathlib import Path

import pytest

from scanflow_jupyter.notebook.parser import NotebookReadError, parse_notebook

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.fixture(scope="module")
def jupytext(require):  # noqa: ANN001, ANN201 - the session's `require` fixture
    return require("jupytext")


def _convert(jupytext, tmp_path: Path, fmt: str, suffix: str) -> Path:  # noqa: ANN001
    nb = jupytext.read(NOTEBOOKS / "linear_chain.ipynb")
    target = tmp_path / f"linear_chain{suffix}"
    jupytext.write(nb, target, fmt=fmt)
    return target


def _same_app(text_path: Path) -> None:
    ipynb = parse_notebook(NOTEBOOKS / "linear_chain.ipynb").to_dict()
    text = parse_notebook(text_path).to_dict()
    assert text["notebook"] == str(text_path.resolve())
    ipynb.pop("notebook"), text.pop("notebook")
    assert text == ipynb
    assert [e["name"] for e in text["executors"]] == ["extract", "transform", "report"]


@pytest.mark.parametrize(("fmt", "suffix"), [("py:percent", ".py"), ("md:myst", ".md")])
def test_text_notebook_parses_as_the_ipynb(jupytext, tmp_path: Path, fmt: str, suffix: str) -> None:  # noqa: ANN001
    path = _convert(jupytext, tmp_path, fmt, suffix)
    _same_app(path)


def test_percent_py_magics_are_commented_and_read_back(jupytext, tmp_path: Path) -> None:  # noqa: ANN001
    path = _convert(jupytext, tmp_path, "py:percent", ".py")
    text = path.read_text(encoding="utf-8")
    assert "# %%executor extract --outputs readings" in text  # jupytext comments magics out in .py
    app = parse_notebook(path)
    assert app.executors[0].name == "extract" and app.executors[0].outputs == ["readings"]
    assert app.name == "linear-chain"  # from `# %scanflow_app linear-chain`


def test_headerless_percent_py_is_a_python_notebook(tmp_path: Path, jupytext) -> None:  # noqa: ANN001
    path = tmp_path / "plain_cells.py"
    path.write_text("# %% [markdown]\n# Prose\n\n# %%\n# %%executor make --outputs x\nx = 1\n\n"
                    "# %%\n# %%executor use --inputs x\nprint(x)\n", encoding="utf-8")
    app = parse_notebook(path)
    assert app.kernel_name == "python3"
    assert not [m for m in app.messages if m.code == "no-kernelspec"]
    assert [(e.name, e.cell) for e in app.executors] == [("make", 1), ("use", 2)]  # jupytext's cells


def test_script_without_cell_markers_is_refused_naming_the_format(tmp_path: Path, jupytext) -> None:  # noqa: ANN001
    path = tmp_path / "script.py"
    path.write_text("x = 1\nprint(x)\n", encoding="utf-8")
    with pytest.raises(NotebookReadError) as err:
        parse_notebook(path)
    msg = err.value.message
    assert msg.code == "not-a-notebook"
    assert "percent-format" in msg.text and "script.py" in msg.text
    assert "# %%" in msg.fix and "jupytext --to py:percent" in msg.fix


def test_undecodable_text_notebook_is_refused(tmp_path: Path, jupytext) -> None:  # noqa: ANN001
    path = tmp_path / "binary.md"
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(NotebookReadError) as err:
        parse_notebook(path)
    assert err.value.message.code == "not-a-notebook" and "MyST" in err.value.message.text
