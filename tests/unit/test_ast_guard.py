"""The process-wide `ast.parse` lock (CPython gh-106905 workaround)."""

from __future__ import annotations

import ast
import sys
import threading

import pytest

import scanflow_jupyter  # noqa: F401 - installs the guard
from scanflow_jupyter import _ast_guard


@pytest.mark.skipif(sys.version_info >= (3, 13), reason="the guard is only installed before Python 3.13")
def test_ast_parse_is_serialized_across_threads():
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


def test_install_is_idempotent_and_keeps_parse_working():
    before = ast.parse
    _ast_guard.install()
    assert ast.parse is before
    assert isinstance(ast.parse("x = 1"), ast.Module)
