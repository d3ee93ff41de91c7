"""Compile an application's pipeline into an Argo `Workflow` (built offline with hera) and export it.

One DAG task per executor; task dependencies are the pipeline edges. The DAG does not fail fast:
like the local runner, independent branches finish after a step fails (Argo never starts the
dependents of a failed task). Each task's pod:

* runs the step **image** (see `scanflow_jupyter.build`): the caller passes `images` (step ->
  reference). `resolve_images` computes them: `<registry>/scanflow/<app>-<step>@sha256:<digest>`
  when the content-hash tag has been pushed to `registry` (the engine knows the repo digest: a
  digest pins the exact bytes the cluster pulls, whatever later happens to the tag), otherwise
  the content-addressed tag `scanflow/<app>-<step>:<hash12>` (never re-used for other content, so
  it is safe for a cluster that shares the local engine's images, e.g. kind/minikube-style);
* runs `python -m scanflow_jupyter.runtime.kubernetes_backend step ...`: it reads the step
  notebook baked into the image (/opt/scanflow/step.ipynb), injects the pipeline parameters
  (env `SCANFLOW_PARAM_<name>`, from the Workflow arguments, Python literals) and the run context
  (inputs read from the producers' folders), then runs it with `execute_step` like the docker
  backend does;
* mounts the run store at `/scanflow/store` (`<store>/<run_id>/<step>/{input.ipynb,
  output.ipynb, log.txt, outputs/}`) from an existing PVC (`store_claim`) or from a
  `volumeClaimTemplates` entry created (and garbage-collected) with the Workflow — or, with
  `object_store` (`s3://bucket/prefix`, the team environment's run store), a scratch emptyDir:
  the step downloads its inputs from and uploads its folder to the object store
  (`--object-store`); `--mlflow-run-id` names the step's MLflow run, created by the runner;
* gets `MLFLOW_TRACKING_URI` & co. from the team environment ConfigMap (`envFrom`) and the S3
  keys from its Secret (`secretKeyRef`): never a literal credential; both are optional, so a
  namespace without a deployed team environment still runs (steps then track nowhere);
* carries `--cpu/--memory/--gpu` as resources, `--retries` as `retryStrategy.limit`,
  `--timeout` as `activeDeadlineSeconds` (per attempt, as locally);
* is labelled `scanflow.io/app`, `scanflow.io/team`, `scanflow.io/run-id`, `scanflow.io/step`;
* passes Pod Security `restricted`: the Workflow's pod securityContext (non-root numeric user,
  fsGroup for the store volume, RuntimeDefault seccomp), the step container's own context (no
  privilege escalation, no capabilities) and a `podSpecPatch` giving Argo's executor containers
  (`init`, `wait`) the same, whatever the workflow-controller's executor configuration says.

hera is imported lazily: the in-pod entry point never needs it.
"""

from __future__ import annotations

import copy
import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scanflow_jupyter.kubernetes.manifests import POD_USER_ENV, RUN_AS_USER
from scanflow_jupyter.kubernetes.manifests import dns_label as env_label
from scanflow_jupyter.model import Application, Pipeline
from scanflow_jupyter.runtime.constants import ENV_CONFIGMAP, ENV_SECRET, PARAM_ENV_PREFIX
from scanflow_jupyter.runtime.figures import INLINE_BACKEND

