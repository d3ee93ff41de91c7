"""One grammar for `scanflow CMD ...` and `%scanflow CMD ...`: the magic parses with the CLI's click commands."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click

# `%scanflow NAME` parsed by the CLI command of the same name; NOTEBOOK is supplied by the magic.
SHARED_COMMANDS = ("run", "build", "deploy", "status")


class GrammarError(ValueError):
    """The arguments are refused; `message` is click's own text (what `scanflow` prints after `Error:`)."""

    def __init__(self, message: str, usage: str) -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage


@dataclass
class Parsed:
    """Parameters click derived from one argument vector (`helped`: --help was asked and printed)."""

    name: str
    params: dict[str, Any]
    helped: bool = False


def command(name: str) -> click.Command:
    """The click command `scanflow NAME` (KeyError if there is none)."""
    from scanflow_jupyter.cli import main

    return main.commands[name]


def parse(name: str, argv: list[str]) -> Parsed:
    """Parse `scanflow NAME ARGV...` exactly as the CLI does, without running it."""
    from scanflow_jupyter.cli import main

    cmd = command(name)
    root = click.Context(main, info_name="scanflow", **main.context_settings)  # -h/--help as in the CLI
    try:
        ctx = cmd.make_context(name, list(argv), parent=root)
    except click.exceptions.Exit:  # --help: click has printed the help to stdout
        return Parsed(name, {}, helped=True)
    except click.UsageError as exc:
        usage = exc.ctx.get_usage() if exc.ctx is not None else ""
        raise GrammarError(exc.format_message(), usage) from None
    return Parsed(name, dict(ctx.params))


def accepts_option(name: str, flag: str) -> bool:
    """Whether `scanflow NAME` has option FLAG (e.g. `--backend`); False for an unknown command."""
    from scanflow_jupyter.cli import main

    cmd = main.commands.get(name)
    return cmd is not None and any(flag in p.opts for p in cmd.params if isinstance(p, click.Option))
