"""Pipeline parameters: `-p KEY=VALUE` and `-f params.yaml` values, typed and checked.

Values parse as YAML with the YAML 1.2 core rules (so `-p b=[1,2]` is a list, `-p lr=1e-3`
a float, `-p mode=on` the string `'on'`), plus Python's `None`/`True`/`False` spellings
(papermill compatibility). An empty value is the empty string. A value must fit the type
of the parameter's literal in the parameters cell (`check_param_types`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema scalars only (no `yes`/`on`, octal `010`, dates)."""


_Loader.yaml_implicit_resolvers = {}
_SCALARS: list[tuple[str, str, str, Any]] = [
    ("null", r"~|null|Null|NULL|None", "~nN", lambda text: None),
    ("bool", r"true|True|TRUE|false|False|FALSE", "tTfF", lambda text: text.lower() == "true"),
    ("int", r"[-+]?[0-9]+", "-+0123456789", int),
    ("hex", r"0x[0-9a-fA-F]+", "0", lambda text: int(text, 16)),
    ("oct", r"0o[0-7]+", "0", lambda text: int(text[2:], 8)),
    ("float", r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?", "-+.0123456789", float),
    ("inf", r"[-+]?\.(?:inf|Inf|INF)", "-+.", lambda text: float(text.replace(".", ""))),
    ("nan", r"\.(?:nan|NaN|NAN)", ".", lambda text: float("nan")),
]
for _name, _pattern, _first, _convert in _SCALARS:
    _tag = f"tag:scanflow,2026:{_name}"
    _Loader.add_implicit_resolver(_tag, re.compile(f"^(?:{_pattern})$"), list(_first))
    _Loader.add_constructor(_tag, lambda loader, node, _c=_convert: _c(loader.construct_scalar(node)))


def parse_param_value(text: str) -> Any:
    """One `-p` value as YAML: `[1,2]` -> list, `{a: 1}` -> dict, `0.1` -> float, `abc` -> str."""
    if text == "":
        return ""
    try:
        value = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except (yaml.YAMLError, RecursionError):
        return text  # not YAML (e.g. `a: b: c`): the text itself, as papermill would
    if "#" in text and (value is None or isinstance(value, str)):
        return text  # `-p tag=#1` / `-p s=a #b`: a '#' on the command line is not a YAML comment
    return value


def parse_params(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """`["lr=0.1", "b=[1,2]"]` -> `{"lr": 0.1, "b": [1, 2]}`; ValueError names a malformed item."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ValueError(
                f"-p expects KEY=VALUE, got '{item}'. Fix: write one -p per parameter, "
                "e.g. -p learning_rate=0.1 -p epochs=5."
            )
        params[key] = parse_param_value(value)
    return params


def load_params_file(path: str | Path) -> dict[str, Any]:
    """A YAML (or JSON) mapping of parameter name -> value; ValueError says what is wrong."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read parameters file {p}: {exc.strerror or exc}. "
                         "Fix: give the path of a YAML file such as `lr: 0.1`.") from exc
    try:
        doc = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ValueError(f"parameters file {p} is not valid YAML: {str(exc).splitlines()[0]}. "
                         "Fix: write one `name: value` per line.") from exc
    except RecursionError:
        raise ValueError(f"parameters file {p} nests too deeply. Fix: write one `name: value` per line.") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict) or not all(isinstance(k, str) and k.isidentifier() for k in doc):
        raise ValueError(f"parameters file {p} must be a mapping of parameter names to values "
                         "(`lr: 0.1`). Fix: write one `name: value` per line at the top level.")
    return doc


_TYPE_NAMES = {bool: "boolean", int: "whole number", float: "number", str: "string", list: "list",
               tuple: "list", dict: "mapping", type(None): "null"}


def type_name(value: Any) -> str:
    """A user-facing name of the type of `value` ("number", "string", "list", ...)."""
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def fits(default: Any, value: Any) -> bool:
    """Does `value` fit a parameter whose literal default is `default`?

    `None` defaults accept anything; int fits float; bool fits only bool; lists fit
    lists/tuples; otherwise the types must match.
    """
    if default is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


def _example(default: Any) -> str:
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, int):
        return f"a whole number such as {default!r}"
    if isinstance(default, float):
        return f"a number such as {default!r}"
    if isinstance(default, str):
        return f"text (quote text that looks like a number: -p name=\"'{default}'\")"
    if isinstance(default, (list, tuple)):
        return "a list such as [1, 2]"
    if isinstance(default, dict):
        return "a mapping such as {a: 1}"
    return f"a {type_name(default)}"


def check_param_types(defaults: dict[str, Any], given: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(parameter, problem, fix) for each given value that does not fit its parameter's literal."""
    problems = []
    for name, value in given.items():
        if name not in defaults or fits(defaults[name], value):
            continue
        default = defaults[name]
        problems.append((
            name,
            f"parameter '{name}' takes a {type_name(default)} (its default in the parameters cell is "
            f"{default!r}), but the value given is the {type_name(value)} {value!r}.",
            f"give {_example(default)}, or make the default None in the parameters cell to accept any value.",
        ))
    return problems
