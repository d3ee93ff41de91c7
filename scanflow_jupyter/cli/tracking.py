"""`scanflow runs sync [RUN_ID]`, and ending the MLflow runs of dead runners before `scanflow runs`.

`runs` stays the plain listing command it is (`scanflow runs`, `scanflow runs --json`): `attach`
turns it into a group with the same options whose only subcommand is `sync`.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

EXIT_OK, EXIT_PENDING, EXIT_UNKNOWN = 0, 1, 2


@click.command()
@click.argument("run_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def sync(run_id: str | None, as_json: bool) -> None:
    """Deliver the MLflow records of runs whose tracking is `pending` (or of RUN_ID).

    Exit 0: everything delivered (again: nothing is duplicated); 1: the tracker is still
    unreachable (run it again later); 2: no such run.
    """
    from scanflow_jupyter.data.store import RunStore, StoreError
    from scanflow_jupyter.tracking import default_artifact_root, resolve_tracking_uri, scanflow_home
    from scanflow_jupyter.tracking_sync import HTTP_ENV_DEFAULTS, end_dead_project_runs, sync_runs

    for key, value in HTTP_ENV_DEFAULTS.items():  # bounded waits for an unreachable tracker
        os.environ.setdefault(key, value)
    home = scanflow_home()
    target = resolve_tracking_uri(home)
    end_dead_project_runs(home)
    try:
        results = sync_runs(RunStore(home / "runs"), target, default_artifact_root(home), run_id)
    except StoreError as exc:
        if as_json:
            click.echo(json.dumps({"error": str(exc), "runs": []}, indent=2))
        else:
            click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_UNKNOWN)
    code = EXIT_PENDING if any(r.tracking == "pending" for r in results) else EXIT_OK
    if as_json:
        click.echo(json.dumps({"runs": [r.to_dict() for r in results]}, indent=2))
        sys.exit(code)
    from scanflow_jupyter.redact import redact_uri

    if not results:
        click.echo("nothing to sync: no run has tracking 'pending'")
    for r in results:
        if r.tracking == "synced":
            click.echo(f"{r.run_id}: synced to {redact_uri(target)} ({r.delivered} MLflow runs delivered now; "
                       f"MLflow run {r.mlflow_run_id or '-'})")
        else:
            click.echo(f"{r.run_id}: {r.tracking} — {r.error or 'not delivered'}"
                       + ("; run `scanflow runs sync` again when the tracker is reachable" if r.tracking == "pending" else ""))
    sys.exit(code)


def attach(main: click.Group) -> None:
    """Make `main`'s `runs` command a group (same options, same listing) with `sync`; the
    listing first ends the MLflow runs of runs whose runner died (KILLED)."""
    listing = main.commands["runs"]
    callback = listing.callback
    assert callback is not None

    @click.pass_context
    def run_listing(ctx: click.Context, **kwargs: Any) -> Any:
        if ctx.invoked_subcommand is not None:
            return None
        from scanflow_jupyter.tracking import scanflow_home
        from scanflow_jupyter.tracking_sync import end_dead_project_runs

        end_dead_project_runs(scanflow_home())
        return ctx.invoke(callback, **kwargs)

    group = click.Group(name=listing.name, callback=run_listing, params=listing.params, help=listing.help,
                        short_help=listing.short_help, invoke_without_command=True,
                        context_settings=listing.context_settings)
    group.add_command(sync)
    main.add_command(group)
