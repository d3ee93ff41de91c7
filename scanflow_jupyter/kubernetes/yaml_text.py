"""YAML text of manifests and Workflows, the same whatever else is imported.

hera patches PyYAML's global SafeRepresenter when it is imported, so `yaml.safe_dump` output would
depend on import order. This dumper owns its string presenter: multi-line strings as literal
blocks, YAML 1.1 booleans-in-disguise (`y`, `n`, …) quoted so every parser reads a string.
"""

from __future__ import annotations

from typing import Any

import yaml

_YAML11_BOOLISH = {"y", "Y", "n", "N", "yes", "Yes", "YES", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF"}


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """SafeDumper (libyaml when available) with its own string presenter."""


def _present_str(dumper: Any, data: str) -> Any:
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    if data in _YAML11_BOOLISH:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style='"')
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _present_str)


def dump(doc: Any) -> str:
    """One YAML document, keys in insertion order."""
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)


def dump_all(docs: list[Any]) -> str:
    """Several YAML documents separated by `---`."""
    return yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)