STORE_MOUNT = "/scanflow/store"
STORE_VOLUME = "scanflow-store"
STEP_WORKDIR = "/opt/scanflow"
STEP_ENTRY = ["python", "-m", "scanflow_jupyter.runtime.kubernetes_backend", "step"]
ENTRYPOINT = "pipeline"
DEFAULT_CONFIG_MAP = ENV_CONFIGMAP  # of the team environment
DEFAULT_SECRET = ENV_SECRET  # keys: aws-access-key-id, ...
# Step env var <- key of the team Secret (optional: absent keys are simply not set).
SECRET_ENV = {"AWS_ACCESS_KEY_ID": "aws-access-key-id", "AWS_SECRET_ACCESS_KEY": "aws-secret-access-key"}
DEFAULT_STORE_SIZE = "1Gi"
LABEL_APP = "scanflow.io/app"
LABEL_TEAM = "scanflow.io/team"
LABEL_RUN_ID = "scanflow.io/run-id"
LABEL_STEP = "scanflow.io/step"
ANNOTATION_STEP = "scanflow.io/step-name"
EXECUTOR_CONTAINERS = {"initContainers": "init", "containers": "wait"}  # Argo's own, per pod spec list
CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True,
                      "seccompProfile": {"type": "RuntimeDefault"}}


def executor_patch() -> str:
    """Argo's `podSpecPatch` (YAML) giving its executor containers the restricted securityContext."""
    from scanflow_jupyter.kubernetes.yaml_text import dump

    return dump({key: [{"name": name, "securityContext": copy.deepcopy(CONTAINER_SECURITY)}]
                 for key, name in EXECUTOR_CONTAINERS.items()})


class WorkflowCompileError(ValueError):
    """The pipeline cannot be compiled as asked (missing image, bad option); says how to fix it."""


def dns_label(text: str, limit: int = 63) -> str:
    """`text` as a DNS-1123 label (the rule of the team environment), cut to at most `limit`."""
    return env_label(text)[:limit].strip("-") or "x"


def label_value(text: str) -> str:
    """A Kubernetes label value (at most 63 characters, alphanumeric at both ends)."""
    out = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", out)


def default_namespace(app: Application) -> str:
    """`scanflow-<app>-<team>`: the team environment's namespace (the rule of `scanflow deploy`)."""
    return f"scanflow-{env_label(app.name)}-{env_label(app.team or 'default')}"


