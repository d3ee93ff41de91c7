"""The kubernetes backend: the pipeline's steps run as one Argo Workflow (entry point `kubernetes`).

A whole-pipeline backend (`execution = "whole_pipeline"`, see `runtime.backends`): the runner
settles cached and reused steps and creates the MLflow runs, then calls `run_pipeline(job)`
with the steps left to execute. This backend resolves the step images, compiles the Workflow
(`scanflow_jupyter.kubernetes.workflow`), submits it, follows it (`kubernetes.argo_run`) and
reports each step's start, retries, logs and end to the runner, which keeps `run.json`,
`events.jsonl`, the cache and MLflow exactly as for a local run. Cancellation (Ctrl-C, SIGTERM)
sets the Workflow's `spec.shutdown: Terminate`.

**The team environment** (`scanflow deploy`) gives the namespace a ConfigMap `scanflow-env`:
- with `SCANFLOW_RUN_STORE` (`s3://bucket/prefix`), the run store is the environment's object
  store: each step pod downloads its inputs, runs, and uploads its folder
  (`<prefix>/<run_id>/<step>/`); this process uploads reused outputs first and fetches each
  finished step's folder into `.scanflow/runs/<run_id>/<step>/`, so cache, `--only`,
  `--resume`, the sidebar and `scanflow runs` work as on the local backend. Without it the run
  store is a volume (`SCANFLOW_K8S_STORE_CLAIM` or a claim per Workflow) that stays in the
  cluster: outputs are not fetched and nothing is cached.
- with `MLFLOW_TRACKING_URI`, that tracker is the run's: parent and step runs are created in it
  and each pod gets its step run's id (`MLFLOW_RUN_ID`), so `mlflow.log_*` in a step lands in
  its step run; output notebooks and logs become its artifacts.
This process reaches the tracker and the object store through the API server (port-forward,
`kubernetes.tunnel`), or at `SCANFLOW_K8S_TRACKER_URL` / `SCANFLOW_K8S_S3_URL` when set.

Settings (environment variables; options of the same name, lower-case without prefix, win):

| setting | variable | default |
| --- | --- | --- |
| kubeconfig | `KUBECONFIG` | ~/.kube/config, else the in-cluster service account |
| context | `SCANFLOW_K8S_CONTEXT` | the kubeconfig's current context |
| namespace | `SCANFLOW_K8S_NAMESPACE` | `scanflow-<app>-<team>` (the team environment) |
| run store volume | `SCANFLOW_K8S_STORE_CLAIM` (an existing PVC) | the object store, else a claim per Workflow |
| images | `SCANFLOW_K8S_IMAGES` (JSON {step or "*": ref}) | built here (Docker), pushed to `SCANFLOW_REGISTRY` |
| service account | `SCANFLOW_K8S_SERVICE_ACCOUNT` | `scanflow` if the namespace has it |
| extra pod metadata | `SCANFLOW_K8S_POD_METADATA` (JSON {step or "*": {"labels": .., "annotations": ..}}) | none |
| tracker URL from here | `SCANFLOW_K8S_TRACKER_URL` | a port-forward to the environment's tracker |
| object store URL from here | `SCANFLOW_K8S_S3_URL` | a port-forward to the environment's S3 server |

Run as `python -m scanflow_jupyter.runtime.kubernetes_backend step ...`, this module is also the
command of every step pod (see `step_main`).
"""

from __future__ import annotations

import ast
import asyncio
import functools
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from scanflow_jupyter.runtime.backends import (
    Availability,
    Backend,
    PipelineJob,
    StepJob,
    StepOutcome,
    TrackingTarget,
)
from scanflow_jupyter.runtime.constants import (
    ENV_CONFIGMAP,
    ENV_SECRET,
    PARAM_ENV_PREFIX,
    STEP_NOTEBOOK,
)

RUN_STORE_KEY = "SCANFLOW_RUN_STORE"
S3_ENDPOINT_KEY = "SCANFLOW_S3_ENDPOINT_URL"


def _json_env(name: str, environ: dict[str, str]) -> dict[str, Any]:
    text = environ.get(name, "").strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{name} is not valid JSON ({exc}). Fix: e.g. {name}='{{\"*\": ...}}'.") from exc
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a JSON object keyed by step name (or \"*\").")
    return value


