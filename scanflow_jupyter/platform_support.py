"""What the runtime may rely on here: the one place that decides Linux-only fast paths.

*Portable mode* (``SCANFLOW_PORTABLE=1``, or any platform that is not Linux) turns off what only
Linux offers: step kernels start the classic way (jupyter_client's own provisioner, ≈0.6 s each)
instead of being forked from the pre-loaded zygote, and nothing calls ``prctl``. Process
liveness is psutil everywhere (`process_liveness`), so it needs no switch.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

__all__ = ["PORTABLE_ENV", "is_linux", "package_source_mtime", "portable_mode", "portable_reason", "zygote_enabled"]

PORTABLE_ENV = "SCANFLOW_PORTABLE"


def is_linux() -> bool:
    return sys.platform.startswith("linux")


def portable_reason() -> str:
    """Why portable mode is on ('' when it is off)."""
    if os.environ.get(PORTABLE_ENV, "").strip().lower() in ("1", "true", "yes"):
        return f"{PORTABLE_ENV}={os.environ[PORTABLE_ENV]}"
    if not is_linux():
        return f"platform {sys.platform} is not Linux"
    return ""


def portable_mode() -> bool:
    """True when the runtime must not use Linux-only mechanisms (fork zygote, prctl)."""
    return bool(portable_reason())


def zygote_enabled() -> bool:
    """May step kernels be forked from the zygote? Not in portable mode, not with
    ``SCANFLOW_NO_ZYGOTE=1``, not where there is no ``os.fork``."""
    return not portable_mode() and os.environ.get("SCANFLOW_NO_ZYGOTE") != "1" and hasattr(os, "fork")


def package_source_mtime() -> float:
    """The newest modification time of this package's Python files: a long-lived process that
    imported it earlier (warm worker, warm recorder) runs stale code when this is newer."""
    newest = 0.0
    for path in Path(__file__).resolve().parent.rglob("*.py"):
        with contextlib.suppress(OSError):
            newest = max(newest, path.stat().st_mtime)
    return newest