def task_names(steps: list[str]) -> dict[str, str]:
    """Step name -> Argo task/template name (DNS label; a hash suffix keeps them distinct)."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for step in steps:
        name = dns_label(step, 50)
        if name in used or name == ENTRYPOINT:
            name = f"{name}-{hashlib.sha256(step.encode()).hexdigest()[:6]}"
        used.add(name)
        out[step] = name
    return out


@dataclass
class WorkflowOptions:
    """How to compile: where, which images, which storage; see the module docstring.

    `pod_metadata` maps a step name (or "*" for every step) to {"labels": {...},
    "annotations": {...}} added to that step's pods: for cluster policies, and for tests (kwok's
    fake failure label). It is never taken from a magic.
    """

    images: Mapping[str, str]
    namespace: str | None = None
    run_id: str | None = None
    params: Mapping[str, Any] | None = None
    steps: list[str] | None = None
    store_claim: str | None = None
    store_size: str = DEFAULT_STORE_SIZE
    store_class: str | None = None
    config_map: str = DEFAULT_CONFIG_MAP
    secret: str | None = DEFAULT_SECRET
    service_account: str | None = None
    image_pull_policy: str = "IfNotPresent"
    object_store: str | None = None  # s3://bucket/prefix: the run store (then a scratch emptyDir in each pod)
    mlflow_run_ids: Mapping[str, str] = field(default_factory=dict)  # step -> its MLflow run (made by the runner)
    pod_metadata: Mapping[str, Mapping[str, Mapping[str, str]]] = field(default_factory=dict)


def workflow_name(app: Application, run_id: str) -> str:
    """`scanflow-<app>-<run id>` as a DNS label; a long app name is shortened, never the run id."""
    run = dns_label(run_id, 40)
    return f"{dns_label(f'scanflow-{app.name}', 62 - len(run))}-{run}"


def _param_literal(value: Any) -> str:
    return repr(value)


def _resources(ex: Any) -> Any:
    from hera.workflows import models as m

    res = ex.resources
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if res.cpu:
        requests["cpu"] = limits["cpu"] = str(res.cpu)
    if res.memory:
        requests["memory"] = limits["memory"] = str(res.memory)
    if res.gpu:
        limits["nvidia.com/gpu"] = str(res.gpu)
    if not requests and not limits:
        return None
    return m.ResourceRequirements(requests=requests or None, limits=limits or None)


def _pod_metadata(options: WorkflowOptions, step: str) -> tuple[dict[str, str], dict[str, str]]:
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    for key in ("*", step):
        extra = options.pod_metadata.get(key) or {}
        labels.update(extra.get("labels") or {})
        annotations.update(extra.get("annotations") or {})
    return labels, annotations


def compile_workflow(app: Application, options: WorkflowOptions) -> dict[str, Any]:
    """The Argo Workflow (a plain dict, ready for the API or YAML) running `app`'s pipeline."""
    from hera.workflows import DAG, Container, Task, Workflow
    from hera.workflows import models as m

    pipeline = Pipeline.from_application(app)
    selected = [s for s in pipeline.steps if options.steps is None or s in options.steps]
    unknown = sorted(set(options.steps or []) - set(pipeline.steps))
    if unknown:
        raise WorkflowCompileError(f"no executor named {', '.join(unknown)}; known: {', '.join(pipeline.steps)}.")
    missing = [s for s in selected if not options.images.get(s) and not options.images.get("*")]
    if missing:
        raise WorkflowCompileError(
            f"no image for step(s) {', '.join(missing)}. Fix: build them (`scanflow build NOTEBOOK`, add "
            "`--push REGISTRY` for a remote cluster) or pass --image STEP=REF.")
    params = dict(app.parameters)
    for name, value in (options.params or {}).items():
        if name not in app.parameters:
            raise WorkflowCompileError(f"-p {name}: the notebook has no parameter '{name}'. "
                                       f"Fix: use one of {', '.join(app.parameters) or 'none'}.")
        params[name] = value
    run_id = options.run_id
    names = task_names(selected)
    # the same label values as the team environment, so `scanflow undeploy` finds the Workflows
    common = {LABEL_APP: env_label(app.name), LABEL_TEAM: env_label(app.team or "default")}
    if run_id:
        common[LABEL_RUN_ID] = label_value(run_id)
    env_from = [m.EnvFromSource(config_map_ref=m.ConfigMapEnvSource(name=options.config_map, optional=True))]
    secret_env = [
        m.EnvVar(name=var, value_from=m.EnvVarSource(
            secret_key_ref=m.SecretKeySelector(name=options.secret, key=key, optional=True)))
        for var, key in SECRET_ENV.items()
    ] if options.secret else []
    mount = m.VolumeMount(name=STORE_VOLUME, mount_path=STORE_MOUNT)

    templates: list[Any] = []
    for step in selected:
        ex = pipeline.steps[step].executor
        args = ["--step", step, "--store", STORE_MOUNT, "--run-id", run_id or "{{workflow.name}}"]
        for var, producer in app.input_producers(ex).items():  # the nearest producer above
            args += ["--input", f"{var}={producer}"]
        if options.object_store:
            args += ["--object-store", options.object_store]
        if options.mlflow_run_ids.get(step):
            args += ["--mlflow-run-id", options.mlflow_run_ids[step]]
        env = [
            m.EnvVar(name="SCANFLOW_RUN_ID", value=run_id or "{{workflow.name}}"),
            m.EnvVar(name="SCANFLOW_STEP_NAME", value=step),
            m.EnvVar(name="MLFLOW_EXPERIMENT_NAME", value=app.name),
            m.EnvVar(name="PYTHONUNBUFFERED", value="1"),
            m.EnvVar(name="MPLBACKEND", value=INLINE_BACKEND),
            *(m.EnvVar(name=k, value=v) for k, v in POD_USER_ENV.items()),
        ]
        env += secret_env
        env += [m.EnvVar(name=f"{PARAM_ENV_PREFIX}{p}", value=f"{{{{workflow.parameters.{p}}}}}") for p in params]
        extra_labels, annotations = _pod_metadata(options, step)
        retry = None
        if ex.retries:
            retry = m.RetryStrategy(limit=m.IntOrString(ex.retries), retry_policy="Always")
        templates.append(Container(
            name=names[step],
            image=options.images.get(step) or options.images["*"],
            image_pull_policy=options.image_pull_policy,
            command=list(STEP_ENTRY),
            args=args,
            working_dir=STEP_WORKDIR,
            env=env,
            env_from=env_from,
            volume_mounts=[mount],
            security_context=m.SecurityContext(
                allow_privilege_escalation=False, capabilities=m.Capabilities(drop=["ALL"]), run_as_non_root=True,
                seccomp_profile=m.SeccompProfile(type="RuntimeDefault")),
            resources=_resources(ex),
            retry_strategy=retry,
            active_deadline_seconds=math.ceil(ex.timeout) if ex.timeout else None,
            labels={**common, LABEL_STEP: label_value(step), **extra_labels},
            annotations={ANNOTATION_STEP: step, **annotations},
        ))
    dag = DAG(name=ENTRYPOINT, fail_fast=False, tasks=[
        Task(name=names[s], template=names[s],
             dependencies=[names[d] for d in pipeline.steps[s].depends_on if d in names] or None)
        for s in selected
    ])
    volumes = None
    claims = None
    if options.object_store and not options.store_claim:
        volumes = [m.Volume(name=STORE_VOLUME, empty_dir=m.EmptyDirVolumeSource())]
    elif options.store_claim:
        volumes = [m.Volume(name=STORE_VOLUME,
                            persistent_volume_claim=m.PersistentVolumeClaimVolumeSource(claim_name=options.store_claim))]
    else:
        claims = [m.PersistentVolumeClaim(
            metadata=m.ObjectMeta(name=STORE_VOLUME),
            spec=m.PersistentVolumeClaimSpec(
                access_modes=["ReadWriteOnce"], storage_class_name=options.store_class,
                resources=m.VolumeResourceRequirements(requests={"storage": m.Quantity(options.store_size)})))]
    wf = Workflow(
        api_version="argoproj.io/v1alpha1",
        kind="Workflow",
        name=workflow_name(app, run_id) if run_id else None,
        generate_name=None if run_id else dns_label(f"scanflow-{app.name}", 50) + "-",
        namespace=options.namespace or default_namespace(app),
        labels={**common, "app.kubernetes.io/managed-by": "scanflow", "app.kubernetes.io/part-of": "scanflow"},
        annotations={"scanflow.io/notebook": Path(app.notebook).name},
        entrypoint=ENTRYPOINT,
        service_account_name=options.service_account,
        security_context=m.PodSecurityContext(
            run_as_non_root=True, run_as_user=RUN_AS_USER, run_as_group=RUN_AS_USER, fs_group=RUN_AS_USER,
            fs_group_change_policy="OnRootMismatch", seccomp_profile=m.SeccompProfile(type="RuntimeDefault")),
        pod_spec_patch=executor_patch(),
        arguments=[m.Parameter(name=p, value=_param_literal(v)) for p, v in params.items()] or None,
        volumes=volumes,
        volume_claim_templates=claims,
        templates=[dag, *templates],
    )
    workflow = wf.to_dict()
    _check(workflow)
    return workflow


