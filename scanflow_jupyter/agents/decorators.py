"""`@sensor`, `@rule` and `@actuator`: mark the functions of an `%%agent` cell.

A decorator only tags the function (attribute `__scanflow_agent__`) and returns it unchanged,
so the cell still runs, and its functions can still be called, in the live kernel. When the
agent process loads the cell (`agents.loader`), the specs are collected and scheduled.

Signatures the runtime calls (a function may take fewer leading arguments):

* `@sensor(every="30s")` / `@sensor(cron="0 * * * *")` / `@sensor()`: `fn(ctx)`
* `@sensor(on=new_run("churn"))`: `fn(ctx, events)` — the new MLflow runs / model versions
* `@actuator`: `fn(ctx, payload)` — reached with `POST /actuators/{name}` or `ctx.call(...)`
* `@rule(after="sensor_name")`: `fn(ctx, value)` after each successful run of that sensor;
  a bare `@rule` is a plain predicate the other functions call.

Importing this module is cheap (standard library only); croniter is imported only to check a
`cron=` expression.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ActuatorSpec",
    "AgentDefinitionError",
    "RuleSpec",
    "SensorSpec",
    "Trigger",
    "actuator",
    "collecting",
    "parse_duration",
    "rule",
    "sensor",
]

SPEC_ATTRIBUTE = "__scanflow_agent__"
TRIGGER_NAMES = ("every", "cron", "on")
MIN_INTERVAL_S = 0.05
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|sec|m|min|h|d)?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


class AgentDefinitionError(ValueError):
    """A decorator was used wrongly; `text` says what, `fix` says how to correct it."""

    def __init__(self, code: str, text: str, fix: str) -> None:
        super().__init__(f"{text} Fix: {fix}")
        self.code = code
        self.text = text
        self.fix = fix


def parse_duration(value: Any) -> float:
    """`"30s"`, `"0.5s"`, `"250ms"`, `"5m"`, `"1h"`, `"1d"` or a number of seconds -> seconds."""
    if isinstance(value, bool):
        seconds = None
    elif isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION_RE.match(value)):
        seconds = float(m.group(1)) * _UNIT_SECONDS[(m.group(2) or "s").lower()]
    else:
        seconds = None
    if seconds is None or not MIN_INTERVAL_S <= seconds < float("inf"):
        raise AgentDefinitionError(
            "bad-interval",
            f"{value!r} is not an interval of at least {MIN_INTERVAL_S:g} s.",
            'write a number of seconds or a string such as "500ms", "30s", "5m", "1h" or "1d".',
        )
    return seconds


def format_seconds(seconds: float) -> str:
    """`30.0` -> `30s`, `0.5` -> `0.5s`, `300` -> `5m`, `3600` -> `1h`."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def check_cron(expr: Any) -> str:
    """Return the cron expression if croniter accepts it (5 fields, or 6 with seconds)."""
    from croniter import croniter

    if not isinstance(expr, str) or not croniter.is_valid(expr):
        raise AgentDefinitionError(
            "bad-cron",
            f"{expr!r} is not a cron expression.",
            'write five fields "minute hour day-of-month month day-of-week", e.g. cron="0 * * * *" (hourly).',
        )
    return expr.strip()


@dataclass(frozen=True)
class Trigger:
    """When a sensor runs: `every` seconds, on a `cron` schedule, `on` an MLflow event, or `manual`."""

    kind: str
    every_s: float | None = None
    cron: str | None = None
    event: Any = None  # an events.EventSpec

    def describe(self) -> str:
        if self.kind == "every":
            return f"every {format_seconds(self.every_s or 0)}"
        if self.kind == "cron":
            return f"cron {self.cron}"
        if self.kind == "on":
            return f"on {self.event.describe()}"
        return "manual (POST /sensors/{name})"

    def short(self) -> str:
        """A compact form for tables: `every 30s`, `cron 0 * * * *`, `on new_run`, `manual`."""
        if self.kind == "on":
            return f"on {self.event.kind}"
        return "manual" if self.kind == "manual" else self.describe()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "text": self.describe(), "short": self.short()}
        if self.every_s is not None:
            out["every_s"] = self.every_s
        if self.cron is not None:
            out["cron"] = self.cron
        if self.event is not None:
            out["event"] = self.event.to_dict()
        return out


@dataclass
class SensorSpec:
    name: str
    fn: Callable[..., Any]
    trigger: Trigger
    doc: str = ""


@dataclass
class ActuatorSpec:
    name: str
    fn: Callable[..., Any]
    doc: str = ""
    builtin: bool = False


@dataclass
class RuleSpec:
    name: str
    fn: Callable[..., Any]
    after: str | None = None
    doc: str = ""


# -- collection (used by the loader while it executes a cell) --------------------------------


@dataclass
class _Collector:
    specs: list[Any] = field(default_factory=list)


_collectors: list[_Collector] = []


