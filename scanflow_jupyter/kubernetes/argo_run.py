"""Submit an Argo Workflow through the Kubernetes API, follow it, stop it.

Submission and following use the Kubernetes `CustomObjectsApi` (group argoproj.io, version
v1alpha1, plural workflows): no Argo server is needed, only the workflow-controller in the
cluster. `ArgoFollower` turns node status changes into the runner events of every backend:
`step_queued`, `step_started`, `step_retrying`, `step_succeeded`, `step_failed`, `step_skipped`
(dependents of a failed step, at once) and, on stop, `step_killed`. Step logs are read from the
pods' `main` container after each attempt (`read_namespaced_pod_log`); a cluster whose pods
have no logs (kwok) simply yields none. Which cluster: `kube_client(context, kubeconfig)` —
the kubeconfig (`KUBECONFIG` or ~/.kube/config; its current context unless `context`), else the
in-cluster service account.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from scanflow_jupyter.model import Pipeline
from scanflow_jupyter.runtime.child_protocol import parse_event, split_lines

GROUP, VERSION, PLURAL = "argoproj.io", "v1alpha1", "workflows"
TERMINAL = ("Succeeded", "Failed", "Error")
ATTEMPT_RUNNING = ("Running", *TERMINAL)
LOG_TIMEOUT = 10


class KubernetesUnavailable(RuntimeError):
    """No cluster answers, or Argo's Workflow CRD is not installed; the message says how to fix it."""


def kube_client(context: str | None = None, kubeconfig: str | None = None) -> Any:
    """An ApiClient for `context` of `kubeconfig` (defaults: KUBECONFIG, current context), else in-cluster."""
    from scanflow_jupyter.kubernetes.api import KubeconfigUnavailable, api_client

    try:
        return api_client(context, kubeconfig)
    except KubeconfigUnavailable as exc:
        raise KubernetesUnavailable(str(exc)) from exc


def submit(api: Any, workflow: dict[str, Any]) -> dict[str, Any]:
    """Create the Workflow; KubernetesUnavailable with the fix when the API refuses."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    ns = workflow["metadata"]["namespace"]
    try:
        return client.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, workflow)
    except ApiException as exc:
        if exc.status == 404:
            raise KubernetesUnavailable(
                f"the cluster has no Argo Workflow API or no namespace '{ns}' ({exc.reason}). Fix: install Argo "
                "Workflows (its CRDs and workflow-controller) and deploy the team environment (`scanflow deploy`) "
                "or set SCANFLOW_K8S_NAMESPACE to an existing namespace.") from exc
        raise KubernetesUnavailable(f"the API server refused the Workflow: {exc.status} {exc.reason}: "
                                    f"{_api_message(exc)}") from exc
    except Exception as exc:  # noqa: BLE001 - urllib3 connection errors and the like
        raise KubernetesUnavailable(f"the Kubernetes API server does not answer: {exc}. Fix: check that the "
                                    "cluster is up (`kubectl cluster-info`).") from exc


def stop(api: Any, namespace: str, name: str, strategy: str = "Terminate") -> None:
    """Ask Argo to stop the Workflow (`spec.shutdown`: Terminate kills pods now, Stop runs exit hooks)."""
    from kubernetes import client

    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, {"spec": {"shutdown": strategy}})


def _api_message(exc: Any) -> str:
    try:
        return json.loads(exc.body).get("message", "")
    except Exception:  # noqa: BLE001
        return str(exc.body or "")


def watch_workflow(api: Any, namespace: str, name: str, on_object: Callable[[dict[str, Any]], bool],
                   stopped: threading.Event) -> None:
    """Call `on_object(workflow)` for every change until it returns True or `stopped` is set.

    Blocking (run it in a thread). Re-lists after the watch expires or the connection drops.
    """
    from kubernetes import client, watch
    from kubernetes.client.exceptions import ApiException

    custom = client.CustomObjectsApi(api)
    while not stopped.is_set():
        try:
            listing = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                           field_selector=f"metadata.name={name}")
        except Exception:  # noqa: BLE001 - transient: retry
            time.sleep(1)
            continue
        for item in listing.get("items", []):
            if on_object(item):
                return
        version = listing.get("metadata", {}).get("resourceVersion")
        w = watch.Watch()
        try:
            for event in w.stream(custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL,
                                  field_selector=f"metadata.name={name}", resource_version=version,
                                  timeout_seconds=20, _request_timeout=30):
                if stopped.is_set():
                    w.stop()
                    return
                if event.get("type") in ("ADDED", "MODIFIED") and on_object(event["object"]):
                    w.stop()
                    return
        except ApiException as exc:
            if exc.status != 410:  # 410 Gone: the version expired, list again
                time.sleep(1)
        except Exception:  # noqa: BLE001 - dropped connection: list again
            time.sleep(1)


def pod_log(api: Any, namespace: str, workflow: str, node_id: str) -> str | None:
    """The `main` container log of the pod of node `node_id`, or None (no pod, or no logs: kwok)."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    try:
        pods = core.list_namespaced_pod(namespace, label_selector=f"workflows.argoproj.io/workflow={workflow}",
                                        _request_timeout=LOG_TIMEOUT).items
    except Exception:  # noqa: BLE001
        return None
    short = node_id.rsplit("-", 1)[-1]
    for pod in pods:
        ann = pod.metadata.annotations or {}
        if ann.get("workflows.argoproj.io/node-id") == node_id or pod.metadata.name.endswith(f"-{short}"):
            try:
                # raw bytes: the client's own decoding escapes control characters (\x1e, ANSI colours)
                resp = core.read_namespaced_pod_log(pod.metadata.name, namespace, container="main",
                                                    _request_timeout=LOG_TIMEOUT, _preload_content=False)
                return resp.data.decode("utf-8", "replace")
            except Exception:  # noqa: BLE001 - kwok pods and garbage-collected pods have no logs
                return None
    return None


