"""JSON lines between Scanflow and its child processes: one JSON object per line.

Two channels use it: a step executor's progress events on stdout (`execute_step` ->
local/docker backends, Argo's `parse_log`), each line prefixed with `EVENT_PREFIX` so it stands
out from the step's own prints; and the MLflow recorder's requests/replies (no prefix). The wire
format is fixed: old step logs must keep parsing. Standard library only (imported by light modules).
"""

from __future__ import annotations

import json
from typing import IO, Any

EVENT_PREFIX = "\x1escanflow-event "


def encode(message: dict[str, Any], prefix: str = "", default: Any = None) -> str:
    """One message as one line (with its newline); `default` as for `json.dumps`."""
    return prefix + json.dumps(message, default=default) + "\n"


def write_message(stream: IO[bytes], message: dict[str, Any]) -> None:
    """Write one unprefixed message to a binary stream (the recorder's pipes)."""
    stream.write(encode(message).encode("utf-8"))


def event_line(kind: str, **data: Any) -> str:
    """A step executor's event line: `EVENT_PREFIX` + ``{"t": kind, ...}``; values JSON can't hold become str."""
    return encode({"t": kind, **data}, prefix=EVENT_PREFIX, default=str)


def load_message(raw: str | bytes) -> dict[str, Any]:
    """The JSON object on one line; ValueError if it is not JSON or not an object."""
    message = json.loads(raw)
    if not isinstance(message, dict):
        raise ValueError(f"expected a JSON object, got {type(message).__name__}")
    return message


def parse_event(line: str) -> dict[str, Any] | None:
    """The event on a step output line, or None for a plain line (not prefixed, or not a JSON object)."""
    if not line.startswith(EVENT_PREFIX):
        return None
    try:
        return load_message(line[len(EVENT_PREFIX):])
    except ValueError:
        return None


def split_lines(raw: str) -> list[str]:
    """A whole log's lines, split at "\\n" only (`str.splitlines` also splits at the \\x1e of `EVENT_PREFIX`)."""
    return raw.split("\n")
