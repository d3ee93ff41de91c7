"""The user's sidebar settings sent with a request, and how they reach the CLI subprocesses.

Precedence (one rule for every setting): the user's setting (request) > the server traitlet
(`c.Scanflow.<name>`) > the server's environment. An effective value is given to the child as
the environment variable the CLI reads (table below); when neither the user nor the server sets
it, the child inherits the server's environment unchanged.
"""

from __future__ import annotations

from typing import Any

# setting → environment variable read by the CLI / backends / builder
ENV_VARS: dict[str, str] = {
    "tracking_uri": "MLFLOW_TRACKING_URI",
    "registry": "SCANFLOW_REGISTRY",
    "kube_context": "SCANFLOW_K8S_CONTEXT",
    "namespace": "SCANFLOW_K8S_NAMESPACE",
    "base_image": "SCANFLOW_BASE_IMAGE",
}
NAMES = tuple(ENV_VARS)
MAX_LENGTH = 2048


class SettingsError(ValueError):
    """A settings value is unusable (→ 400); `fix` says what to send instead."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


def check_value(name: str, value: Any, where: str = "settings") -> str:
    """One setting: a string of one line ('' = not set); surrounding spaces are dropped."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise SettingsError(f"{where}.{name} must be a string, not {type(value).__name__}",
                            f'send e.g. "{name}": "value", or leave it out to use the server default')
    if any(c in value for c in "\r\n\0"):
        raise SettingsError(f"{where}.{name} contains a line break or NUL character",
                            "give a single-line value (check the Scanflow settings for a pasted newline)")
    if len(value) > MAX_LENGTH:
        raise SettingsError(f"{where}.{name} is {len(value)} characters long (limit {MAX_LENGTH})",
                            "give a shorter value")
    return value.strip()


def parse_settings(raw: Any, where: str = "settings") -> dict[str, str]:
    """The `settings` object of a request body → {name: value} of the non-empty settings."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SettingsError(f"`{where}` must be a JSON object, not {type(raw).__name__}",
                            f"send {{{', '.join(repr(n) for n in NAMES)}}} (each optional)")
    unknown = sorted(set(raw) - set(NAMES))
    if unknown:
        raise SettingsError(f"`{where}` has unknown keys: {', '.join(map(str, unknown))}",
                            f"use only: {', '.join(NAMES)}")
    values = {name: check_value(name, raw.get(name), where) for name in NAMES}
    return {name: value for name, value in values.items() if value}


def effective(user: dict[str, str], config: Any) -> dict[str, str]:
    """User setting, else the server traitlet; only the names that end up set."""
    values = {name: user.get(name) or getattr(config, name, "") or "" for name in NAMES}
    return {name: value for name, value in values.items() if value}


def environment(values: dict[str, str]) -> dict[str, str]:
    """The environment variables that carry `values` (from `effective`) to a CLI subprocess."""
    return {ENV_VARS[name]: value for name, value in values.items() if name in ENV_VARS and value}