_ARGO_LINE = re.compile(r"^(time=\S+ level=\w+ msg=.*\bargo=true\b.*|Error: exit status \d+)$")


@dataclass
class LogSummary:
    """What a step's log says: plain text lines, cell events, the executor's outcome."""

    text: str = ""
    cells: list[dict[str, Any]] = field(default_factory=list)
    outcome: dict[str, Any] | None = None


def parse_log(raw: str) -> LogSummary:
    """Split `execute_step` output into plain text, cell events and the outcome."""
    out = LogSummary()
    lines = []
    for line in split_lines(raw):
        event = parse_event(line)
        if event is not None:
            if event.get("t") == "cell":
                out.cells.append(event)
            elif event.get("t") == "outcome":
                out.outcome = event
            continue
        if _ARGO_LINE.match(line):  # Argo's emissary writes its own lines into the main container's log
            continue
        lines.append(line)
    while lines and not lines[-1]:
        lines.pop()
    out.text = "\n".join(lines) + ("\n" if lines else "")
    return out


@dataclass
class StepTrack:
    attempts_started: int = 0
    attempts_done: int = 0
    status: str = "queued"  # queued | running | succeeded | failed | skipped | killed
    error: dict[str, Any] | None = None
    waiting: str = ""  # the last "Pending" message shown (unbound PVC, unschedulable, image pull)
    number: dict[str, int] = field(default_factory=dict)  # attempt node id -> attempt number (current run of it)
    phases: dict[str, str | None] = field(default_factory=dict)  # attempt node id -> last phase seen
    done: set[str] = field(default_factory=set)  # attempt nodes whose current run was reported finished


