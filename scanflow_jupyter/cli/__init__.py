"""The `scanflow` command line: inspect and run notebooks as pipelines.

Exit codes: 0 success, 1 a step failed, 2 invalid input (nothing executed, no MLflow run),
130 cancelled (Ctrl-C / SIGTERM). Heavy modules are imported inside commands only.
One module per command group; the root group below adds them explicitly. The `%scanflow`
line magic parses its arguments with these same command objects (`grammar.py`).
"""

from __future__ import annotations

import click

from scanflow_jupyter import __version__
from scanflow_jupyter.cli.agents import agents
from scanflow_jupyter.cli.containers import build, build_base, tracker
from scanflow_jupyter.cli.importing import import_command
from scanflow_jupyter.cli.kubernetes import deploy, export, status, undeploy
from scanflow_jupyter.cli.pipeline import (
    _console,
    _parse_params,
    _print_messages,
    inspect,
    run,
    runs,
)
from scanflow_jupyter.cli.services import serve, services
from scanflow_jupyter.cli.tracking import attach as attach_runs_sync

__all__ = ["main", "_console", "_parse_params", "_print_messages"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="scanflow")
def main() -> None:
    """Scanflow for Jupyter: run notebooks whose magics declare pipeline steps."""


for _command in (inspect, run, runs, agents, build, build_base, tracker, deploy, undeploy, status, export,
                 import_command, serve, services):
    main.add_command(_command)
attach_runs_sync(main)  # `scanflow runs sync [RUN_ID]`; `scanflow runs` ends dead runners' MLflow runs
