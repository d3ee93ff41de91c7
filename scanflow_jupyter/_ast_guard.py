"""One lock around `ast.parse` for the whole process (a CPython < 3.13 defect, gh-106905).

Building AST objects on two threads at once can raise ``SystemError: AST constructor recursion
depth mismatch`` (the depth counter is per interpreter, not per thread). Scanflow parses notebook
code on worker threads (docker and kubernetes backends, tracking, the server extension), and
`ast.literal_eval` goes through `ast.parse` too, so the guard wraps `ast.parse` itself — but only
in processes that parse on worker threads, from where they start doing so (`run_notebook`, the
server extension, the agent service), never on import: a user's kernel that only loads the
magics keeps the interpreter's own `ast.parse`.
"""

from __future__ import annotations

import ast
import sys
import threading
from typing import Any

_LOCK = threading.RLock()


def install() -> None:
    """Serialize `ast.parse` (idempotent; nothing to do on Python ≥ 3.13)."""
    if sys.version_info >= (3, 13) or getattr(ast.parse, "_scanflow_guarded", False):
        return
    original = ast.parse

    def parse(*args: Any, **kwargs: Any) -> Any:
        with _LOCK:
            return original(*args, **kwargs)

    parse.__doc__ = original.__doc__
    parse.__wrapped__ = original  # type: ignore[attr-defined]
    parse._scanflow_guarded = True  # type: ignore[attr-defined]
    ast.parse = parse
