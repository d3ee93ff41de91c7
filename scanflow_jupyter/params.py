"""Pipeline parameters given as `-p KEY=VALUE`, typed exactly as papermill's CLI types them."""

from __future__ import annotations

from typing import Any


def parse_param_value(text: str) -> Any:
    """`True`/`False` -> bool, `None` -> None, then int, then float, else the string itself."""
    if text in ("True", "False"):
        return text == "True"
    if text == "None":
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def parse_params(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """`["lr=0.1", "name=x"]` -> `{"lr": 0.1, "name": "x"}`; ValueError names a malformed item."""
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
