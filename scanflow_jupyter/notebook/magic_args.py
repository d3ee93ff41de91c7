"""The argument grammar of every Scanflow magic: one argparse definition per magic.

Both the IPython magics (live kernel) and the kernel-free notebook parser call
`parse_magic_line`, so the two can never disagree about what a magic line means.
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass

CELL_MAGICS = ("executor", "service", "agent", "setup", "params")
LINE_MAGICS = ("scanflow_app", "scanflow")
AGENT_TEMPLATES = ("monitor", "analyzer", "planner", "executor")


class MagicArgError(ValueError):
    """A magic line that cannot be parsed; `text` and `fix` are shown to the user."""

    def __init__(self, code: str, text: str, fix: str) -> None:
        super().__init__(f"{text} Fix: {fix}")
        self.code = code
        self.text = text
        self.fix = fix


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise MagicArgError("bad-arguments", f"{self.prog}: {message}.", _usage(self))

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        raise MagicArgError("bad-arguments", message or f"{self.prog}: invalid arguments.", _usage(self))


def _usage(parser: argparse.ArgumentParser) -> str:
    """`%%executor NAME [--opt ...]`: the name first, as users write it."""
    words = [parser.prog]
    positionals = [a.dest.upper() for a in parser._actions if not a.option_strings]
    words += positionals
    for action in parser._actions:
        if action.option_strings:
            opt = action.option_strings[0]
            if action.nargs == 0:
                words.append(f"[{opt}]")
            elif action.nargs == "+":
                words.append(f"[{opt} {action.metavar or action.dest.upper()} ...]")
            else:
                words.append(f"[{opt} {action.metavar or action.dest.upper()}]")
    return "write it as " + " ".join(words) + "."


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite positive number of seconds, got {text}")
    return value


_non_negative_int.__name__ = "whole-number"
_positive_int.__name__ = "whole-number"
_positive_float.__name__ = "number-of-seconds"


def _build_parsers() -> dict[str, _Parser]:
    p: dict[str, _Parser] = {}

    app = _Parser(prog="%scanflow_app", add_help=False, allow_abbrev=False)
    app.add_argument("name")
    app.add_argument("--team", default=None)
    p["scanflow_app"] = app

    ex = _Parser(prog="%%executor", add_help=False, allow_abbrev=False)
    ex.add_argument("name")
    ex.add_argument("--requires", nargs="+", action="extend", default=[], metavar="STEP")
    ex.add_argument("--inputs", nargs="+", action="extend", default=[], metavar="VAR")
    ex.add_argument("--outputs", nargs="+", action="extend", default=[], metavar="VAR")
    ex.add_argument("--image", default=None, metavar="REF")
    ex.add_argument("--requirements", nargs="+", action="extend", default=[], metavar="PKG")
    ex.add_argument("--retries", type=_non_negative_int, default=0, metavar="N")
    ex.add_argument("--timeout", type=_positive_float, default=None, metavar="SECONDS")
    ex.add_argument("--cpu", default=None)
    ex.add_argument("--memory", default=None)
    ex.add_argument("--gpu", type=_non_negative_int, default=None)
    ex.add_argument("--no-cache", dest="no_cache", action="store_true")
    ex.add_argument("--deps", nargs="+", action="extend", default=[], metavar="PATH")
    ex.add_argument("--metrics", nargs="+", action="extend", default=[], metavar="METRIC")  # pipeline metrics
    p["executor"] = ex

    svc = _Parser(prog="%%service", add_help=False, allow_abbrev=False)
    svc.add_argument("name")
    svc.add_argument("--model", default=None, metavar="URI")
    svc.add_argument("--replicas", type=_positive_int, default=1, metavar="N")
    p["service"] = svc

    agent = _Parser(prog="%%agent", add_help=False, allow_abbrev=False)
    agent.add_argument("name")
    agent.add_argument("--template", choices=AGENT_TEMPLATES, default=None)
    p["agent"] = agent

    for bare in ("setup", "params"):
        p[bare] = _Parser(prog=f"%%{bare}", add_help=False, allow_abbrev=False)
    return p


PARSERS = _build_parsers()


@dataclass
class MagicLine:
    """A parsed magic line: which magic and its arguments."""

    magic: str
    args: argparse.Namespace


def parse_magic_line(magic: str, arg_text: str) -> MagicLine:
    """Parse the arguments of magic `magic` (without `%`/`%%`); raise MagicArgError if bad."""
    parser = PARSERS[magic]
    try:
        words = shlex.split(arg_text)
    except ValueError as exc:
        raise MagicArgError(
            "bad-quoting", f"{parser.prog}: {str(exc).lower().rstrip('.')}.", "close the quote."
        ) from exc
    if "#" in arg_text:  # a comment starts at a word beginning with '#', not inside `x#y`
        first = next((i for i, w in enumerate(words) if w.startswith("#")), len(words))
        words = words[:first]
    if words and magic in ("setup", "params"):
        raise MagicArgError(
            "unexpected-arguments",
            f"%%{magic} takes no arguments, got '{' '.join(words)}'.",
            f"write the line as %%{magic} alone.",
        )
    known, unknown = parser.parse_known_args(words)
    if unknown:
        opts = [w for w in unknown if w.startswith("-")]
        if opts:
            valid = sorted({o for a in parser._actions for o in a.option_strings})
            raise MagicArgError(
                "unknown-option",
                f"{parser.prog}: unknown option {', '.join(opts)}.",
                f"use one of {', '.join(valid)}.",
            )
        raise MagicArgError(
            "unexpected-arguments",
            f"{parser.prog}: unexpected argument(s) {' '.join(unknown)}.",
            "give one name, then options; quote values that contain spaces.",
        )
    return MagicLine(magic, known)
