"""`scanflow serve` (one service in the foreground) and `scanflow services up|down|ls` (background).

Exit codes: 0 served / started; 1 (`services up`) some service failed to load; 2 the notebook,
the service name or the port is wrong; 3 (`serve`) the cell or the model cannot be served.
Heavy modules are imported inside the commands.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from scanflow_jupyter.cell_numbers import message_doc

_SERVE_OPTIONS = [
    click.option("--poll", "poll_s", type=float, default=5.0, show_default=True,
                 help="Seconds between checks of the model alias (hot swap)."),
    click.option("--log-sample", type=click.FloatRange(0.0, 1.0), default=1.0, show_default=True,
                 help="Fraction of requests written to the inference log."),
    click.option("--log-max-mb", type=click.FloatRange(min=0.1), default=64.0, show_default=True,
                 help="Size bound of the inference log; the oldest parts are deleted beyond it."),
    click.option("--no-log", is_flag=True, help="Write no inference log."),
]


def _serve_options(func: Any) -> Any:
    for option in reversed(_SERVE_OPTIONS):
        func = option(func)
    return func


def _options(poll_s: float, log_sample: float, log_max_mb: float, no_log: bool) -> dict[str, Any]:
    return {"poll_s": poll_s, "log_sample": log_sample, "log_max_bytes": int(log_max_mb * 2**20),
            "log_enabled": not no_log}


def _fail(text: str, fix: str | None, as_json: bool, code: int = 2, doc: dict[str, Any] | None = None) -> None:
    if as_json:
        click.echo(json.dumps({"status": "invalid", "messages": [doc or {"text": text, "fix": fix}]}, indent=2))
    else:
        click.echo(f"error: {text}" + (f"\n  fix: {fix}" if fix else ""), err=True)
    sys.exit(code)


def _specs(notebook: str, names: list[str], as_json: bool = False) -> Any:
    from scanflow_jupyter.notebook.parser import NotebookReadError
    from scanflow_jupyter.services.spec import ServiceSpecError, service_specs

    try:
        return service_specs(notebook, names or None)
    except NotebookReadError as exc:
        _fail(exc.message.text, exc.message.fix, as_json, doc=message_doc(exc.message))
    except ServiceSpecError as exc:
        _fail(str(exc), None, as_json)


@click.command()
@click.argument("notebook", type=click.Path())
@click.argument("name")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="0: a free port.")
@click.option("--host", default="127.0.0.1", show_default=True)
@_serve_options
def serve(notebook: str, name: str, port: int, host: str, poll_s: float, log_sample: float, log_max_mb: float,
          no_log: bool) -> None:
    """Serve the %%service cell NAME of NOTEBOOK in the foreground (Ctrl-C stops it)."""
    import logging

    from scanflow_jupyter.services.server import ServeOptions, listen
    from scanflow_jupyter.services.server import serve as run_service

    spec = _specs(notebook, [name])[0]
    try:
        sock = listen(host, port)
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port}: {exc.strerror}", "pick a free port with --port (0: any free port).",
              False)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(run_service(spec, sock, options=ServeOptions(**_options(poll_s, log_sample, log_max_mb, no_log)),
                         announce=True))


def services_table(rows: list[Any]) -> Any:
    from rich.table import Table

    table = Table()
    for header in ("service", "state", "url", "pid", "model", "version"):
        table.add_column(header, no_wrap=True)
    table.add_column("error", overflow="fold")
    colours = {"running": "green", "failed": "red", "restarting": "yellow", "starting": "yellow", "stopped": "dim"}
    for r in rows:
        colour = colours.get(r.state, "white")
        table.add_row(f"{r.app}/{r.name}", f"[{colour}]{r.state}[/{colour}]" + (f" ×{r.restarts}" if r.restarts else ""),
                      r.url or "-", str(r.pid or "-"), r.model or "predict()", r.version or "-", r.error or "-")
    return table


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


@click.group()
def services() -> None:
    """Run the %%service cells of a notebook as local background services (restarted on crash)."""


@services.command()
@click.argument("notebook", type=click.Path())
@click.argument("names", nargs=-1)
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port of the one service named.")
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for the models to load.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@_serve_options
def up(notebook: str, names: tuple[str, ...], port: int | None, timeout: float, as_json: bool, poll_s: float,
       log_sample: float, log_max_mb: float, no_log: bool) -> None:
    """Start (or restart) the services of NOTEBOOK (all, or the NAMES given)."""
    from scanflow_jupyter.agents.auth import AgentTokenError, agent_token
    from scanflow_jupyter.services.supervisor import up as services_up

    _specs(notebook, list(names), as_json)
    try:
        agent_token()  # /reload needs the project's token: create it before the services start
        rows = services_up(notebook, list(names) or None, port=port, timeout=timeout,
                           options=_options(poll_s, log_sample, log_max_mb, no_log))
    except (ValueError, AgentTokenError) as exc:
        _fail(str(exc), None, as_json)
    failed = [r for r in rows if r.state != "running"]
    code = 0 if rows and not failed else 1
    if as_json:
        click.echo(json.dumps({"services": [r.to_dict() for r in rows], "exit_code": code}, indent=2))
        sys.exit(code)
    console = _console()
    console.print(services_table(rows))
    for r in failed:
        console.print(f"[red]service {r.name} is {r.state}[/red]: {r.error or ''} (log {r.log})", markup=True)
    sys.exit(code)


@services.command()
@click.argument("notebook", type=click.Path(), required=False)
@click.option("--all", "all_", is_flag=True, help="Stop the services of every notebook.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def down(notebook: str | None, all_: bool, as_json: bool) -> None:
    """Stop the services of NOTEBOOK (or of every notebook with --all)."""
    from scanflow_jupyter.services.supervisor import down as services_down

    if notebook is None and not all_:
        raise click.UsageError("name the notebook, or pass --all to stop every service of this project.")
    stopped = services_down(None if all_ else notebook)
    if as_json:
        click.echo(json.dumps({"stopped": stopped}, indent=2))
    else:
        click.echo(f"stopped {len(stopped)} service(s): {', '.join(stopped) or '-'}")


@services.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def ls_(as_json: bool) -> None:
    """List this project's services: state, URL, pid, model and the version it serves now."""
    from scanflow_jupyter.services.supervisor import ls as services_ls

    rows = services_ls()
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in rows], indent=2))
    elif rows:
        _console().print(services_table(rows))
    else:
        click.echo("no services (start them with `scanflow services up NOTEBOOK`)")
