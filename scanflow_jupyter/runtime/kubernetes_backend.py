"""The kubernetes backend: the whole pipeline runs as one Argo Workflow (entry point `kubernetes`).

Argo schedules the DAG, so this backend sets `whole_pipeline = True` and the runner calls
`run_pipeline(run)` instead of its own scheduler (cache look-ups included: every selected step
executes in the cluster). `run_pipeline` resolves the step images, compiles the Workflow
(`scanflow_jupyter.kubernetes.workflow`), submits it with the Kubernetes API, follows it
(`scanflow_jupyter.kubernetes.argo_run`) and keeps the local run store (`run.json`,
`events.jsonl`, each step's `log.txt` when the pods have logs) exactly like a local run, so
`scanflow runs` lists it. Cancellation (Ctrl-C, SIGTERM) sets the Workflow's
`spec.shutdown: Terminate` and reports the running steps killed.

Settings (environment variables; options of the same name, lower-case without prefix, win):

| setting | variable | default |
| --- | --- | --- |
| kubeconfig | `KUBECONFIG` | ~/.kube/config, else the in-cluster service account |
| context | `SCANFLOW_K8S_CONTEXT` | the kubeconfig's current context |
| namespace | `SCANFLOW_K8S_NAMESPACE` | `scanflow-<app>-<team>` (the team environment) |
| run store volume | `SCANFLOW_K8S_STORE_CLAIM` (an existing PVC) | a claim template per Workflow |
| images | `SCANFLOW_K8S_IMAGES` (JSON {step or "*": ref}) | built here (Docker), pushed to `SCANFLOW_REGISTRY` |
| service account | `SCANFLOW_K8S_SERVICE_ACCOUNT` | `scanflow` if the namespace has it |
| extra pod metadata | `SCANFLOW_K8S_POD_METADATA` (JSON {step or "*": {"labels": .., "annotations": ..}}) | none |

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
import time
from pathlib import Path
from typing import Any

from scanflow_jupyter.runtime.backends import Backend, StepJob, StepOutcome

STEP_NOTEBOOK = "/opt/scanflow/step.ipynb"  # = build.builder.STEP_NOTEBOOK
PARAM_ENV_PREFIX = "SCANFLOW_PARAM_"  # = kubernetes.workflow.PARAM_ENV_PREFIX


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


class KubernetesBackend(Backend):
    """Run the pipeline as an Argo Workflow in a Kubernetes namespace."""

    name = "kubernetes"
    whole_pipeline = True  # the runner calls run_pipeline() instead of scheduling run_step()

    def setting(self, key: str, env: str, default: Any = None) -> Any:
        if self.options.get(key) is not None:
            return self.options[key]
        return os.environ.get(env) or default

    async def run_step(self, job: StepJob) -> StepOutcome:  # pragma: no cover - never called
        raise NotImplementedError("the kubernetes backend runs whole pipelines (run_pipeline)")

    async def run_pipeline(self, run: Any) -> None:
        """Run `run`'s selected steps on Argo; updates `run.state`, emits on `run.bus`.

        Uses of the runner (`PipelineRun`): `app`, `pipeline`, `params`, `state`, `store`, `bus`,
        `messages`, `_track_step` (MLflow record of a finished step).
        """
        from scanflow_jupyter.data.store import StepError
        from scanflow_jupyter.kubernetes import argo_run
        from scanflow_jupyter.kubernetes.workflow import task_names

        state = run.state
        to_run = [n for n, s in state.steps.items() if s.status in ("pending", "queued")]
        loop = asyncio.get_running_loop()

        def on_event(type_: str, step: str | None, attempt: int | None, **data: Any) -> None:
            now = time.time()
            if step is not None and step in state.steps:
                s = state.steps[step]
                if type_ == "step_queued":
                    s.status = "queued"
                elif type_ == "step_started":
                    s.status, s.attempts, s.error = "running", attempt or 1, None
                    s.started_at = s.started_at or now
                elif type_ in ("step_succeeded", "step_failed", "step_killed"):
                    s.status = type_.split("_", 1)[1]
                    s.attempts = attempt or s.attempts
                    s.finished_at = now
                    s.duration_s = round(now - (s.started_at or now), 3)
                    if type_ == "step_failed":
                        s.error = StepError.from_dict({k: data.get(k) for k in ("cell", "ename", "evalue", "traceback")})
                elif type_ == "step_skipped":
                    s.status = "skipped"
                elif type_ == "step_log":
                    self._append_log(run, step, data.get("text") or "")
            if type_ == "step_succeeded":
                data = {"duration_s": state.steps[step].duration_s, "outputs": [], **data}
            elif type_ == "step_failed":
                data = {"duration_s": state.steps[step].duration_s, **data}
            if type_ != "step_log":
                run.store.write_state(state)
            run.bus.emit(type_, step, attempt, **data)
            if type_ in ("step_succeeded", "step_failed", "step_skipped", "step_killed"):
                run._track_step(step, None)

        closed = False

        def threadsafe(*args: Any, **kwargs: Any) -> None:
            def deliver() -> None:
                if not closed:  # nothing after the run was stopped
                    on_event(*args, **kwargs)

            loop.call_soon_threadsafe(deliver)

        def fail_all(ename: str, evalue: str) -> None:
            """A problem before submission: root steps fail with it, their dependents are skipped."""
            for step in to_run:
                blocked = [d for d in run.pipeline.steps[step].depends_on if state.steps[d].status in ("failed", "skipped")]
                if blocked:
                    on_event("step_skipped", step, None, reason=f"upstream step '{blocked[0]}' did not succeed",
                             upstream=blocked[0])
                else:
                    on_event("step_failed", step, 1, cell=None, ename=ename, evalue=evalue, traceback=[])

        reused = [n for n, s in state.steps.items() if s.status == "cached"]
        if reused and to_run:
            fail_all("UnsupportedOnKubernetes", "--only / --resume reuse local outputs, which the cluster cannot "
                     f"read ({', '.join(reused)}). Fix: run the whole pipeline on kubernetes.")
            return
        if not to_run:
            return
        try:
            api, workflow = await asyncio.to_thread(self._prepare_workflow, run, to_run)
        except Exception as exc:  # noqa: BLE001 - every problem fails the steps with its fix
            fail_all(type(exc).__name__, str(exc))
            return
        names = task_names(to_run)
        follower = argo_run.ArgoFollower(run.pipeline, to_run, names,
                                         {s: run.pipeline.steps[s].executor.retries for s in to_run}, threadsafe,
                                         functools.partial(self._fetch_log, api, workflow))
        for step in to_run:
            on_event("step_queued", step, None)
        ns, name = workflow["metadata"]["namespace"], workflow["metadata"]["name"]
        submitting = asyncio.ensure_future(asyncio.to_thread(argo_run.submit, api, workflow))
        try:
            await asyncio.shield(submitting)
            await argo_run.follow(api, ns, name, follower)
            await asyncio.sleep(0)  # let the last thread-safe events run
        except argo_run.KubernetesUnavailable as exc:
            fail_all("KubernetesUnavailable", str(exc))
        except asyncio.CancelledError:
            closed = True
            created = (await asyncio.gather(submitting, return_exceptions=True))[0]
            if isinstance(created, dict):  # submitted (perhaps just now): stop it
                await self._stop(run, api, ns, name)
            follower.kill_running(on_event)
            raise

    @staticmethod
    async def _stop(run: Any, api: Any, ns: str, name: str) -> None:
        from scanflow_jupyter.kubernetes import argo_run

        try:
            await asyncio.shield(asyncio.to_thread(argo_run.stop, api, ns, name))
        except Exception as exc:  # noqa: BLE001 - report, the run is being killed anyway
            run.messages.append(_warning("stop-failed", f"could not stop Workflow {ns}/{name}: {exc}",
                                         f"stop it with `kubectl -n {ns} delete workflow {name}`."))

    def _prepare_workflow(self, run: Any, to_run: list[str]) -> tuple[Any, dict[str, Any]]:
        """(ApiClient, Workflow dict): images resolved, namespace checked, workflow compiled."""
        from kubernetes import client

        from scanflow_jupyter.kubernetes import argo_run
        from scanflow_jupyter.kubernetes.workflow import (
            WorkflowOptions,
            compile_workflow,
            default_namespace,
            resolve_images,
        )

        environ = dict(os.environ)
        api = argo_run.kube_client(self.setting("context", "SCANFLOW_K8S_CONTEXT"),
                                   self.options.get("kubeconfig"))  # None: KUBECONFIG (may list several files)
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
            raise argo_run.KubernetesUnavailable(f"the Kubernetes API server does not answer: {exc}. Fix: check that "
                                                 "the cluster is up (`kubectl cluster-info`) and KUBECONFIG.") from exc
        images = dict(self.options.get("images") or _json_env("SCANFLOW_K8S_IMAGES", environ))
        if not all(s in images for s in to_run) and "*" not in images:
            images = {**resolve_images(self.app, registry=self.setting("registry", "SCANFLOW_REGISTRY"), build=True,
                                       steps=[s for s in to_run if s not in images],
                                       log=lambda line: print(f"scanflow build: {line}", file=sys.stderr)),
                      **images}
        claim = self.setting("store_claim", "SCANFLOW_K8S_STORE_CLAIM")
        if not claim:
            _check_default_storage_class(api)
        account = self.setting("service_account", "SCANFLOW_K8S_SERVICE_ACCOUNT")
        if account is None:
            try:
                core.read_namespaced_service_account("scanflow", namespace, _request_timeout=15)
                account = "scanflow"
            except Exception:  # noqa: BLE001 - no team environment: the namespace's default account
                account = None
        options = WorkflowOptions(
            images=images, namespace=namespace, run_id=run.state.run_id, params=run.params, steps=to_run,
            store_claim=claim, service_account=account,
            pod_metadata=self.options.get("pod_metadata") or _json_env("SCANFLOW_K8S_POD_METADATA", environ))
        return api, compile_workflow(self.app, options)

    @staticmethod
    def _fetch_log(api: Any, workflow: dict[str, Any], node_id: str) -> str | None:
        from scanflow_jupyter.kubernetes.argo_run import pod_log

        meta = workflow["metadata"]
        return pod_log(api, meta["namespace"], meta["name"], node_id)

    @staticmethod
    def _append_log(run: Any, step: str, text: str) -> None:
        if not text:
            return
        try:
            path = run.store.step_dir(run.state.run_id, step) / "log.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as fh:
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


def _warning(code: str, text: str, fix: str) -> Any:
    from scanflow_jupyter.model import Message

    return Message("warning", code, text, fix)


# --------------------------------------------------------------------------- inside the step pod


def step_notebook(nb: dict[str, Any], *, run_id: str, step: str, store: Path, inputs: dict[str, str],
                  params: dict[str, Any], tracking_uri: str | None) -> dict[str, Any]:
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
               "mlflow": {"tracking_uri": redact_uri(tracking_uri), "run_id": None, "experiment_id": None}}
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
    """`... kubernetes_backend step --step S --store DIR --run-id ID [--input VAR=PRODUCER ...]`."""
    import argparse

    from scanflow_jupyter.redact import redact_uri, tracking_environment
    from scanflow_jupyter.runtime import execute_step

    parser = argparse.ArgumentParser(prog="python -m scanflow_jupyter.runtime.kubernetes_backend step")
    parser.add_argument("--step", required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--input", action="append", default=[], metavar="VAR=PRODUCER")
    parser.add_argument("--notebook", default=STEP_NOTEBOOK)
    args = parser.parse_args(argv)
    store = Path(args.store)
    step_dir = store / args.run_id / args.step
    (step_dir / "outputs").mkdir(parents=True, exist_ok=True)
    nb = json.loads(Path(args.notebook).read_text(encoding="utf-8"))
    inputs = dict(item.split("=", 1) for item in args.input)
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:  # the kernel gets the URI (and any credentials) as environment; the notebook its redacted form
        os.environ.update(tracking_environment(uri, os.environ))
    nb = step_notebook(nb, run_id=args.run_id, step=args.step, store=store, inputs=inputs,
                       params=params_from_env(dict(os.environ)), tracking_uri=redact_uri(uri))
    input_path = step_dir / "input.ipynb"
    input_path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return execute_step.main(["--notebook", str(input_path), "--output", str(step_dir / "output.ipynb"),
                              "--log", str(step_dir / "log.txt"), "--cwd", os.getcwd()])


if __name__ == "__main__":
    if sys.argv[1:2] != ["step"]:
        sys.exit("usage: python -m scanflow_jupyter.runtime.kubernetes_backend step --step S --store DIR --run-id ID")
    sys.exit(step_main(sys.argv[2:]))
