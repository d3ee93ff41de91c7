"""The `ast.parse` lock (CPython gh-106905 workaround): installed where parsing happens on worker
threads (`run_notebook`, the server extension, the agent service), never on import."""

from __future__ import annotations

import ast
import subprocess
import sys
import threading

import pytest

from scanflow_jupyter import _ast_guard

NOT_ON_IMPORT = """
import ast
import scanflow_jupyter, scanflow_jupyter.magics, scanflow_jupyter.notebook.parser
from IPython.testing.globalipapp import get_ipython
scanflow_jupyter.load_ipython_extension(get_ipython())
assert not getattr(ast.parse, "_scanflow_guarded", False), "importing or loading the magics patched ast.parse"
from scanflow_jupyter.runtime import runner
assert not getattr(ast.parse, "_scanflow_guarded", False), "importing the runner patched ast.parse"
"""


def test_importing_and_loading_the_magics_leaves_ast_parse_alone() -> None:
    proc = subprocess.run([sys.executable, "-c", NOT_ON_IMPORT], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.skipif(sys.version_info >= (3, 13), reason="the guard is only installed before Python 3.13")
def test_ast_parse_is_serialized_across_threads_once_installed() -> None:
    _ast_guard.install()
    done = threading.Event()

    def parse() -> None:
        ast.literal_eval("{'a': [1, 2]}")  # goes through ast.parse
        done.set()

    with _ast_guard._LOCK:
        worker = threading.Thread(target=parse)
        worker.start()
        assert not done.wait(0.3), "ast.parse ran while another thread held the guard"
    assert done.wait(5)
    worker.join()


def test_install_is_idempotent_and_keeps_parse_working() -> None:
    _ast_guard.install()
    before = ast.parse
    _ast_guard.install()
    assert ast.parse is before
    assert isinstance(ast.parse("x = 1"), ast.Module)