def _check(workflow: dict[str, Any]) -> None:
    """Validate the Workflow like every manifest (structure, names, labels, resource quantities)."""
    from scanflow_jupyter.kubernetes.validation import validate_manifest

    problems = validate_manifest(workflow)
    if problems:
        listed = "\n".join(f"  {p}" for p in problems)
        raise WorkflowCompileError(f"the generated Workflow is invalid; nothing was submitted:\n{listed}")


def dump_yaml(workflow: dict[str, Any]) -> str:
    """The Workflow as YAML (keys in the order built: apiVersion, kind, metadata, spec)."""
    from scanflow_jupyter.kubernetes.yaml_text import dump

    return dump(workflow)


# --------------------------------------------------------------------------- images


def pinned_reference(ref: str, repo_digests: list[str], registry: str | None) -> str:
    """`registry/repo@sha256:...` if `ref` (registry/repo:tag) was pushed, else `ref` itself."""
    if not registry:
        return ref
    repository = ref.rsplit(":", 1)[0] if ":" in ref.rsplit("/", 1)[-1] else ref
    for digest in repo_digests:
        if digest.split("@", 1)[0] == repository:
            return digest
    return ref


def resolve_images(app: Application, *, registry: str | None = None, build: bool = False,
                   steps: list[str] | None = None, log: Any = None) -> dict[str, str]:
    """Step -> image reference, computed by the image builder (needs a Docker Engine).

    `build` builds what is missing (and pushes when `registry` is set); otherwise only the
    content-addressed references are computed. Pushed images are referenced by digest.
    """
    from scanflow_jupyter.build.builder import ImageBuilder

    names = steps or [ex.name for ex in app.executors]
    builder = ImageBuilder(app, registry=registry, log=log)
    if build:
        report = builder.build(names, push=bool(registry), check_imports=False)
        refs = {n: r.image for n, r in report.images.items() if r.kind == "executor"}
    else:
        refs = {ctx.name: ctx.ref(registry) for ctx in builder.contexts(names) if ctx.kind == "executor"}
    out = {}
    for name, ref in refs.items():
        digests: list[str] = []
        if registry:
            try:
                digests = list(builder.client.images.get(ref).attrs.get("RepoDigests") or [])
            except Exception:  # noqa: BLE001 - not on this engine: keep the tag
                digests = []
        out[name] = pinned_reference(ref, digests, registry)
    return out


