"""Is a process alive, and is it still the one we recorded? One answer for the whole package (psutil).

A process is *alive* when it exists and is not a zombie (exited, not yet reaped). A pid alone can
be reused by a later process, so records that must survive the process keep a
`ProcessIdentity`: the pid and its create time (seconds since the epoch, psutil's
`create_time`). Create times are compared within `CREATE_TIME_TOLERANCE`: on Linux the value is
the boot time (which the kernel may report a second apart after clock adjustments) plus the
process's start ticks. Works wherever psutil does (Linux, macOS, BSD, Windows); psutil is
imported on first use, so importing this module stays cheap for the CLI.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

__all__ = ["CREATE_TIME_TOLERANCE", "ProcessIdentity", "alive", "command_line", "command_text",
           "create_time", "ticks_to_create_time"]

CREATE_TIME_TOLERANCE = 1.0  # seconds


def _psutil() -> Any:
    import psutil

    return psutil


def create_time(pid: int | None) -> float | None:
    """The create time of process `pid` (seconds since the epoch), None if there is none."""
    if not pid or pid < 0:
        return None
    psutil = _psutil()
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def alive(pid: int | None, create_time: float | None = None) -> bool:
    """True if process `pid` exists and is not a zombie; with `create_time`, it must also be the
    process created then (a reused pid is not alive). A process we may not inspect counts as alive."""
    if not pid or pid < 0:
        return False
    psutil = _psutil()
    try:
        proc = psutil.Process(pid)
        if create_time is not None and abs(proc.create_time() - create_time) > CREATE_TIME_TOLERANCE:
            return False
        return proc.status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:  # ZombieProcess included
        return False
    except psutil.AccessDenied:
        return True
    except ValueError:  # pid out of range
        return False


def command_line(pid: int | None) -> list[str]:
    """The argv of process `pid`; [] if it is gone, a zombie or not ours to read."""
    if not pid or pid < 0:
        return []
    psutil = _psutil()
    try:
        return [str(a) for a in psutil.Process(pid).cmdline()]
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):  # ZombieProcess is a NoSuchProcess
        return []


def command_text(pid: int | None) -> str:
    """The command line of process `pid` joined by spaces ('' if unknown): for substring checks."""
    return " ".join(command_line(pid))


def ticks_to_create_time(ticks: str | int) -> float | None:
    """A Linux start time in clock ticks since boot (/proc/PID/stat field 22, as older records
    stored it) as a create time; None where it cannot be converted."""
    try:
        value = int(ticks)
    except (TypeError, ValueError):
        return None
    if not sys.platform.startswith("linux") or value < 0:
        return None
    return _psutil().boot_time() + value / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcessIdentity:
    """One process, ever: its pid and create time (JSON: ``{"pid": N, "create_time": T}``)."""

    pid: int
    create_time: float | None = None

    @classmethod
    def of(cls, pid: int | None = None) -> ProcessIdentity:
        """The identity of process `pid` (default: this one) as it is now."""
        pid = pid or os.getpid()
        return cls(pid, create_time(pid))

    def alive(self) -> bool:
        """The process still runs and is the same one (without a create time: the pid runs)."""
        return alive(self.pid, self.create_time)

    def to_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "create_time": self.create_time}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ProcessIdentity:
        """Read a record; one without ``create_time`` (older files) identifies by pid only."""
        value = doc.get("create_time")
        return cls(int(doc["pid"]), None if value is None else float(value))
