"""`scanflow inspect`, `scanflow run` and `scanflow runs`: inspect and run notebooks as pipelines.

Exit codes: 0 success, 1 a step failed, 2 invalid input (nothing executed, no MLflow run),
130 cancelled (Ctrl-C / SIGTERM). Heavy modules are imported inside commands only.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from scanflow_jupyter.cell_numbers import message_doc, shown


def _parse_params(pairs: tuple[str, ...]) -> dict[str, Any]:
    from scanflow_jupyter.params import parse_params

    try:
        return parse_params(pairs)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="-p") from exc


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _print_messages(messages: list[Any], console: Any) -> None:
    for m in messages:
        colour = "red" if m.severity == "error" else "yellow"
        where = f"cell {shown(m.cell)}" if m.cell is not None else "notebook"  # 1-based, as JupyterLab counts
        console.print(f"[{colour}]{m.severity}[/{colour}] [bold]{where}[/bold]: {m.text}")
        console.print(f"  [dim]fix:[/dim] {m.fix}")


@click.command()
@click.argument("notebook", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def inspect(notebook: str, as_json: bool) -> None:
    """Show the executors of NOTEBOOK, their order and every validation message."""
    from scanflow_jupyter.model import Pipeline
    from scanflow_jupyter.notebook.parser import NotebookReadError, parse_notebook
    from scanflow_jupyter.notebook.validate import has_errors, validate

    try:
        app = parse_notebook(notebook)
    except NotebookReadError as exc:
        if as_json:
            click.echo(json.dumps({"valid": False, "messages": [message_doc(exc.message)]}, indent=2))
        else:
            _print_messages([exc.message], _console(stderr=True))
        sys.exit(2)
    messages = validate(app)
    valid = not has_errors(messages)
    order = list(Pipeline.from_application(app).steps) if valid else []
    requirements = _step_requirements(app)
    ingredients = _ingredients_reader(app)
    if as_json:
        doc = {
            "app": app.name, "team": app.team, "notebook": app.notebook, "valid": valid,
            "parameters": app.parameters, "order": order,
            "executors": [{"name": e.name, "cell": shown(e.cell), "cells": [shown(p.cell) for p in e.code_parts()],
                           "depends_on": app.dependencies(e), "inputs": e.inputs,
                           "outputs": e.outputs, "retries": e.retries, "timeout": e.timeout,
                           "cache": ingredients(e), "deps": e.deps,
                           "image": e.image, "requirements": e.requirements, "resources": vars(e.resources)}
                          for e in app.executors],
            "services": [{"name": s.name, "cell": shown(s.cell), "model": s.model, "replicas": s.replicas} for s in app.services],
            "agents": [{"name": a.name, "cell": shown(a.cell), "template": a.template} for a in app.agents],
            "messages": [message_doc(m) for m in messages],
            "requirements": {name: r.to_dict() for name, r in requirements.items()},
        }
        click.echo(json.dumps(doc, indent=2, default=str))
    else:
        from scanflow_jupyter.cli.inspect_view import print_inspect

        print_inspect(_console(), app, order, requirements, messages, valid, ingredients)
    sys.exit(0 if valid else 2)


def _ingredients_reader(app: Any) -> Any:
    """`reader(ex)`: the step's `cache` entry — on/off and what its key is made of (code digest,
    parameters read, files, packages, ...). One StepKeys for all steps, not one per step."""
    from scanflow_jupyter.runtime.cache import StepKeys, inspect_ingredients

    try:
        keys = StepKeys(app, app.parameters, fresh_environment=False)
    except Exception:  # noqa: BLE001 - an invalid notebook: each step then says {"enabled": ...}
        keys = None

    def reader(ex: Any) -> dict[str, Any]:
        try:
            return inspect_ingredients(app, ex, keys)
        except Exception:  # noqa: BLE001 - an invalid notebook: validation messages say why
            return {"enabled": ex.cache}

    return reader


def _step_requirements(app: Any) -> dict[str, Any]:
    """Pinned requirements of each executor's image (what `scanflow build` installs)."""
    from scanflow_jupyter.build.requirements import resolve_application

    try:
        return resolve_application(app)
    except Exception:  # noqa: BLE001 - an invalid notebook: validation messages say why
        return {}


@click.command()
@click.argument("notebook", type=click.Path())
@click.option("--backend", default="local", show_default=True, help="Where steps run (a registered backend).")
@click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE",
              help="Override a pipeline parameter; VALUE is YAML (0.1, [1,2], {a: 1}, true, null).")