def parse_image_overrides(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """`["train=repo/x:1", "*=repo/all:2"]` -> mapping; ValueError names a malformed item."""
    out: dict[str, str] = {}
    for item in items:
        step, sep, ref = item.partition("=")
        if not sep or not step.strip() or not ref.strip():
            raise ValueError(f"--image expects STEP=REF (or *=REF for every step), got '{item}'.")
        out[step.strip()] = ref.strip()
    return out


def export_workflow_yaml(notebook: str | Path, *, images: Mapping[str, str] | None = None,
                         registry: str | None = None, build: bool = False, namespace: str | None = None,
                         params: Mapping[str, Any] | None = None, store_claim: str | None = None,
                         config_map: str = DEFAULT_CONFIG_MAP, secret: str | None = DEFAULT_SECRET,
                         service_account: str | None = None) -> str:
    """`scanflow export NOTEBOOK --to argo`: the pipeline as an Argo Workflow YAML document.

    Raises `InvalidApplication` for a bad notebook, `WorkflowCompileError` for bad options.
    Without `images`, references come from `resolve_images` (a Docker Engine is needed).
    """
    from scanflow_jupyter.notebook.application import load_application

    app, _ = load_application(notebook)
    images = dict(images or {})
    missing = [ex.name for ex in app.executors if ex.name not in images]
    if missing and "*" not in images:
        from scanflow_jupyter.build.builder import EngineUnavailable

        try:
            resolved = resolve_images(app, registry=registry, build=build, steps=missing)
        except EngineUnavailable as exc:
            raise WorkflowCompileError(f"{exc} Or give every image: --image STEP=REF (--image '*=REF' for all "
                                       "steps) needs no Docker Engine.") from exc
        images = {**resolved, **images}
    wf = compile_workflow(app, WorkflowOptions(
        images=images, namespace=namespace, params=params, store_claim=store_claim, config_map=config_map,
        secret=secret, service_account=service_account))
    return dump_yaml(wf)
