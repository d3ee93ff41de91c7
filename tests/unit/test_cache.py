"""Cache keys: comments and formatting never bust the cache; code, params, inputs do."""

from __future__ import annotations

from scanflow_jupyter.model import Application, CodeBlock, Executor
from scanflow_jupyter.runtime.cache import normalize_code, step_cache_key


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
