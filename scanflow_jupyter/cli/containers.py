"""`scanflow build`, `scanflow build-base` and `scanflow tracker up|down|status|ls`.

Exit codes: 0 success; 1 a build, push or pre-flight import check failed (each problem printed
with its fix) or the engine/tracker is unavailable; 2 the notebook is invalid or a name is unknown.
Heavy modules (docker, mlflow) are imported inside the commands only.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from scanflow_jupyter.cell_numbers import message_doc


def _err(text: str) -> None:
    click.echo(text, err=True)


def _fail(as_json: bool, code: int, error: str, **extra: Any) -> None:
    if as_json:
        click.echo(json.dumps({"status": "error", "error": error, **extra}, indent=2))
    else:
        _err(f"error: {error}")
    sys.exit(code)


@click.command()
@click.argument("notebook", type=click.Path())
@click.option("--step", "steps", multiple=True, metavar="NAME", help="Build only this executor/service/agent (repeatable).")
@click.option("--push", "registry", metavar="REGISTRY", help="Tag the images REGISTRY/scanflow/<app>-<step>:<hash> and push them.")
@click.option("--wheelhouse", type=click.Path(file_okay=False), help="Download the pinned wheels into DIR and build with no network.")
@click.option("--base", metavar="IMAGE", help="Base image (default: $SCANFLOW_BASE_IMAGE or python:3.11-slim; 'scanflow/base' = the offline one).")
@click.option("--ca-certs", type=click.Path(), help="Folder of extra CA certificates (*.crt) to trust (default: /usr/local/share/ca-certificates).")
@click.option("--no-check", is_flag=True, help="Skip the pre-flight import check.")
@click.option("--rebuild", is_flag=True, help="Build every image again from scratch (no reuse, no layer cache).")
@click.option("--verbose", "-v", is_flag=True, help="Print the whole build log.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document: steps -> {image, built}.")
def build(notebook: str, steps: tuple[str, ...], registry: str | None, wheelhouse: str | None, base: str | None,
          ca_certs: str | None, no_check: bool, rebuild: bool, verbose: bool, as_json: bool) -> None:
    """Build one image per executor (and service / agent) of NOTEBOOK; unchanged ones are reused."""
    from scanflow_jupyter.build.base import BaseImageError
    from scanflow_jupyter.build.builder import BuildError, EngineUnavailable, ImageBuilder
    from scanflow_jupyter.build.wheelhouse import WheelhouseError
    from scanflow_jupyter.notebook.parser import NotebookReadError, parse_notebook
    from scanflow_jupyter.notebook.validate import has_errors, validate

    try:
        app = parse_notebook(notebook)
    except NotebookReadError as exc:
        _fail(as_json, 2, str(exc.message))
    messages = validate(app)
    if has_errors(messages):
        errors = [str(m) for m in messages if m.severity == "error"]
        _fail(as_json, 2, "the notebook is invalid; nothing was built:\n" + "\n".join(errors),
              messages=[message_doc(m) for m in messages])

    def log(line: str) -> None:
        if verbose or ": building " in line or ": reusing " in line or line.startswith(("built offline", "push ")) \
                or (": Step " in line and not as_json):
            _err(line)

    builder = ImageBuilder(app, base=base, registry=registry, wheelhouse=wheelhouse, ca_certs=ca_certs, log=log)
    started = time.monotonic()
    try:
        report = builder.build(list(steps) or None, push=bool(registry), check_imports=not no_check, rebuild=rebuild)
    except KeyError as exc:
        _fail(as_json, 2, str(exc.args[0]))
    except EngineUnavailable as exc:
        _fail(as_json, 1, str(exc))
    except (BuildError, BaseImageError, WheelhouseError) as exc:
        _fail(as_json, 1, str(exc))
    problems = report.import_problems
    if as_json:
        doc = report.to_dict()
        doc["seconds"] = round(time.monotonic() - started, 3)
        click.echo(json.dumps(doc, indent=2))
    else:
        for m in report.messages:
            _err(f"{m.severity}: {m.text}\n  fix: {m.fix}")
        for name, result in report.images.items():
            what = "built" if result.built else "reused"
            pushed = " (pushed)" if result.pushed else ""
            click.echo(f"{name}: {result.image} {what} in {result.seconds:.1f}s{pushed}")
        for problem in problems:
            _err(f"import check failed: {problem}")
        if problems:
            _err("the pre-flight import check failed: fix the requirements above before running the pipeline.")
    sys.exit(1 if problems else 0)


@click.command("build-base")
@click.option("--suite", help="Debian suite (default: this machine's, e.g. bookworm).")
@click.option("--mirror", help="Debian mirror (default: http://deb.debian.org/debian).")
@click.option("--rebuild", is_flag=True, help="Build even if the tag exists.")
@click.option("--verbose", "-v", is_flag=True, help="Print mmdebstrap's log.")
@click.option("--json", "as_json", is_flag=True)
def build_base(suite: str | None, mirror: str | None, rebuild: bool, verbose: bool, as_json: bool) -> None:
    """Make the offline base image (mmdebstrap | docker import), unless its tag exists.

    Use it with SCANFLOW_BASE_IMAGE=scanflow/base (or `scanflow build --base scanflow/base`).
    """
    from scanflow_jupyter.build.base import (
        BaseImageError,
        BaseRecipe,
        default_recipe,
        ensure_base_image,
    )
    from scanflow_jupyter.build.builder import EngineUnavailable, docker_client

    recipe = default_recipe()
    recipe = BaseRecipe(suite=suite or recipe.suite, mirror=mirror or recipe.mirror)
    try:
        tag, built, seconds = ensure_base_image(docker_client(), recipe, rebuild=rebuild,
                                                log=_err if verbose else None)
    except (BaseImageError, EngineUnavailable) as exc:
        _fail(as_json, 1, str(exc))
    if as_json:
        click.echo(json.dumps({"image": tag, "built": built, "seconds": round(seconds, 3)}, indent=2))
    else:
        click.echo(f"{tag} {'built' if built else 'exists'}{f' in {seconds:.1f}s' if built else ''}")


@click.group()
def tracker() -> None:
    """Serve the project's MLflow store over HTTP (for containers and agents)."""


