"""Kinds of values that must never be passed between steps (live iterators, files, locks, sockets ...)."""

from __future__ import annotations

import io
import types
from typing import Any

from scanflow_jupyter.data.serializers.base import GENERIC_HINT


def known_unpicklable(obj: Any) -> tuple[str, str] | None:
    """(reason, hint) for kinds of objects that must never be passed, else None."""
    if isinstance(obj, (types.GeneratorType, types.AsyncGeneratorType, types.CoroutineType)):
        return (
            "generators and coroutines are live iterators of the kernel that created them",
            "materialize it first (e.g. list(x)) or create it inside the consuming step",
        )
    if isinstance(obj, types.ModuleType):
        return (
            "modules are not data",
            "import the module in %%setup or in the consuming step instead",
        )
    if isinstance(obj, io.IOBase) and not isinstance(obj, (io.BytesIO, io.StringIO)):
        return (
            "open files belong to the process that opened them",
            "pass the file's path and open it inside the consuming step",
        )
    modules = {(getattr(c, "__module__", None) or "") for c in type(obj).__mro__}
    if modules & {"_thread", "threading"} and "lock" in type(obj).__name__.lower():
        return ("locks cannot be shared between processes", GENERIC_HINT)
    if modules & {"socket", "_socket", "ssl", "_ssl"}:
        return ("sockets belong to the process that opened them", GENERIC_HINT)
    if modules & {"sqlite3", "_sqlite3"}:
        return (
            "database connections and cursors belong to the process that opened them",
            "pass the database path or URL and connect inside the consuming step (or in %%setup)",
        )
    return None