@contextmanager
def collecting() -> Iterator[list[Any]]:
    """Collect every spec the decorators create while the block runs (the loader's hook)."""
    collector = _Collector()
    _collectors.append(collector)
    try:
        yield collector.specs
    finally:
        _collectors.remove(collector)


def _register(fn: Callable[..., Any], spec: Any) -> Callable[..., Any]:
    try:
        setattr(fn, SPEC_ATTRIBUTE, spec)
    except (AttributeError, TypeError):  # e.g. a builtin; the collector still has the spec
        pass
    if _collectors:
        _collectors[-1].specs.append(spec)
    return fn


def _doc(fn: Callable[..., Any]) -> str:
    return (getattr(fn, "__doc__", None) or "").strip().split("\n")[0]


def _check_target(fn: Any, decorator: str, example: str) -> None:
    if not callable(fn):
        raise AgentDefinitionError(
            "bad-decorator-use",
            f"@{decorator} was given {fn!r}, not a function.",
            f"pass options by keyword and decorate a function, e.g. {example}.",
        )


def _check_name(name: Any, decorator: str) -> None:
    if name is not None and not (isinstance(name, str) and re.fullmatch(r"[A-Za-z_][\w-]{0,62}", name)):
        raise AgentDefinitionError(
            "bad-name",
            f"@{decorator}(name={name!r}) is not a valid name.",
            "use letters, digits, '_' and '-', starting with a letter (it becomes a URL path).",
        )


# -- the decorators ------------------------------------------------------------------------


def sensor(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    every: Any = None,
    cron: Any = None,
    on: Any = None,
    name: str | None = None,
) -> Any:
    """Mark `fn` as a sensor with exactly one trigger: `every=`, `cron=` or `on=` (none = manual)."""
    given = [k for k, v in (("every", every), ("cron", cron), ("on", on)) if v is not None]

    def wrap(f: Callable[..., Any]) -> Callable[..., Any]:
        _check_target(f, "sensor", '@sensor(every="30s")')
        sensor_name = name or f.__name__
        if len(given) > 1:
            raise AgentDefinitionError(
                "sensor-two-triggers",
                f"sensor '{sensor_name}' has {len(given)} triggers ({', '.join(g + '=' for g in given)}); "
                "a sensor has exactly one.",
                "keep one trigger, and write a second sensor for the other schedule, e.g. "
                f"@sensor({given[0]}=...) def {sensor_name}(ctx) and @sensor({given[1]}=...) def "
                f"{sensor_name}_{given[1]}(ctx) calling the same helper.",
            )
        _check_name(name, "sensor")
        if every is not None:
            trigger = Trigger("every", every_s=parse_duration(every))
        elif cron is not None:
            trigger = Trigger("cron", cron=check_cron(cron))
        elif on is not None:
            if not hasattr(on, "poll_s") or not hasattr(on, "describe"):
                raise AgentDefinitionError(
                    "bad-event",
                    f"sensor '{sensor_name}': on={on!r} is not an MLflow event.",
                    "use on=new_run('experiment'), on=metric_crosses('experiment', 'metric', above=0.9), "
                    "on=new_model_version('model') or on=new_predictions('service', min_rows=100) "
                    "(from scanflow_jupyter.agents).",
                )
            trigger = Trigger("on", event=on)
        else:
            trigger = Trigger("manual")
        return _register(f, SensorSpec(sensor_name, f, trigger, _doc(f)))

    if fn is not None:
        if given or not callable(fn):
            _check_target(fn, "sensor", '@sensor(every="30s")')
        return wrap(fn)
    return wrap


def actuator(fn: Callable[..., Any] | None = None, /, *, name: str | None = None) -> Any:
    """Mark `fn(ctx, payload)` as an actuator, reachable at `POST /actuators/{name}`."""

    def wrap(f: Callable[..., Any]) -> Callable[..., Any]:
        _check_target(f, "actuator", "@actuator")
        _check_name(name, "actuator")
        return _register(f, ActuatorSpec(name or f.__name__, f, _doc(f)))

    return wrap(fn) if fn is not None else wrap


def rule(
    fn: Callable[..., Any] | None = None, /, *, after: str | None = None, name: str | None = None
) -> Any:
    """Mark `fn` as a rule; with `after="sensor"` it runs as `fn(ctx, value)` after that sensor."""

    def wrap(f: Callable[..., Any]) -> Callable[..., Any]:
        _check_target(f, "rule", '@rule(after="my_sensor")')
        _check_name(name, "rule")
        if after is not None and not isinstance(after, str):
            raise AgentDefinitionError(
                "bad-rule",
                f"rule '{name or f.__name__}': after={after!r} is not a sensor name.",
                'name the sensor as a string, e.g. @rule(after="check_accuracy").',
            )
        return _register(f, RuleSpec(name or f.__name__, f, after, _doc(f)))

    return wrap(fn) if fn is not None else wrap