def _service_of(url: str, default_port: int) -> tuple[str, int]:
    """(Service name, port) of an in-cluster URL such as http://scanflow-s3.NS.svc:9000."""
    parts = urlsplit(url)
    return (parts.hostname or "").split(".", 1)[0], parts.port or default_port


class KubernetesBackend(Backend):
    """Run the pipeline as an Argo Workflow in a Kubernetes namespace."""

    name = "kubernetes"
    execution: ClassVar[str] = "whole_pipeline"
    capabilities: ClassVar[frozenset[str]] = frozenset({"cache", "resume", "only", "logs", "cancel", "retries"})
    settings_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "context": {"type": "string", "description": "kubeconfig context (SCANFLOW_K8S_CONTEXT)"},
            "namespace": {"type": "string", "description": "namespace (SCANFLOW_K8S_NAMESPACE)"},
            "registry": {"type": "string", "description": "registry the step images are pushed to (SCANFLOW_REGISTRY)"},
            "store_claim": {"type": "string", "description": "PVC as run store (SCANFLOW_K8S_STORE_CLAIM)"},
            "service_account": {"type": "string", "description": "pods' ServiceAccount"},
        },
    }

    def __init__(self, app: Any, options: dict[str, Any] | None = None) -> None:
        super().__init__(app, options)
        self._api: Any = None
        self._namespace: str | None = None
        self._env: dict[str, str] = {}
        self._tracker_tunnel: Any = None
        self._s3_tunnel: Any = None
        self._lock = threading.Lock()

    @classmethod
    def available(cls) -> Availability:
        try:
            import hera  # noqa: F401
            import kubernetes  # noqa: F401
        except ImportError as exc:
            return Availability(False, f"a Python package is missing: {exc.name}",
                                "pip install 'scanflow-jupyter' (it brings kubernetes and hera).")
        kubeconfig = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
        if not any(Path(p).is_file() for p in kubeconfig.split(os.pathsep)) and not os.environ.get("KUBERNETES_SERVICE_HOST"):
            return Availability(False, f"no kubeconfig ({kubeconfig}) and not running in a pod",
                                "export KUBECONFIG=/path/to/kubeconfig (and SCANFLOW_K8S_CONTEXT to pick a context).")
        return Availability(True)

    def setting(self, key: str, env: str, default: Any = None) -> Any:
        if self.options.get(key) is not None:
            return self.options[key]
        return os.environ.get(env) or default

    # ------------------------------------------------------------------ cluster and environment
    def _connect(self) -> None:
        """API client, namespace and the team environment's ConfigMap (once per run)."""
        from kubernetes import client

        from scanflow_jupyter.kubernetes import argo_run
        from scanflow_jupyter.kubernetes.workflow import default_namespace

        with self._lock:
            if self._api is not None:
                return
            api = argo_run.kube_client(self.setting("context", "SCANFLOW_K8S_CONTEXT"), self.options.get("kubeconfig"))
            namespace = self.setting("namespace", "SCANFLOW_K8S_NAMESPACE") or default_namespace(self.app)
            core = client.CoreV1Api(api)
            try:
                core.read_namespace(namespace, _request_timeout=15)
            except client.exceptions.ApiException as exc:
                if exc.status == 404:
                    raise argo_run.KubernetesUnavailable(
                        f"namespace '{namespace}' does not exist. Fix: deploy the team environment (`scanflow deploy "
                        f"{Path(self.app.notebook).name}`) or set SCANFLOW_K8S_NAMESPACE to an existing namespace.") from exc
                if exc.status != 403:  # 403: may not read namespaces, may still create workflows
                    raise argo_run.KubernetesUnavailable(f"the API server answered {exc.status} {exc.reason}.") from exc
            except Exception as exc:  # noqa: BLE001
                raise argo_run.KubernetesUnavailable(
                    f"the Kubernetes API server does not answer: {exc}. Fix: check that the cluster is up "
                    "(`kubectl cluster-info`) and KUBECONFIG.") from exc
            try:
                env = core.read_namespaced_config_map(ENV_CONFIGMAP, namespace, _request_timeout=15).data or {}
            except Exception:  # noqa: BLE001 - no team environment (or not readable): plain namespace
                env = {}
            self._api, self._namespace, self._env = api, namespace, dict(env)

    def _tunnel(self, in_cluster_url: str, default_port: int) -> str:
        from scanflow_jupyter.kubernetes.tunnel import ServiceTunnel

        service, port = _service_of(in_cluster_url, default_port)
        return ServiceTunnel(self._api, self._namespace or "", service, port).open()

    def tracking_target(self) -> TrackingTarget | None:
        """The environment's tracker (its ConfigMap's MLFLOW_TRACKING_URI), reached from here."""
        self._connect()
        steps_uri = self._env.get("MLFLOW_TRACKING_URI")
        if not steps_uri:
            return None
        local = self.setting("tracker_url", "SCANFLOW_K8S_TRACKER_URL")
        if not local:
            self._tracker_tunnel = self._tunnel(steps_uri, 5000)
            local = self._tracker_tunnel.url
            # large artifacts would otherwise go through presigned URLs naming the in-cluster S3
            # Service, which this machine cannot resolve: keep them on the tracker's proxy
            for var in ("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD"):
                os.environ.setdefault(var, "false")
        return TrackingTarget(local, steps_uri, close=self._close_tracker)

    def _close_tracker(self) -> None:
        if self._tracker_tunnel is not None:
            self._tracker_tunnel.close()
            self._tracker_tunnel = None

    def _object_store(self) -> tuple[Any, Any] | None:
        """(S3Client, StoreURI) of the environment's run store, or None (no object store: a volume)."""
        import base64

        from kubernetes import client

        from scanflow_jupyter.data.object_store import S3Client, StoreURI

        uri = self._env.get(RUN_STORE_KEY)
        if not uri or self.setting("store_claim", "SCANFLOW_K8S_STORE_CLAIM"):
            return None
        keys: dict[str, str] = {}
        try:
            data = client.CoreV1Api(self._api).read_namespaced_secret(ENV_SECRET, self._namespace, _request_timeout=15).data
            keys = {k: base64.b64decode(v).decode() for k, v in (data or {}).items()}
        except Exception:  # noqa: BLE001 - may not read Secrets: the shell's AWS keys then
            keys = {}
        endpoint = self.setting("s3_url", "SCANFLOW_K8S_S3_URL")
        if not endpoint:
            if self._s3_tunnel is None:
                self._s3_tunnel = self._tunnel(self._env.get(S3_ENDPOINT_KEY) or "http://scanflow-s3:9000", 9000)
            endpoint = self._s3_tunnel.url
        env = {"AWS_ACCESS_KEY_ID": keys.get("aws-access-key-id") or os.environ.get("AWS_ACCESS_KEY_ID", ""),
               "AWS_SECRET_ACCESS_KEY": keys.get("aws-secret-access-key") or os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
               "AWS_DEFAULT_REGION": self._env.get("AWS_DEFAULT_REGION") or "us-east-1"}
        return S3Client.from_env(env, endpoint=endpoint), StoreURI.parse(uri)

    async def close(self) -> None:
        if self._s3_tunnel is not None:
            self._s3_tunnel.close()
            self._s3_tunnel = None

    # ------------------------------------------------------------------ running
    async def run_step(self, job: StepJob) -> StepOutcome:  # pragma: no cover - never called
        raise NotImplementedError("the kubernetes backend runs whole pipelines (run_pipeline)")

    async def run_pipeline(self, job: PipelineJob) -> None:
        """Submit `job.steps` as one Workflow and report every step's progress to the runner."""
        from scanflow_jupyter.kubernetes import argo_run
        from scanflow_jupyter.kubernetes.workflow import task_names

        report = job.report
        loop = asyncio.get_running_loop()
        closed = False

        def deliver(fn: Any, *args: Any, **kwargs: Any) -> None:
            def call() -> None:
                if not closed:  # nothing after the run was stopped
                    fn(*args, **kwargs)

            loop.call_soon_threadsafe(call)

        def fail_roots(ename: str, evalue: str) -> None:
            """A problem before submission: steps with no upstream in the job fail (the runner skips the rest)."""
            for step in job.steps:
                if not any(d in job.steps for d in job.depends_on[step]):
                    report.finished(step, 1, "failed", {"cell": None, "ename": ename, "evalue": evalue, "traceback": []})

        try:
            api, workflow, store = await asyncio.to_thread(self._prepare, job)
        except Exception as exc:  # noqa: BLE001 - every problem fails the steps with its fix
            fail_roots(type(exc).__name__, str(exc))
            return
        meta = workflow["metadata"]
        ns, name = meta["namespace"], meta["name"]
        from scanflow_jupyter.kubernetes import workflow_ref

        workflow_ref.write(job.run_dir, name, ns, self.setting("context", "SCANFLOW_K8S_CONTEXT"))  # the sidebar's link
        pod_logs: dict[str, list[str]] = {}  # the pods' logs: the local log.txt when no folder comes back

        def on_event(type_: str, step: str, attempt: int | None, **data: Any) -> None:
            """ArgoFollower's events (in its worker thread): fetch folders here, report on the loop."""
            if type_ == "step_started":
                deliver(report.started, step, attempt or 1)
            elif type_ == "step_retrying":
                data.pop("next_attempt", None)
                deliver(report.retrying, step, attempt or 1, data)
            elif type_ in ("step_log", "step_cell"):
                if type_ == "step_log":
                    pod_logs.setdefault(step, []).append(data.get("text") or "")
                    if store is None:
                        self._append_log(job.run_dir / step, data.get("text") or "")
                deliver(report.progress, step, attempt, type_, **data)
            elif type_ in ("step_succeeded", "step_failed"):
                error = None if type_ == "step_succeeded" else {k: data.get(k) for k in ("cell", "ename", "evalue", "traceback")}
                fetched = False
                if store is not None:
                    try:
                        self._fetch(store, job, step)
                        fetched = True
                    except Exception as exc:  # noqa: BLE001 - the step's results are not here: it failed
                        self._append_log(job.run_dir / step, "".join(pod_logs.get(step, [])))
                        error = error or {"cell": None, "ename": "FetchFailed", "traceback": [],
                                          "evalue": f"the step's folder could not be fetched from the object store: {exc}"}
                status = "succeeded" if error is None else "failed"
                deliver(report.finished, step, attempt or 1, status, error, fetched)
            elif type_ == "step_skipped" and not data.get("upstream"):  # the Workflow ended without it
                deliver(report.finished, step, 1, "failed", {"cell": None, "ename": "WorkflowEnded", "traceback": [],
                                                             "evalue": data.get("reason") or "the Workflow ended"})

        names = task_names(job.steps)
        follower = argo_run.ArgoFollower(self._pipeline(), job.steps, names,
                                         {s: self.app.executor(s).retries for s in job.steps}, on_event,
                                         functools.partial(argo_run.pod_log, api, ns, name))
        submitting = asyncio.ensure_future(asyncio.to_thread(argo_run.submit, api, workflow))
        try:
            await asyncio.shield(submitting)
            await argo_run.follow(api, ns, name, follower)
            await asyncio.sleep(0)  # let the last thread-safe reports run
        except argo_run.KubernetesUnavailable as exc:
            fail_roots("KubernetesUnavailable", str(exc))
        except asyncio.CancelledError:
            closed = True
            created = (await asyncio.gather(submitting, return_exceptions=True))[0]
            if isinstance(created, dict):  # submitted (perhaps just now): stop it
                await self._stop(api, ns, name)
            follower.kill_running(lambda _t, step, attempt, **_d: report.finished(step, attempt or 1, "killed"))
            raise
        finally:
            if store is not None:
                store[0].close()

    def _pipeline(self) -> Any:
        from scanflow_jupyter.model import Pipeline

        return Pipeline.from_application(self.app)

    @staticmethod
    async def _stop(api: Any, ns: str, name: str) -> None:
        from scanflow_jupyter.kubernetes import argo_run

        try:
            await asyncio.shield(asyncio.to_thread(argo_run.stop, api, ns, name))
        except Exception as exc:  # noqa: BLE001 - said, the run is being killed anyway
            print(f"scanflow: could not stop Workflow {ns}/{name}: {exc}; stop it with "
                  f"`kubectl -n {ns} delete workflow {name}`.", file=sys.stderr)

    def _prepare(self, job: PipelineJob) -> tuple[Any, dict[str, Any], tuple[Any, Any] | None]:
        """(ApiClient, Workflow, object store or None): images resolved, reused outputs uploaded, compiled."""
        from kubernetes import client

        from scanflow_jupyter.kubernetes.workflow import (
            WorkflowOptions,
            compile_workflow,
            resolve_images,
        )

        self._connect()
        api, namespace = self._api, self._namespace
        environ = dict(os.environ)
        images = dict(self.options.get("images") or _json_env("SCANFLOW_K8S_IMAGES", environ))
        if not all(s in images for s in job.steps) and "*" not in images:
            images = {**resolve_images(self.app, registry=self.setting("registry", "SCANFLOW_REGISTRY"), build=True,
                                       steps=[s for s in job.steps if s not in images],
                                       log=lambda line: print(f"scanflow build: {line}", file=sys.stderr)),
                      **images}
        claim = self.setting("store_claim", "SCANFLOW_K8S_STORE_CLAIM")
        store = self._object_store()
        if store is not None:
            s3, uri = store
            s3.ensure_bucket(uri.bucket)
            needed = {p for s in job.steps for p in job.inputs[s].values() if p in job.reused}
            for producer in sorted(needed):  # the steps read reused outputs from this run's folder
                s3.upload_dir(job.reused[producer], uri, job.run_id, producer, "outputs")
        elif not claim:
            _check_default_storage_class(api)
        account = self.setting("service_account", "SCANFLOW_K8S_SERVICE_ACCOUNT")
        if account is None:
            try:
                client.CoreV1Api(api).read_namespaced_service_account("scanflow", namespace, _request_timeout=15)
                account = "scanflow"
            except Exception:  # noqa: BLE001 - no team environment: the namespace's default account
                account = None
        options = WorkflowOptions(
            images=images, namespace=namespace, run_id=job.run_id, params=job.params, steps=job.steps,
            store_claim=claim, service_account=account,
            object_store=str(store[1]) if store is not None else None,
            mlflow_run_ids={s: i for s, i in job.mlflow_run_ids.items() if i},
            pod_metadata=self.options.get("pod_metadata") or _json_env("SCANFLOW_K8S_POD_METADATA", environ))
        return api, compile_workflow(self.app, options), store

    @staticmethod
    def _fetch(store: tuple[Any, Any], job: PipelineJob, step: str) -> None:
        """The step's folder from the object store into the local run store."""
        s3, uri = store
        if not s3.download_dir(uri, job.run_dir / step, job.run_id, step):
            raise FileNotFoundError(f"nothing under {uri}/{job.run_id}/{step}/")

    @staticmethod
    def _append_log(step_dir: Path, text: str) -> None:
        if not text:
            return
        try:
            step_dir.mkdir(parents=True, exist_ok=True)
            with (step_dir / "log.txt").open("a", encoding="utf-8") as fh:
                fh.write(text)
        except OSError:
            pass


