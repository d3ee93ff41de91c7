"""`scanflow agents up|down|ls`: run a notebook's agents as local services.

Exit codes of `up`: 0 every agent runs; 1 some agent was refused (bad code: the cell and the
fix are printed) or failed to start — the others run; 2 the notebook cannot be read or has no
agent. Heavy modules are imported inside the commands.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from scanflow_jupyter.cell_numbers import message_doc, shown


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Piped output (logs, CI) is not cut to 80 columns: the table stays one line per agent.
    width = None if stream.isatty() else 200
    return Console(stderr=stderr, highlight=False, width=width)


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    from scanflow_jupyter.widgets import format_duration

    return format_duration(seconds)


def agents_table(rows: list[Any], *, show_app: bool = True) -> Any:
    """A Rich table: agent, state, port, pid, uptime, sensors, last value, last error."""
    from rich.table import Table

    table = Table()
    for header in ("agent", "state", "port", "pid", "uptime"):
        table.add_column(header, no_wrap=True)
    for header in ("sensors", "last value", "last error"):
        table.add_column(header, overflow="fold")
    colours = {"running": "green", "refused": "red", "failed": "red", "restarting": "yellow",
               "starting": "yellow", "stopped": "dim"}
    for row in rows:
        name = f"{row.app}/{row.name}" if show_app else row.name
        colour = colours.get(row.state, "white")
        sensors = ", ".join(f"{s['name']} ({s.get('schedule') or '?'})" for s in row.sensors) or "-"
        error = row.last_error or "-"
        if row.state in ("refused", "failed") and row.message:
            error = row.message.get("text") or error
        table.add_row(name, f"[{colour}]{row.state}[/{colour}]" + (f" ×{row.restarts}" if row.restarts else ""),
                      str(row.port or "-"), str(row.pid or "-"), _uptime(row.uptime_s), sensors,
                      row.last_value or "-", error)
    return table


def _print_refusals(refused: list[dict[str, Any]], console: Any) -> None:
    for r in refused:
        where = f"cell {shown(r['cell'])}" if r.get("cell") is not None else "notebook"
        console.print(f"[red]refused[/red] agent [bold]{r['agent']}[/bold] ({where}): {r['text']}")
        console.print(f"  [dim]fix:[/dim] {r['fix']}")


@click.group()
def agents() -> None:
    """Run the %%agent cells of a notebook as local services (sensors, rules, actuators)."""


@agents.command()
@click.argument("notebook", type=click.Path())
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for the agents to be ready.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def up(notebook: str, timeout: float, as_json: bool) -> None:
    """Start (or restart) the agents of NOTEBOOK; bad agents are refused, the others start."""
    from scanflow_jupyter.agents.auth import AgentTokenError
    from scanflow_jupyter.agents.control import NoAgents
    from scanflow_jupyter.agents.control import up as agents_up
    from scanflow_jupyter.notebook.parser import NotebookReadError

    try:
        result = agents_up(notebook, timeout=timeout)
    except AgentTokenError as exc:
        if as_json:
            click.echo(json.dumps({"status": "invalid", "messages": [{"code": "agent-token", "text": str(exc)}]},
                                  indent=2))
        else:
            from rich.markup import escape

            _console(stderr=True).print(f"[red]error[/red]: {escape(str(exc))}")
        sys.exit(2)
    except NotebookReadError as exc:
        m = exc.message
        if as_json:
            click.echo(json.dumps({"status": "invalid", "messages": [message_doc(m)]}, indent=2))
        else:
            _console(stderr=True).print(f"[red]error[/red]: {m.text}\n  [dim]fix:[/dim] {m.fix}")
        sys.exit(2)
    except NoAgents as exc:
        if as_json:
            click.echo(json.dumps({"status": "invalid", "messages": [{"text": str(exc)}]}, indent=2))
        else:
            _console(stderr=True).print(f"[red]error[/red]: {exc}\n  [dim]fix:[/dim] add a cell starting "
                                        "with %%agent NAME [--template monitor|analyzer|planner|executor].")
        sys.exit(2)
    if as_json:
        doc = result.to_dict()
        for key in ("agents", "refused", "warnings"):  # cell numbers shown 1-based
            doc[key] = [{**r, "cell": shown(r.get("cell"))} if isinstance(r, dict) else r for r in doc.get(key) or []]
        click.echo(json.dumps(doc, indent=2, default=str))
        sys.exit(result.exit_code)
    console = _console()
    _print_refusals(result.refused, _console(stderr=True))
    for w in result.warnings:
        where = f"cell {shown(w['cell'])}" if w.get("cell") is not None else "notebook"
        console.print(f"[yellow]{w['severity']}[/yellow] {where}: {w['text']}\n  [dim]fix:[/dim] {w['fix']}")
    if result.agents:
        console.print(agents_table(result.agents, show_app=False))
    for row in result.failed:
        console.print(f"[red]agent {row.name} did not start[/red]; log {row.log}:")
        console.print((row.message or {}).get("log_tail") or "(empty log)", markup=False)
    console.print(f"[bold]{result.app}[/bold]: {len(result.running)} agent(s) running, "
                  f"{len(result.refused)} refused, {len(result.failed)} failed"
                  + (f" (supervisor pid {result.supervisor_pid})" if result.supervisor_pid else ""))
    sys.exit(result.exit_code)


@agents.command()
@click.argument("notebook", type=click.Path(), required=False)
@click.option("--all", "all_", is_flag=True, help="Stop the agents of every notebook.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def down(notebook: str | None, all_: bool, as_json: bool) -> None:
    """Stop the agents of NOTEBOOK (or of every notebook with --all)."""
    from scanflow_jupyter.agents.control import down as agents_down

    if notebook is None and not all_:
        raise click.UsageError("name the notebook, or pass --all to stop every agent of this project.")
    result = agents_down(None if all_ else notebook)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    if not result.notebooks:
        _console().print("no agents were running" + (f" for {notebook}" if notebook else ""))
        return
    _console().print(f"stopped {len(result.agents)} agent(s): {', '.join(result.agents) or '-'}"
                     + (f" (killed pids {', '.join(map(str, result.killed))})" if result.killed else ""))


@agents.command()
def token() -> None:
    """Print this project's agent token (for `curl -H "Authorization: Bearer $(scanflow agents token)"`).

    It is $SCANFLOW_AGENT_TOKEN if set, else .scanflow/agent-token (created with mode 0600 if
    missing). Anyone who has it can call this project's agents: do not share or record it.
    """
    from scanflow_jupyter.agents.auth import AgentTokenError, agent_token

    try:
        click.echo(agent_token())
    except AgentTokenError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


@agents.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--watch", type=float, default=None, metavar="SECONDS", help="Refresh every SECONDS until Ctrl-C.")
def ls_(as_json: bool, watch: float | None) -> None:
    """List the agents of this project: port, pid, uptime, sensors, last value, last error."""
    from scanflow_jupyter.agents.control import ls as agents_ls

    if as_json:
        rows = [{**r.to_dict(), "cell": shown(r.cell)} for r in agents_ls()]  # cell: 1-based
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    console = _console()
    while True:
        rows = agents_ls()
        if rows:
            console.print(agents_table(rows))
        else:
            console.print("no agents (start them with `scanflow agents up NOTEBOOK`)")
        if not watch:
            return
        time.sleep(watch)