@click.option("-f", "--params-file", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="A YAML (or JSON) mapping {name: value} of parameter overrides (-p wins); the server passes them so.")
@click.option("--only", multiple=True, metavar="STEP", help="Run only this step (repeatable); upstream outputs come from the cache or the store.")
@click.option("--resume", metavar="RUN_ID", help="Re-run only the steps of RUN_ID that did not succeed.")
@click.option("--max-parallel", type=click.IntRange(min=1), default=None, help="Steps running at once (default: CPU count, more while steps wait; see README Parallelism).")
@click.option("--no-cache", is_flag=True, help="Ignore cached step outputs.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of the live view.")
@click.option("--explain", is_flag=True, help="Say why each step ran or was cached (--json: key `explain` per step).")
def run(notebook: str, backend: str, params: tuple[str, ...], params_file: str | None, only: tuple[str, ...],
        resume: str | None, max_parallel: int | None, no_cache: bool, as_json: bool, explain: bool) -> None:
    """Run NOTEBOOK as a pipeline of isolated, cached, parallel steps."""
    if backend == "local":
        from scanflow_jupyter.runtime.fork_provisioner import start_shared_zygote

        start_shared_zygote()  # before the imports below and the notebook's parsing: they overlap
    from scanflow_jupyter.cli.view import load_params_file, print_unreadable_run
    from scanflow_jupyter.data.store import RunUnreadableError
    from scanflow_jupyter.runtime.backends import UnknownBackendError
    from scanflow_jupyter.runtime.runner import EXIT_INVALID, InvalidApplication, run_notebook

    overrides = {**load_params_file(params_file), **_parse_params(params)} if params_file else _parse_params(params)
    view = None if as_json else _live_view()
    try:
        result = run_notebook(notebook, params=overrides, only=list(only), resume=resume,
                              max_parallel=max_parallel, no_cache=no_cache, backend=backend,
                              on_event=view.on_event if view else None,
                              started_by=os.environ.get("SCANFLOW_STARTED_BY") or "cli")
    except InvalidApplication as exc:
        if as_json:
            click.echo(json.dumps({"status": "invalid", "messages": [message_doc(m) for m in exc.messages]}, indent=2))
        else:
            _print_messages(exc.messages, _console(stderr=True))
            _console(stderr=True).print("[red]nothing was run[/red]")
        sys.exit(EXIT_INVALID)
    except UnknownBackendError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_INVALID)
    except RunUnreadableError as exc:  # --resume of a run whose run.json is broken: nothing ran
        if view:
            view.stop()
            view = None
        print_unreadable_run(exc, as_json)
        sys.exit(EXIT_INVALID)
    finally:
        if view:
            view.stop()
    if as_json:
        doc = result.to_dict()
        if explain:
            for name, step in doc.get("steps", {}).items():
                step["explain"] = result.explain.get(name)
        click.echo(json.dumps(doc, indent=2))
    else:
        _print_summary(result)
        if explain:
            for name, why in result.explain.items():
                status = result.steps[name].status
                why = why.removeprefix(f"{status}: ")  # "cached: nothing … changed" says its status already
                _console().print(f"  [bold]{name}[/bold] {status}: {why}")
    sys.exit(result.exit_code)


def _live_view() -> Any:
    from scanflow_jupyter.cli.view import LiveRunView

    return LiveRunView(_console())


def _print_summary(result: Any) -> None:
    console = _console()
    colour = {"succeeded": "green", "failed": "red", "killed": "yellow"}.get(result.status, "white")
    console.print(f"run [bold]{result.run_id}[/bold]: [{colour}]{result.status}[/{colour}]"
                  f" (MLflow run {result.mlflow_run_id or '-'}, tracking {result.tracking or '-'}; files in {result.run_dir})")
    # tracking warnings were shown by the live view as `run_warning` events


@click.command()
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def runs(limit: int, as_json: bool) -> None:
    """List recent pipeline runs of the run store in this folder (`unreadable`: broken run.json)."""
    from scanflow_jupyter.cli.view import print_runs
    from scanflow_jupyter.data.store import RunStore
    from scanflow_jupyter.tracking import scanflow_home

    print_runs(RunStore(scanflow_home() / "runs").list_entries(limit=limit), as_json, _console())
