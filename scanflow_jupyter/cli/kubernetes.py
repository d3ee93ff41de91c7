"""`scanflow deploy|undeploy|status NOTEBOOK` and `scanflow export NOTEBOOK --to k8s`.

The team environment of a notebook on Kubernetes (DESIGN.md §4). Exit codes: 0 success (for
`status`: deployed and ready); 1 the cluster refused or could not be reached (or, for `status`,
something is missing or not ready); 2 invalid input (notebook, settings or manifests — nothing
was applied). Heavy modules (kubernetes, jsonschema) are imported inside the commands only.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from scanflow_jupyter.cell_numbers import message_doc

EXIT_OK, EXIT_CLUSTER, EXIT_INVALID = 0, 1, 2


def _fail(as_json: bool, code: int, error: str, **extra: Any) -> NoReturn:
    if as_json:
        click.echo(json.dumps({"status": "error", "error": error, **extra}, indent=2))
    else:
        click.echo(f"error: {error}", err=True)
    sys.exit(code)


def _target_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--context, --kubeconfig, --namespace, --team, --json (shared by every command)."""
    for option in reversed([
        click.option("--context", help="kubeconfig context (default: $SCANFLOW_K8S_CONTEXT or the current one)."),
        click.option("--kubeconfig", type=click.Path(dir_okay=False), help="kubeconfig file (default: $KUBECONFIG)."),
        click.option("--namespace", help="namespace (default: scanflow-<app>-<team>)."),
        click.option("--team", help="team (default: %scanflow_app --team, else 'default')."),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON document."),
    ]):
        func = option(func)
    return func


def _load(notebook: str, as_json: bool, **settings: Any) -> tuple[Any, Any]:
    """(Application, DeployConfig) or exit 2 with every problem."""
    from scanflow_jupyter.kubernetes.config import ConfigError, DeployConfig
    from scanflow_jupyter.notebook.parser import NotebookReadError, parse_notebook
    from scanflow_jupyter.notebook.validate import has_errors, validate

    try:
        app = parse_notebook(notebook)
    except NotebookReadError as exc:
        _fail(as_json, EXIT_INVALID, str(exc.message))
    messages = validate(app)
    if has_errors(messages):
        errors = [str(m) for m in messages if m.severity == "error"]
        _fail(as_json, EXIT_INVALID, "the notebook is invalid; nothing was applied:\n" + "\n".join(errors),
              messages=[message_doc(m) for m in messages])
    try:
        config = DeployConfig.from_env(**settings)
    except ConfigError as exc:
        _fail(as_json, EXIT_INVALID, str(exc))
    return app, config