class ArgoFollower:
    """Translate Workflow snapshots into runner events (one instance per run).

    `emit(type, step, attempt, **data)` receives the events; `fetch_log(node_id)` returns a pod's
    log or None. `update(workflow)` returns True once the Workflow has finished.
    """

    def __init__(self, pipeline: Pipeline, steps: list[str], tasks: dict[str, str], retries: dict[str, int],
                 emit: Callable[..., Any], fetch_log: Callable[[str], str | None] = lambda _n: None) -> None:
        self.pipeline = pipeline
        self.steps = [s for s in pipeline.steps if s in steps]
        self.tasks = tasks
        self.retries = retries
        self.emit = emit
        self.fetch_log = fetch_log
        self.track = {s: StepTrack() for s in self.steps}
        self.phase: str | None = None
        self.message: str = ""

    def queue_all(self) -> None:
        for step in self.steps:
            self.emit("step_queued", step, None)

    def update(self, workflow: dict[str, Any]) -> bool:
        status = workflow.get("status") or {}
        nodes: dict[str, dict[str, Any]] = status.get("nodes") or {}
        self.phase = status.get("phase")
        self.message = status.get("message") or ""
        by_task = self._task_nodes(nodes, workflow["metadata"]["name"])
        for step in self.steps:  # topological order: a parent's end precedes a child's start
            node = by_task.get(self.tasks[step])
            if node is not None:
                self._step(step, node, nodes)
        if self.phase in TERMINAL:
            for step in self.steps:
                t = self.track[step]
                if t.status == "running":
                    self._finish(step, "failed", {"cell": None, "ename": "WorkflowEnded",
                                                  "evalue": self.message or f"the Workflow ended {self.phase}",
                                                  "traceback": []})
                elif t.status == "queued":
                    self._skip(step, None, self.message or f"the Workflow ended {self.phase}")
            return True
        return False

    def _task_nodes(self, nodes: dict[str, dict[str, Any]], wf_name: str) -> dict[str, dict[str, Any]]:
        """Task name -> its node (a Retry node, or the Pod node when there are no retries)."""
        out: dict[str, dict[str, Any]] = {}
        for node in nodes.values():
            name = node.get("name", "")
            # task nodes are named "<wf>.<task>"; attempts of a Retry node "<wf>.<task>(n)"
            if name.startswith(f"{wf_name}.") and not name.endswith(")"):
                out[node.get("displayName") or name.split(".", 1)[1]] = node
        return out

    def _attempts(self, node: dict[str, Any], nodes: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        if node.get("type") == "Retry":
            # Argo appends each attempt to `children`: that order is the attempt number (a new
            # attempt may have no startedAt yet, so sorting by it would swap attempts)
            return [nodes[c] for c in node.get("children") or [] if c in nodes]
        if node.get("type") == "Pod":
            return [node]
        return []

    def _step(self, step: str, node: dict[str, Any], nodes: dict[str, dict[str, Any]]) -> None:
        t = self.track[step]
        if t.status not in ("queued", "running"):
            return
        if node.get("type") in ("Skipped", "Omitted") or node.get("phase") in ("Skipped", "Omitted"):
            self._skip(step, None, node.get("message") or "Argo skipped the task")
            return
        attempts = self._attempts(node, nodes)
        for attempt in attempts:
            node_id, phase = attempt.get("id", ""), attempt.get("phase")
            message = attempt.get("message") or ""
            before = t.phases.get(node_id)
            if before in TERMINAL and phase not in TERMINAL:
                # Argo re-runs the same node when its pod was deleted ("pod deleted"): a new attempt
                t.number.pop(node_id, None)
            if phase == "Pending" and message and message != t.waiting:
                t.waiting = message  # e.g. the run store's PVC is not bound: say so instead of hanging silently
                self.emit("step_log", step, t.number.get(node_id, t.attempts_started + 1),
                          text=f"waiting for the pod: {message}\n", cell=None, stream="stderr")
            if node_id not in t.number and phase in ATTEMPT_RUNNING:
                t.attempts_started += 1
                t.number[node_id] = t.attempts_started
                t.status = "running"
                self.emit("step_started", step, t.attempts_started, node=node_id)
            if phase in TERMINAL and node_id not in t.done:
                index = t.number.get(node_id, t.attempts_started)
                t.done.add(node_id)
                t.attempts_done += 1
                error = self._attempt_result(step, index, attempt)
                if phase != "Succeeded" and t.attempts_done <= self.retries.get(step, 0):
                    self.emit("step_retrying", step, index, **(error or {}), next_attempt=index + 1)
                elif phase != "Succeeded":
                    t.error = error
            if phase not in TERMINAL:
                t.done.discard(node_id)
            t.phases[node_id] = phase
        running = any(a.get("phase") not in TERMINAL for a in attempts)
        if node.get("phase") == "Succeeded" and t.attempts_done:
            self._finish(step, "succeeded", None)
        elif node.get("phase") in ("Failed", "Error") and not running:
            self._finish(step, "failed", t.error or self._node_error(node))

    def _attempt_result(self, step: str, attempt: int, node: dict[str, Any]) -> dict[str, Any] | None:
        """Emit the attempt's log; return its error (None if it succeeded)."""
        raw = self.fetch_log(node.get("id", ""))
        summary = parse_log(raw) if raw else LogSummary()
        for cell in summary.cells:
            if cell.get("text"):
                self.emit("step_log", step, attempt, text=cell["text"], cell=cell.get("cell"))
            self.emit("step_cell", step, attempt, index=cell.get("index"), cell=cell.get("cell"), role=cell.get("role"))
        if summary.text.strip():
            self.emit("step_log", step, attempt, text=summary.text, cell=None, stream="stdout")
        if node.get("phase") == "Succeeded":
            return None
        if summary.outcome and summary.outcome.get("error"):
            return dict(summary.outcome["error"])
        return self._node_error(node)

    @staticmethod
    def _node_error(node: dict[str, Any]) -> dict[str, Any]:
        message = node.get("message") or f"the step's pod ended {node.get('phase')}"
        if "deadline" in message.lower():  # activeDeadlineSeconds = --timeout: the local backend's error
            return {"cell": None, "ename": "TimeoutError", "traceback": [],
                    "evalue": f"the step ran longer than its --timeout ({message})"}
        return {"cell": None, "ename": "PodFailed", "evalue": message, "traceback": []}

    def _finish(self, step: str, status: str, error: dict[str, Any] | None) -> None:
        t = self.track[step]
        t.status, t.error = status, error
        attempts = max(t.attempts_started, 1)
        if status == "succeeded":
            self.emit("step_succeeded", step, attempts)
            return
        self.emit("step_failed", step, attempts, **(error or {}))
        for child in self.pipeline.steps:
            if child in self.track and child in self.pipeline.downstream(step):
                self._skip(child, step, None)

    def _skip(self, step: str, upstream: str | None, reason: str | None) -> None:
        t = self.track[step]
        if t.status not in ("queued",):
            return
        t.status = "skipped"
        if upstream:
            self.emit("step_skipped", step, None, reason=f"upstream step '{upstream}' did not succeed",
                      upstream=upstream)
        else:
            self.emit("step_skipped", step, None, reason=reason)

    def kill_running(self, emit: Callable[..., Any] | None = None) -> list[str]:
        """Mark running steps killed (`step_killed` through `emit`, default self.emit); their names."""
        emit = emit or self.emit
        killed = []
        for step in self.steps:
            t = self.track[step]
            if t.status == "running":
                t.status = "killed"
                emit("step_killed", step, max(t.attempts_started, 1))
                killed.append(step)
        return killed


async def follow(api: Any, namespace: str, name: str, follower: ArgoFollower) -> None:
    """Feed every change of Workflow `name` to `follower` until it finishes (cancellable)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    stopped = threading.Event()

    def on_object(obj: dict[str, Any]) -> bool:
        loop.call_soon_threadsafe(queue.put_nowait, obj)
        phase = (obj.get("status") or {}).get("phase")
        return phase in TERMINAL and bool((obj.get("status") or {}).get("finishedAt"))

    thread = threading.Thread(target=watch_workflow, args=(api, namespace, name, on_object, stopped),
                              daemon=True, name="scanflow-argo-watch")
    thread.start()
    try:
        while True:
            obj = await queue.get()
            done = await asyncio.to_thread(follower.update, obj)
            if done:
                return
    finally:
        stopped.set()