def _check_default_storage_class(api: Any) -> None:
    """Without SCANFLOW_K8S_STORE_CLAIM the run store is a claim template: it needs a default StorageClass."""
    from kubernetes import client

    from scanflow_jupyter.kubernetes.argo_run import KubernetesUnavailable

    try:
        classes = client.StorageV1Api(api).list_storage_class(_request_timeout=15).items
    except Exception:  # noqa: BLE001 - may not list cluster objects: let the cluster decide
        return
    default = "storageclass.kubernetes.io/is-default-class"
    if not any((c.metadata.annotations or {}).get(default) == "true" for c in classes):
        raise KubernetesUnavailable(
            "the cluster has no default StorageClass, so the run store's volume claim would never be bound and "
            "the steps would wait forever. Fix: set SCANFLOW_K8S_STORE_CLAIM to an existing PersistentVolumeClaim "
            "of the namespace (ReadWriteMany if steps may run on several nodes).")



# --------------------------------------------------------------------------- inside the step pod


def step_notebook(nb: dict[str, Any], *, run_id: str, step: str, store: Path, inputs: dict[str, str],
                  params: dict[str, Any], tracking_uri: str | None, mlflow_run_id: str | None = None) -> dict[str, Any]:
    """The image's step notebook with the injected-parameters cell (as the runner writes it).

    `inputs` maps each input variable to its producer step; their records are read from
    `<store>/<run_id>/<producer>/outputs/<var>.meta.json`.
    """
    import copy

    from scanflow_jupyter.data.serializers import read_record
    from scanflow_jupyter.redact import redact_uri

    context_inputs = {}
    for var, producer in inputs.items():
        folder = store / run_id / producer / "outputs"
        context_inputs[var] = {"folder": str(folder), "record": read_record(folder, var).to_dict()}
    context = {"run_id": run_id, "step": step, "inputs": context_inputs,
               "outputs_dir": str(store / run_id / step / "outputs"),
               "mlflow": {"tracking_uri": redact_uri(tracking_uri), "run_id": mlflow_run_id, "experiment_id": None}}
    lines = ["# Parameters", *(f"{k} = {v!r}" for k, v in params.items()), f"__scanflow__ = {context!r}"]
    injected = {"cell_type": "code", "execution_count": None, "id": "injected-parameters",
                "metadata": {"tags": ["injected-parameters"], "scanflow": {"role": "injected-parameters", "source_cell": None}},
                "outputs": [], "source": "\n".join(lines)}
    nb = copy.deepcopy(nb)
    position = next((i for i, c in enumerate(nb["cells"]) if "parameters" in c["metadata"].get("tags", [])), -1)
    nb["cells"].insert(position + 1, injected)
    return nb