def _images(path: str | None, as_json: bool) -> dict[str, str] | None:
    if not path:
        return None
    from scanflow_jupyter.kubernetes.config import ConfigError, images_from_build_report

    try:
        return images_from_build_report(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            _fail(as_json, EXIT_INVALID, str(exc))
        _fail(as_json, EXIT_INVALID, f"cannot read the images file {path}: {exc}. "
              "Fix: scanflow build NOTEBOOK --push REGISTRY --json > images.json")


def _manifests(app: Any, config: Any, as_json: bool) -> list[Any]:
    from scanflow_jupyter.kubernetes.environment import plan
    from scanflow_jupyter.kubernetes.manifests import ManifestError
    from scanflow_jupyter.kubernetes.validation import ManifestInvalid

    try:
        return plan(app, config)
    except ManifestInvalid as exc:
        _fail(as_json, EXIT_INVALID, str(exc), problems=[p.to_dict() for p in exc.problems])
    except ManifestError as exc:
        _fail(as_json, EXIT_INVALID, str(exc))


def _print_outcome(outcome: Any) -> None:
    for o in outcome.objects:
        where = f"{o.kind}/{o.name}"
        click.echo(f"{where:<48} {o.action}" + (f"  {o.error}" if o.error else ""))
    counts = ", ".join(f"{n} {a}" for a, n in sorted(outcome.counts().items()))
    dry = " (dry run)" if outcome.dry_run else ""
    click.echo(f"namespace {outcome.namespace}: {counts}{dry} in {outcome.seconds:.2f}s")
    for note in outcome.notes:
        click.echo(f"note: {note}", err=True)


@click.command()
@click.argument("notebook", type=click.Path())
@_target_options
@click.option("--registry", help="registry in front of the image names (default: $SCANFLOW_REGISTRY).")
@click.option("--images", "images_file", type=click.Path(dir_okay=False),
              help="the JSON of `scanflow build --json` (pins each agent/service image).")
@click.option("--storage", "storage_mode", type=click.Choice(["sqlite", "postgres", "ephemeral"]), default=None,
              help="the tracker's storage: sqlite on a volume (default), postgres (PostgreSQL + artifacts in the "
              "environment's S3 server) or ephemeral (no volumes; data lost with the pods). Default: "
              "$SCANFLOW_K8S_STORAGE or sqlite.")
@click.option("--storage-class", help="StorageClass of the tracker's volume (default: $SCANFLOW_K8S_STORAGE_CLASS "
              "or the cluster's default).")
@click.option("--dry-run", is_flag=True, help="Validate, and let the server dry-run the apply; change nothing.")
@click.option("--wait", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="Wait until every object is ready (at most SECONDS).")
def deploy(notebook: str, context: str | None, kubeconfig: str | None, namespace: str | None, team: str | None,
           as_json: bool, registry: str | None, images_file: str | None, storage_mode: str | None,
           storage_class: str | None, dry_run: bool, wait: float | None) -> None:
    """Create or update the Kubernetes team environment of NOTEBOOK (idempotent)."""
    from scanflow_jupyter.kubernetes.client import ClusterError
    from scanflow_jupyter.kubernetes.environment import (
        ApplyFailed,
        apply_manifests,
        connect,
        wait_ready,
    )
    from scanflow_jupyter.kubernetes.manifests import team_of

    app, config = _load(notebook, as_json, context=context, kubeconfig=kubeconfig, namespace=namespace,
                        team=team, registry=registry, images=_images(images_file, as_json),
                        storage_class=storage_class, storage_mode=storage_mode)
    manifests = _manifests(app, config, as_json)
    try:
        cluster = connect(config)
        try:
            outcome = apply_manifests(manifests, cluster, app=app.name, team=team_of(app, config), dry_run=dry_run)
            ready = None
            if wait and not dry_run:
                ready = wait_ready(app, config, cluster, timeout=wait)
                if not ready.ready:
                    outcome.notes.append("not ready after {:g} s: {}".format(wait, ", ".join(
                        f"{o.kind}/{o.name} ({o.detail})" for o in ready.objects if not o.ready)))
        finally:
            cluster.close()
    except ApplyFailed as exc:
        _fail(as_json, EXIT_CLUSTER, str(exc), object=exc.object, field=exc.field, **exc.outcome.to_dict())
    except ClusterError as exc:
        _fail(as_json, EXIT_CLUSTER, str(exc), object=exc.object, field=exc.field)
    if as_json:
        doc = outcome.to_dict()
        if ready is not None:
            doc["ready"] = ready.ready
        click.echo(json.dumps(doc, indent=2))
    else:
        _print_outcome(outcome)
    sys.exit(EXIT_CLUSTER if ready is not None and not ready.ready else EXIT_OK)


@click.command()
@click.argument("notebook", type=click.Path())
@_target_options
@click.option("--dry-run", is_flag=True, help="Only list what would be deleted.")
@click.option("--wait", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="Wait until the namespace is gone (at most SECONDS).")
def undeploy(notebook: str, context: str | None, kubeconfig: str | None, namespace: str | None, team: str | None,
             as_json: bool, dry_run: bool, wait: float | None) -> None:
    """Delete exactly what `scanflow deploy` created for NOTEBOOK (by labels), namespace last."""
    from scanflow_jupyter.kubernetes.client import ClusterError
    from scanflow_jupyter.kubernetes.environment import undeploy as undeploy_env

    app, config = _load(notebook, as_json, context=context, kubeconfig=kubeconfig, namespace=namespace, team=team)
    try:
        outcome = undeploy_env(app, config, wait=wait, dry_run=dry_run)
    except ClusterError as exc:
        _fail(as_json, EXIT_CLUSTER, str(exc), object=exc.object, field=exc.field)
    if as_json:
        click.echo(json.dumps(outcome.to_dict(), indent=2))
    else:
        _print_outcome(outcome)


@click.command()
@click.argument("notebook", type=click.Path())
@_target_options
@click.option("--storage", "storage_mode", type=click.Choice(["sqlite", "postgres", "ephemeral"]), default=None,
              help="the storage the environment was deployed with: sqlite on a volume (default), postgres (PostgreSQL + artifacts in the "
              "environment's S3 server) or ephemeral (no volumes; data lost with the pods). Default: "
              "$SCANFLOW_K8S_STORAGE or sqlite.")
def status(notebook: str, context: str | None, kubeconfig: str | None, namespace: str | None, team: str | None,
           as_json: bool, storage_mode: str | None) -> None:
    """Readiness of every object of NOTEBOOK's environment (exit 0 only when all are ready)."""
    from scanflow_jupyter.kubernetes.client import ClusterError
    from scanflow_jupyter.kubernetes.environment import status as env_status
    from scanflow_jupyter.kubernetes.manifests import ManifestError

    app, config = _load(notebook, as_json, context=context, kubeconfig=kubeconfig, namespace=namespace, team=team,
                        storage_mode=storage_mode)
    try:
        current = env_status(app, config)
    except ManifestError as exc:
        _fail(as_json, EXIT_INVALID, str(exc))
    except ClusterError as exc:
        _fail(as_json, EXIT_CLUSTER, str(exc), object=exc.object, field=exc.field)
    if as_json:
        click.echo(json.dumps(current.to_dict(), indent=2))
    else:
        for o in current.objects:
            state = "ready" if o.ready else ("NOT READY" if o.exists else "missing")
            click.echo(f"{o.kind + '/' + o.name:<48} {state:<10} {o.detail}")
        summary = "ready" if current.ready else ("not ready" if current.deployed else "not deployed")
        click.echo(f"namespace {current.namespace}: {summary}")
    sys.exit(EXIT_OK if current.ready else EXIT_CLUSTER)


@click.command()
@click.argument("notebook", type=click.Path())
@click.option("--to", "target", type=click.Choice(["k8s", "argo"]), required=True,
              help="k8s: the team environment's manifests; argo: the pipeline as an Argo Workflow.")
@click.option("-o", "--output", "output", type=click.Path(file_okay=False),
              help="Folder to write <namespace>.yaml / <notebook>.argo.yaml into (default: stdout).")
@click.option("--namespace", help="namespace (default: scanflow-<app>-<team>).")
@click.option("--team", help="team (default: %scanflow_app --team, else 'default').")
@click.option("--registry", help="registry in front of the image names (default: $SCANFLOW_REGISTRY).")
@click.option("--images", "images_file", type=click.Path(dir_okay=False),
              help="the JSON of `scanflow build --json` (pins each image).")
@click.option("--image", "image_items", multiple=True, metavar="STEP=REF",
              help="argo: image of one step ('*=REF': every step); no Docker Engine needed when all are given.")
@click.option("-p", "--param", "param_items", multiple=True, metavar="KEY=VALUE", help="argo: pipeline parameter.")
@click.option("--store-claim", help="argo: existing PVC for the run store (default: $SCANFLOW_K8S_STORE_CLAIM, "
              "else a claim template per Workflow).")
@click.option("--build", is_flag=True, help="argo: build missing images first (and push with --registry).")
def export(notebook: str, target: str, output: str | None, namespace: str | None, team: str | None,
           registry: str | None, images_file: str | None, image_items: tuple[str, ...],
           param_items: tuple[str, ...], store_claim: str | None, build: bool) -> None:
    """Write NOTEBOOK's validated manifests (--to k8s) or its pipeline Workflow (--to argo) as YAML."""
    if target == "argo":
        text, name = _export_argo(notebook, namespace, registry, images_file, image_items, param_items,
                                  store_claim, build), f"{Path(notebook).stem}.argo.yaml"
    else:
        from scanflow_jupyter.kubernetes.manifests import namespace_name, to_yaml

        app, config = _load(notebook, False, namespace=namespace, team=team, registry=registry,
                            images=_images(images_file, False))
        text, name = to_yaml(_manifests(app, config, False)), f"{namespace_name(app, config)}.yaml"
    if output is None:
        click.echo(text, nl=False)
        return
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if target == "k8s":  # the file holds the environment's Secret (credentials, base64): its owner only
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    click.echo(str(path))


def _export_argo(notebook: str, namespace: str | None, registry: str | None, images_file: str | None,
                 image_items: tuple[str, ...], param_items: tuple[str, ...], store_claim: str | None,
                 build: bool) -> str:
    """The Argo Workflow YAML of NOTEBOOK (exit 2 for invalid input, 1 when a build fails)."""
    from scanflow_jupyter.build.builder import BuildError
    from scanflow_jupyter.kubernetes.workflow import export_workflow_yaml, parse_image_overrides
    from scanflow_jupyter.params import parse_params
    from scanflow_jupyter.runtime.runner import InvalidApplication

    try:
        images = {**(_images(images_file, False) or {}), **parse_image_overrides(image_items)}
        return export_workflow_yaml(
            notebook, images=images or None, registry=registry or os.environ.get("SCANFLOW_REGISTRY"),
            build=build, namespace=namespace or os.environ.get("SCANFLOW_K8S_NAMESPACE"),
            params=parse_params(param_items), store_claim=store_claim or os.environ.get("SCANFLOW_K8S_STORE_CLAIM"))
    except InvalidApplication as exc:
        _fail(False, EXIT_INVALID, f"the notebook is invalid; nothing was exported:\n{exc}")
    except ValueError as exc:  # WorkflowCompileError, bad --image / -p
        _fail(False, EXIT_INVALID, str(exc))
    except BuildError as exc:
        _fail(False, EXIT_CLUSTER, str(exc))