@tracker.command("up")
@click.option("--port", type=int, help="Port on 127.0.0.1 (default: $SCANFLOW_TRACKER_PORT or 5050, else a free one).")
@click.option("--idle-timeout", type=click.FloatRange(min=0), default=0, show_default=True, metavar="SECONDS",
              help="Stop after this many seconds without requests (0: run until `down` or the folder is removed).")
@click.option("--json", "as_json", is_flag=True)
def tracker_up(port: int | None, idle_timeout: float, as_json: bool) -> None:
    """Start the tracking server (no-op if it runs already)."""
    from scanflow_jupyter import mlflow_server as tracker_mod

    try:
        info = tracker_mod.up(port=port, idle_timeout=idle_timeout)
    except tracker_mod.TrackerError as exc:
        _fail(as_json, 1, str(exc))
    if as_json:
        click.echo(json.dumps({"running": True, **info.to_dict()}, indent=2))
    else:
        click.echo(f"tracker at {info.url} (pid {info.pid}) serves {info.backend_store_uri}; "
                   f"artifacts in {info.artifacts_destination}; log {info.log}")


@tracker.command("down")
@click.option("--all", "everything", is_flag=True, help="Stop every tracker of this user, in every folder.")
@click.option("--json", "as_json", is_flag=True)
def tracker_down(everything: bool, as_json: bool) -> None:
    """Stop the tracking server of this project (or, with --all, every one of yours)."""
    from scanflow_jupyter import mlflow_server as tracker_mod

    if everything:
        try:
            stopped = tracker_mod.down_all()
        except tracker_mod.TrackerError as exc:
            _fail(as_json, 1, str(exc))
        if as_json:
            click.echo(json.dumps({"stopped": [e.to_dict() for e in stopped]}, indent=2))
        else:
            for e in stopped:
                click.echo(f"stopped the tracker at {e.url} (pid {e.pid}) of {e.folder}")
            if not stopped:
                click.echo("no tracker was running")
        return
    try:
        info = tracker_mod.down()
    except tracker_mod.TrackerError as exc:
        _fail(as_json, 1, str(exc))
    if as_json:
        click.echo(json.dumps({"stopped": info.to_dict() if info else None}, indent=2))
    else:
        click.echo(f"stopped the tracker at {info.url} (pid {info.pid})" if info else "no tracker was running")


@tracker.command("status")
@click.option("--json", "as_json", is_flag=True)
def tracker_status(as_json: bool) -> None:
    """Show whether the tracking server runs (exit 0) or not (exit 1)."""
    from scanflow_jupyter import mlflow_server as tracker_mod
    from scanflow_jupyter.tracking import scanflow_home

    info = tracker_mod.status()
    answering = bool(info and tracker_mod.healthy(info.url, probe=True))
    if as_json:
        click.echo(json.dumps({"running": info is not None, "healthy": answering,
                               **(info.to_dict() if info else {"home": str(scanflow_home())})}, indent=2))
    elif info:
        state = "answering" if answering else "NOT answering (see its log)"
        click.echo(f"tracker at {info.url} (pid {info.pid}) {state}; serves {info.backend_store_uri}; log {info.log}")
    else:
        click.echo(f"no tracker runs for {Path(scanflow_home())}")
    sys.exit(0 if info else 1)


@tracker.command("ls")
@click.option("--json", "as_json", is_flag=True)
def tracker_ls(as_json: bool) -> None:
    """List every tracker of this user, in every folder (stale entries are pruned)."""
    from scanflow_jupyter import mlflow_server as tracker_mod
    from scanflow_jupyter.mlflow_server.registry import registry_dir

    found = tracker_mod.list_all()
    if as_json:
        click.echo(json.dumps({"registry": str(registry_dir()), "trackers": [e.to_dict() for e in found]}, indent=2))
        return
    if not found:
        click.echo("no tracker runs")
        return
    click.echo(f"{'PID':>7}  {'URL':<24} {'STARTED':<19} {'IDLE':>8} {'STOPS WHEN IDLE':>15}  FOLDER")
    for e in found:
        doc = e.to_dict()
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.started_at))
        limit = f"{e.idle_timeout:g}s" if e.idle_timeout else "never"
        click.echo(f"{e.pid:>7}  {e.url:<24} {started:<19} {doc['idle_seconds']:>7.0f}s {limit:>15}  {e.folder}")
