"""Third-party imports that are slow for no use of ours, deferred until really used.

`jsonschema` (imported by nbformat, so by every step run, `scanflow inspect` and the CLI)
imports `rfc3987_syntax` when it is installed (jupyter-events pulls it in), and that module
builds a Lark grammar at import: ≈0.9 s of CPU in every fresh process, for the `iri` string
format that no notebook schema uses. `install()` puts a stand-in in its place whose
`is_valid_syntax` (the one name jsonschema takes) and every other attribute import the real
module on first use, so `iri` checks still behave exactly as before.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

__all__ = ["install"]

_NAME = "rfc3987_syntax"


class _Deferred(types.ModuleType):
    """Stands in for `rfc3987_syntax` until something uses it."""

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") and attr.endswith("__"):  # probes by the import system: no import
            raise AttributeError(attr)
        return getattr(_real(), attr)


def _real() -> types.ModuleType:
    """Import the real module in place of the stand-in (once) and return it."""
    current = sys.modules.get(_NAME)
    if isinstance(current, _Deferred):
        del sys.modules[_NAME]
        try:
            return importlib.import_module(_NAME)
        except BaseException:
            sys.modules[_NAME] = current
            raise
    return current if current is not None else importlib.import_module(_NAME)


def _is_valid_syntax(*args: Any, **kwargs: Any) -> Any:
    return _real().is_valid_syntax(*args, **kwargs)


def install() -> None:
    """Defer `rfc3987_syntax` in this process (no-op once jsonschema or it is imported)."""
    if _NAME in sys.modules or "jsonschema" in sys.modules:
        return
    try:
        spec = importlib.util.find_spec(_NAME)
    except (ImportError, ValueError):
        return
    if spec is None:
        return
    stand_in = _Deferred(_NAME, "deferred by scanflow_jupyter: imported on first use")
    stand_in.__spec__ = spec  # importlib.util.find_spec(name) answers as for the real module
    if spec.submodule_search_locations is not None:  # a package: its submodules stay importable
        stand_in.__path__ = list(spec.submodule_search_locations)
    stand_in.is_valid_syntax = _is_valid_syntax  # type: ignore[attr-defined]
    sys.modules[_NAME] = stand_in
