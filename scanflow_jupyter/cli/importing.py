"""`scanflow import --from kale|elyra|ploomber SOURCE -o OUT.ipynb`: a Scanflow notebook from another tool.

Exit 0: the notebook is written and valid; 2: the source cannot be imported, OUT exists
(without --force), or the written notebook has validation errors (they are printed).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from scanflow_jupyter.importers import IMPORTERS


def _run_importer(tool: str, source: Path) -> Any:
    if tool == "kale":
        from scanflow_jupyter.importers.kale import import_kale

        return import_kale(source)
    if tool == "elyra":
        from scanflow_jupyter.importers.elyra import import_elyra

        return import_elyra(source)
    from scanflow_jupyter.importers.ploomber import import_ploomber

    return import_ploomber(source)


@click.command("import")
@click.argument("source", type=click.Path())
@click.option("--from", "tool", type=click.Choice(IMPORTERS), required=True,
              help="The tool SOURCE belongs to: a Kale notebook, an Elyra .pipeline, a Ploomber pipeline.yaml.")
@click.option("-o", "--output", "output", type=click.Path(), default=None,
              help="The Scanflow notebook to write (default: SOURCE's stem + .scanflow.ipynb beside SOURCE).")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def import_command(source: str, tool: str, output: str | None, force: bool, as_json: bool) -> None:
    """Convert SOURCE (Kale, Elyra or Ploomber) into a Scanflow notebook, validate it, list what was not carried over."""
    from scanflow_jupyter.cell_numbers import message_doc
    from scanflow_jupyter.cli.pipeline import _console, _print_messages
    from scanflow_jupyter.importers.common import ImportFailure, Note, finish
    from scanflow_jupyter.model import Message
    from scanflow_jupyter.notebook.validate import has_errors

    src = Path(source)
    out = Path(output) if output else src.with_name(src.name.split(".")[0] + ".scanflow.ipynb")
    try:
        if out.exists() and not force:
            raise ImportFailure(f"{out} already exists.", "choose another -o path, or add --force to overwrite it.")
        if out.resolve() == src.resolve():
            raise ImportFailure(f"-o {out} is the source itself.", "write the Scanflow notebook to another path.")
        result = _run_importer(tool, src)
        if out.resolve().parent != src.resolve().parent:
            result.notes.append(Note("output", f"{out} is not in {src.name}'s folder: steps resolve relative paths (data files, "
                                     f"notebooks, products) from the notebook's folder; move it beside {src.name} or copy those files."))
    except ImportFailure as exc:
        message = Message("error", "import-failed", exc.text, exc.fix)
        if as_json:
            click.echo(json.dumps({"valid": False, "output": None, "not_carried_over": [], "messages": [message_doc(message)]}, indent=2))
        else:
            _print_messages([message], _console(stderr=True))
        sys.exit(2)
    messages = finish(result, out)
    valid = not has_errors(messages)
    if as_json:
        click.echo(json.dumps({"valid": valid, "output": str(out), "not_carried_over": [vars(n) for n in result.notes],
                               "messages": [message_doc(m) for m in messages]}, indent=2, default=str))
    else:
        console = _console()
        console.print(f"wrote [bold]{out}[/bold] from {tool} {src}")
        if result.notes:
            console.print("[bold]not carried over:[/bold]")
            for note in result.notes:
                console.print(f"  [yellow]{note.where}[/yellow]: {note.text}")
        _print_messages(messages, console)
        console.print("[green]valid[/green]" if valid else f"[red]invalid[/red]: fix the messages above in {out}, then run `scanflow inspect {out}`")
    sys.exit(0 if valid else 2)
