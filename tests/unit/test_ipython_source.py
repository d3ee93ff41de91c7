"""notebook.ipython_source: one IPython-aware reading of cell bodies for every analysis."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from scanflow_jupyter.notebook import ipython_source
from scanflow_jupyter.notebook.ipython_source import (
    MAGIC_CALL,
    IPythonSourceError,
    analyse,
    python_source,
    python_text,
)
from scanflow_jupyter.notebook.parser import cell_source
from scanflow_jupyter.runtime.cache import normalize_code

ROOT = Path(__file__).resolve().parents[2]


def stored(tree: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


def loaded(tree: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def test_plain_python_is_read_as_is():
    src = "import os\nx = os.getcwd()  # what?\ns = '''\n%not a magic\n!nor this\n'''"
    code = analyse(src)
    assert ast.dump(code.tree) == ast.dump(ast.parse(src)) and code.magics == []
    assert python_source(src) == src and python_text(src) == src


def test_shell_capture_assigns_its_target():
    code = analyse("files = !ls data\nn = len(files)")
    assert stored(code.tree) == {"files", "n"}
    assert [(m.kind, m.text, m.line) for m in code.magics] == [("getoutput", "ls data", 1)]
    assert MAGIC_CALL in loaded(code.tree)


def test_shell_command_inside_a_block_keeps_its_line():
    code = analyse("def f():\n    x = 1\n    !echo {x}\n    return x")
    assert [(m.kind, m.text, m.line) for m in code.magics] == [("system", "echo {x}", 3)]
    assert code.magic_text() == "echo {x}"


def test_time_line_magic_runs_its_statement_in_the_namespace():
    code = analyse("%time y = f(a)\nz = y")
    assert stored(code.tree) == {"y", "z"} and {"f", "a"} <= loaded(code.tree)
    first = code.tree.body[0]
    assert isinstance(first, ast.Assign) and first.lineno == 1
    assert [(m.kind, m.name, m.text) for m in code.magics] == [("line", "time", "y = f(a)")]


def test_time_as_an_expression_gives_its_value():
    code = analyse("x = %time f(2)")
    assert ast.unparse(code.tree) == "x = f(2)"


def test_timeit_assigns_nothing():
    code = analyse("%timeit -n 1 y = f()")
    assert stored(code.tree) == set()
    assert [(m.name, m.text) for m in code.magics] == [("timeit", "-n 1 y = f()")]


def test_capture_cell_magic_body_is_code_with_cell_line_numbers():
    code = analyse("%%capture out\nimport numpy as np\n%time arr = np.ones(3)\ntotal = arr.sum()")
    assert stored(code.tree) == {"out", "arr", "total"}
    assert [type(s).__name__ for s in code.tree.body] == ["Assign", "Import", "Assign", "Assign"]
    assert [s.lineno for s in code.tree.body] == [1, 2, 3, 4]
    assert [(m.kind, m.name) for m in code.magics] == [("cell", "capture"), ("line", "time")]


def test_time_cell_magic_and_leading_blank_lines():
    code = analyse("\n%%time\nx = 1")
    assert stored(code.tree) == {"x"} and code.tree.body[0].lineno == 3


def test_non_python_cell_magic_is_opaque_but_its_body_is_text():
    code = analyse("%%bash -s {n}\necho $n\nimport os")
    assert [type(s).__name__ for s in code.tree.body] == ["Expr"] and ipython_source.is_magic(code.tree.body[0])
    assert "echo $n" in code.magic_text() and "{n}" in code.magic_text()
    assert python_text("%%bash\necho hi\nls").split("\n") == ["pass", "", ""]


def test_help_and_line_magics_are_magics():
    code = analyse("df?\n%matplotlib inline\nx = 1")
    assert [(m.name, m.text) for m in code.magics] == [("pinfo", "df"), ("matplotlib", "inline")]
    assert stored(code.tree) == {"x"}


def test_run_targets_are_listed():
    code = analyse("%run helpers.ipynb\n%run -m pkg.mod\nx = v")
    assert code.runs() == ["helpers.ipynb", "-m pkg.mod"]


def test_users_own_get_ipython_is_left_as_written():
    code = analyse("!ls\nns = get_ipython().user_ns")
    assert "get_ipython" in loaded(code.tree)


def test_syntax_errors_name_the_line_of_the_body():
    with pytest.raises(SyntaxError) as err:
        analyse("files = !ls\nx = (1 +\n")
    assert err.value.lineno == 2
    with pytest.raises(SyntaxError) as err:
        analyse("%%capture\n%time w = 3\ny = ]")
    assert err.value.lineno == 3


def test_ipython_failure_is_a_syntax_error_saying_so(monkeypatch):
    """A fault we cannot cause for real (IPython's transformer raising): patched on IPython's class."""
    from IPython.core.inputtransformer2 import TransformerManager

    def boom(self, cell):
        raise ValueError("tokenizer gave up")

    monkeypatch.setattr(TransformerManager, "transform_cell", boom)
    ipython_source._transform.cache_clear()  # translations are remembered
    with pytest.raises(IPythonSourceError, match="IPython cannot read this code .*tokenizer gave up") as err:
        analyse("x = !ls")
    assert err.value.lineno == 1
    assert python_text("x = !ls") == "x = !ls"  # never raises
    ipython_source._transform.cache_clear()


def test_python_text_keeps_line_numbers():
    text = python_text("%time x = 1\nif x:\n    !ls\ny = 2")
    assert len(text.rstrip("\n").split("\n")) == 4
    ast.parse(text)


def _plain_code_cells() -> list[str]:
    cells = []
    for nb in sorted([*ROOT.glob("notebooks/*.ipynb"), *ROOT.glob("tutorials/*/*.ipynb")]):
        for cell in json.loads(nb.read_text())["cells"]:
            if cell["cell_type"] == "code":
                body = "\n".join(cell_source(cell).split("\n")[1:]) if cell_source(cell).startswith("%%") else cell_source(cell)
                try:
                    ast.parse(body)
                except SyntaxError:
                    continue
                cells.append(body)
    return cells


def test_cache_key_code_of_plain_python_is_unchanged():
    """Without magics the key's code is what it always was: `ast.unparse(ast.parse(body))`."""
    cells = _plain_code_cells()
    assert len(cells) > 10
    for body in cells:
        assert normalize_code(body) == ast.unparse(ast.parse(body))


def test_cache_key_code_tells_magics_apart():
    assert normalize_code("%time y = f()") != normalize_code("y = f()")
    assert normalize_code("!ls a") != normalize_code("!ls b")
    assert normalize_code("%%capture\nx = 1  # note") == normalize_code("%%capture\nx = 1")
    assert normalize_code("%%bash\necho 1") != normalize_code("%%bash\necho 2")


def test_capture_with_options_binds_its_output_name():
    assert stored(analyse("%%capture --no-stderr --no-display out\nx = 1").tree) == {"out", "x"}


def test_a_nul_byte_is_a_syntax_error():
    with pytest.raises(SyntaxError):
        analyse("x = !ls\ny = '\0'")