def params_from_env(environ: dict[str, str]) -> dict[str, Any]:
    """Pipeline parameters from `SCANFLOW_PARAM_<name>` (Python literals, as compiled)."""
    out = {}
    for key, text in environ.items():
        if key.startswith(PARAM_ENV_PREFIX):
            name = key[len(PARAM_ENV_PREFIX):]
            try:
                out[name] = ast.literal_eval(text)
            except (ValueError, SyntaxError) as exc:
                raise ValueError(f"parameter {name}: {text!r} is not a Python literal. Fix: quote strings, "
                                 f"e.g. {name}='{text}'.") from exc
    return out


def step_main(argv: list[str]) -> int:
    """`... kubernetes_backend step --step S --store DIR --run-id ID [--input VAR=PRODUCER ...]
    [--object-store s3://BUCKET/PREFIX] [--mlflow-run-id ID]`.

    With `--object-store`, `--store` is a scratch folder: the producers' outputs are downloaded
    into it first and the step's folder is uploaded after the notebook ran (also when it failed:
    its output notebook and log explain why).
    """
    import argparse

    from scanflow_jupyter.redact import redact_uri, tracking_environment
    from scanflow_jupyter.runtime import execute_step

    parser = argparse.ArgumentParser(prog="python -m scanflow_jupyter.runtime.kubernetes_backend step")
    parser.add_argument("--step", required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--input", action="append", default=[], metavar="VAR=PRODUCER")
    parser.add_argument("--notebook", default=STEP_NOTEBOOK)
    parser.add_argument("--object-store", default=None, metavar="s3://BUCKET/PREFIX")
    parser.add_argument("--mlflow-run-id", default=None)
    args = parser.parse_args(argv)
    store = Path(args.store)
    step_dir = store / args.run_id / args.step
    (step_dir / "outputs").mkdir(parents=True, exist_ok=True)
    nb = json.loads(Path(args.notebook).read_text(encoding="utf-8"))
    inputs = dict(item.split("=", 1) for item in args.input)
    remote = None
    if args.object_store:
        from scanflow_jupyter.data.object_store import S3Client, StoreURI

        remote = (S3Client.from_env(), StoreURI.parse(args.object_store))
        for producer in sorted(set(inputs.values())):
            folder = store / args.run_id / producer / "outputs"
            if not remote[0].download_dir(remote[1], folder, args.run_id, producer, "outputs"):
                print(f"scanflow: no outputs of step {producer} under {remote[1]}/{args.run_id}/{producer}/outputs/",
                      file=sys.stderr)
                return 2
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:  # the kernel gets the URI (and any credentials) as environment; the notebook its redacted form
        os.environ.update(tracking_environment(uri, os.environ))
    nb = step_notebook(nb, run_id=args.run_id, step=args.step, store=store, inputs=inputs,
                       params=params_from_env(dict(os.environ)), tracking_uri=redact_uri(uri),
                       mlflow_run_id=args.mlflow_run_id)
    input_path = step_dir / "input.ipynb"
    input_path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    code = execute_step.main(["--notebook", str(input_path), "--output", str(step_dir / "output.ipynb"),
                              "--log", str(step_dir / "log.txt"), "--cwd", os.getcwd()])
    if remote is not None:
        try:
            remote[0].upload_dir(step_dir, remote[1], args.run_id, args.step)
        except Exception as exc:  # noqa: BLE001 - the step's results would be lost: the attempt fails
            print(f"scanflow: could not upload the step's folder to {remote[1]}: {exc}", file=sys.stderr)
            return code or 3
        finally:
            remote[0].close()
    return code


if __name__ == "__main__":
    if sys.argv[1:2] != ["step"]:
        sys.exit("usage: python -m scanflow_jupyter.runtime.kubernetes_backend step --step S --store DIR --run-id ID")
    sys.exit(step_main(sys.argv[2:]))
