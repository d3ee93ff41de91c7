"""Deploy, undeploy and inspect a team environment (DESIGN.md §4).

* `deploy`: build the manifests, validate ALL of them (nothing is applied if one is invalid),
  then server-side apply kind by kind in dependency order. Each object is reported `created`,
  `configured` or `unchanged` (its resourceVersion before and after): a second deploy of the
  same notebook reports everything `unchanged`.
  Secrets with generated keys are the exception (the agent token, the bundled S3 server's keys
  in `scanflow-tracker`, the PostgreSQL password): created (POST) with random values when
  missing, given keys updated, generated ones never rotated, so no manifest, export or dry-run
  output ever holds the values.
* `undeploy`: delete what deploy created — the objects of the known kinds labelled
  `scanflow.io/app` + `scanflow.io/team` (+ managed-by scanflow), then the namespace.
* `status`: readiness of every object the notebook declares.
"""

from __future__ import annotations

import base64
import copy
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from scanflow_jupyter.kubernetes import manifests as mf
from scanflow_jupyter.kubernetes.client import FIELD_MANAGER, Cluster, ClusterError, object_path
from scanflow_jupyter.kubernetes.config import DeployConfig
from scanflow_jupyter.kubernetes.validation import check_all
from scanflow_jupyter.model import Application

Manifest = mf.Manifest

# (apiVersion, kind) deleted by undeploy, dependents first; the namespace is handled last.
OWNED_KINDS = [("argoproj.io/v1alpha1", "Workflow"), ("autoscaling/v2", "HorizontalPodAutoscaler"),
               ("apps/v1", "Deployment"), ("v1", "Service"), ("v1", "PersistentVolumeClaim"),
               ("v1", "ConfigMap"), ("v1", "Secret"), ("rbac.authorization.k8s.io/v1", "RoleBinding"),
               ("networking.k8s.io/v1", "NetworkPolicy"), ("rbac.authorization.k8s.io/v1", "Role"),
               ("v1", "ServiceAccount")]
PARALLEL = 8


@dataclass
class ObjectResult:
    """What happened to one object."""

    kind: str
    name: str
    namespace: str | None
    action: str  # created | configured | unchanged | deleted | absent | kept
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "namespace": self.namespace, "action": self.action,
                **({"error": self.error} if self.error else {})}


@dataclass
class Outcome:
    """The result of deploy / undeploy: per-object results in order."""

    app: str
    team: str
    namespace: str
    objects: list[ObjectResult] = field(default_factory=list)
    dry_run: bool = False
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for o in self.objects:
            out[o.action] = out.get(o.action, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"app": self.app, "team": self.team, "namespace": self.namespace, "dry_run": self.dry_run,
                "seconds": round(self.seconds, 3), "counts": self.counts(), "notes": self.notes,
                "objects": [o.to_dict() for o in self.objects]}


class ApplyFailed(ClusterError):
    """Applying stopped at one object; `outcome` holds what was applied before it."""

    def __init__(self, error: ClusterError, outcome: Outcome) -> None:
        super().__init__(str(error), object=error.object, field=error.field, status=error.status,
                         reason=error.reason)
        self.outcome = outcome


def plan(app: Application, config: DeployConfig) -> list[Manifest]:
    """The environment's manifests, validated (ManifestInvalid / ManifestError if not)."""
    manifests = mf.build_manifests(app, config)
    check_all(manifests)
    return manifests


def connect(config: DeployConfig) -> Cluster:
    return Cluster(context=config.context, kubeconfig=config.kubeconfig)


def _levels(manifests: list[Manifest]) -> list[list[Manifest]]:
    """Consecutive groups of one kind (manifests are already in dependency order)."""
    out: list[list[Manifest]] = []
    for m in manifests:
        if out and out[-1][0]["kind"] == m["kind"]:
            out[-1].append(m)
        else:
            out.append([m])
    return out


def _create_generated(cluster: Cluster, m: Manifest, keys: list[str], dry_run: bool,
                      before: dict[str, Any] | None) -> str:
    """Create a Secret whose `keys` get random values now (e.g. the agent token), unless it has them;
    the manifest's own data keys are set as given.

    The value exists only in this request and the cluster: it is never in a manifest, an
    export or a dry-run output, and a re-deploy keeps it (no server-side apply ever owns it).
    """
    have = (before or {}).get("data") or {}
    given = m.get("data") or {}
    if before is not None and all(have.get(k) for k in keys) and all(have.get(k) == v for k, v in given.items()):
        return "unchanged"
    body = copy.deepcopy(m)
    body["data"] = {**have, **given, **{k: base64.b64encode(secrets.token_urlsafe(32).encode()).decode()
                                        for k in keys if not have.get(k)}}
    meta = m["metadata"]
    query = [("fieldManager", FIELD_MANAGER)] + ([("dryRun", "All")] if dry_run else [])
    if before is None:
        try:
            cluster.request("POST", object_path(m["kind"], m["apiVersion"], None, meta.get("namespace")),
                            body=body, query=query, obj=mf.describe(m), action="creating")
        except ClusterError as exc:
            if exc.status != 409:  # 409: a concurrent deploy created it first: keep that token
                raise
            return "unchanged"
        return "created"
    body["metadata"]["resourceVersion"] = before["metadata"]["resourceVersion"]
    cluster.request("PUT", object_path(m["kind"], m["apiVersion"], meta["name"], meta.get("namespace")),
                    body=body, query=query, obj=mf.describe(m), action="updating")
    return "configured"


def _apply_one(cluster: Cluster, m: Manifest, dry_run: bool, namespace_exists: bool) -> ObjectResult:
    meta = m["metadata"]
    result = ObjectResult(m["kind"], meta["name"], meta.get("namespace"), "created")
    keys = mf.generated_keys(m)
    if keys:
        if dry_run and not namespace_exists:
            return result
        before = cluster.get_manifest(m) if namespace_exists else None
        result.action = _create_generated(cluster, m, keys, dry_run, before)
        return result
    before = cluster.get_manifest(m) if (namespace_exists or m["kind"] == "Namespace") else None
    if dry_run and not namespace_exists and m["kind"] != "Namespace":
        return result  # the namespace does not exist yet: the server cannot dry-run it
    _, after = cluster.apply(m, dry_run=dry_run)
    if before is not None:
        result.action = "unchanged" if _unchanged(m, before, after or {}, dry_run) else "configured"
    return result


def _owned(obj: dict[str, Any], m: Manifest) -> bool:
    """True if `obj` carries the app/team/managed-by labels of manifest `m`."""
    have = obj.get("metadata", {}).get("labels") or {}
    want = m["metadata"].get("labels") or {}
    return all(have.get(k) == want.get(k) for k in (mf.LABEL_APP, mf.LABEL_TEAM, "app.kubernetes.io/managed-by"))


def _project(obj: Any, shape: Any) -> Any:
    """The parts of `obj` at the keys `shape` (a manifest) sets: what our apply owns."""
    if isinstance(shape, dict) and isinstance(obj, dict):
        return {k: _project(obj.get(k), v) for k, v in shape.items()}
    if isinstance(shape, list) and isinstance(obj, list) and len(shape) == len(obj):
        return [_project(o, s) for o, s in zip(obj, shape, strict=True)]
    return obj


def _our_fields(obj: dict[str, Any]) -> Any:
    return [e.get("fieldsV1") for e in obj.get("metadata", {}).get("managedFields") or []
            if e.get("manager") == FIELD_MANAGER and e.get("operation") == "Apply"]


def _unchanged(m: Manifest, before: dict[str, Any], after: dict[str, Any], dry_run: bool = False) -> bool:
    """True if the apply wrote nothing: same resourceVersion — or, when a controller wrote in
    between (e.g. a new Deployment's status), the same values and field set of ours. A dry run
    keeps the resourceVersion whatever it would change, so only the values count there."""
    same_version = before["metadata"].get("resourceVersion") == after.get("metadata", {}).get("resourceVersion")
    if same_version and not dry_run:
        return True
    return _project(before, m) == _project(after, m) and _our_fields(before) == _our_fields(after)


def apply_manifests(manifests: list[Manifest], cluster: Cluster, *, app: str = "", team: str = "",
                    dry_run: bool = False) -> Outcome:
    """Validate every manifest, then apply them kind by kind (objects of one kind in parallel)."""
    started = time.perf_counter()
    check_all(manifests)
    ns = next((m["metadata"]["name"] for m in manifests if m["kind"] == "Namespace"), "")
    outcome = Outcome(app, team, ns, dry_run=dry_run)
    ns_manifest = next((m for m in manifests if m["kind"] == "Namespace"), None)
    ns_obj = cluster.get("Namespace", "v1", ns) if ns else None
    namespace_exists = ns_obj is not None
    if ns_manifest is not None and ns_obj is not None and not _owned(ns_obj, ns_manifest):
        # someone else's namespace: deploy into it, but never label it ours (undeploy would delete it)
        manifests = [m for m in manifests if m is not ns_manifest]
        outcome.objects.append(ObjectResult("Namespace", ns, None, "kept"))
        outcome.notes.append(f"namespace {ns} exists and was not created by scanflow: it is used as it is "
                             "(undeploy removes only scanflow's objects from it).")
    if dry_run and not namespace_exists:
        outcome.notes.append(f"namespace {ns} does not exist yet: its objects were validated here, not by the server.")
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        for level in _levels(manifests):
            futures = [pool.submit(_apply_one, cluster, m, dry_run, namespace_exists) for m in level]
            error: ClusterError | None = None
            for m, fut in zip(level, futures, strict=True):
                try:
                    outcome.objects.append(fut.result())
                except ClusterError as exc:
                    meta = m["metadata"]
                    outcome.objects.append(ObjectResult(m["kind"], meta["name"], meta.get("namespace"),
                                                        "failed", str(exc)))
                    error = error or exc
            if error is not None:
                outcome.seconds = time.perf_counter() - started
                raise ApplyFailed(error, outcome)
            if level[0]["kind"] == "Namespace" and not dry_run:
                namespace_exists = True
    outcome.seconds = time.perf_counter() - started
    return outcome


def deploy(app: Application, config: DeployConfig, *, cluster: Cluster | None = None, dry_run: bool = False,
           wait: float | None = None) -> Outcome:
    """Create or update the environment; with `wait`, also wait until every Deployment is Available."""
    manifests = plan(app, config)
    own = cluster is None
    cluster = cluster or connect(config)
    try:
        outcome = apply_manifests(manifests, cluster, app=app.name, team=mf.team_of(app, config), dry_run=dry_run)
        if wait and not dry_run:
            ready = wait_ready(app, config, cluster, timeout=wait)
            if not ready.ready:
                waiting = ", ".join(f"{o.kind}/{o.name} ({o.detail})" for o in ready.objects if not o.ready)
                outcome.notes.append(f"not ready after {wait:g} s: {waiting}")
        return outcome
    finally:
        if own:
            cluster.close()


def selector_for(app: Application, config: DeployConfig) -> str:
    labels = mf.labels(app, config, "", "")
    return ",".join(f"{k}={labels[k]}" for k in (mf.LABEL_APP, mf.LABEL_TEAM, "app.kubernetes.io/managed-by"))


def undeploy(app: Application, config: DeployConfig, *, cluster: Cluster | None = None, wait: float | None = None,
             dry_run: bool = False) -> Outcome:
    """Delete every object deploy created (by labels), then the namespace; optionally wait for it to go."""
    started = time.perf_counter()
    ns = mf.namespace_name(app, config)
    team = mf.team_of(app, config)
    outcome = Outcome(app.name, team, ns, dry_run=dry_run)
    own = cluster is None
    cluster = cluster or connect(config)
    try:
        selector = selector_for(app, config)
        ns_obj = cluster.get("Namespace", "v1", ns)
        if ns_obj is not None:
            for api_version, kind in OWNED_KINDS:
                items = cluster.list(kind, api_version, ns, selector)
                names = sorted(i["metadata"]["name"] for i in items)

                def remove(name: str, kind: str = kind, api_version: str = api_version) -> ObjectResult:
                    gone = True if dry_run else cluster.delete(kind, api_version, name, ns)
                    return ObjectResult(kind, name, ns, "deleted" if gone else "absent")

                with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
                    outcome.objects += list(pool.map(remove, names))
        ours = ns_obj is not None and all((ns_obj["metadata"].get("labels") or {}).get(k) == v
                                          for k, v in (p.split("=", 1) for p in selector.split(",")))
        if ns_obj is None:
            outcome.objects.append(ObjectResult("Namespace", ns, None, "absent"))
        elif not ours:
            outcome.objects.append(ObjectResult("Namespace", ns, None, "kept"))
            outcome.notes.append(f"namespace {ns} was not created by scanflow (labels differ): it is kept.")
        else:
            if not dry_run:
                cluster.delete("Namespace", "v1", ns)
            outcome.objects.append(ObjectResult("Namespace", ns, None, "deleted"))
            if wait and not dry_run:
                deadline = time.monotonic() + wait
                while cluster.get("Namespace", "v1", ns) is not None:
                    if time.monotonic() > deadline:
                        outcome.notes.append(f"namespace {ns} is still terminating after {wait:g} s.")
                        break
                    time.sleep(0.25)
    finally:
        if own:
            cluster.close()
    outcome.seconds = time.perf_counter() - started
    return outcome


# -- status --------------------------------------------------------------------------------------


@dataclass
class ObjectStatus:
    kind: str
    name: str
    namespace: str | None
    exists: bool
    ready: bool
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "namespace": self.namespace, "exists": self.exists,
                "ready": self.ready, "detail": self.detail}


@dataclass
class EnvironmentStatus:
    app: str
    team: str
    namespace: str
    objects: list[ObjectStatus] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return bool(self.objects) and all(o.ready for o in self.objects)

    @property
    def deployed(self) -> bool:
        return any(o.exists for o in self.objects)

    def to_dict(self) -> dict[str, Any]:
        return {"app": self.app, "team": self.team, "namespace": self.namespace, "ready": self.ready,
                "deployed": self.deployed, "objects": [o.to_dict() for o in self.objects]}


def _condition(obj: dict[str, Any], kind: str) -> str | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return c.get("status")
    return None


def _readiness(cluster: Cluster, m: Manifest, obj: dict[str, Any]) -> tuple[bool, str]:
    kind = m["kind"]
    status = obj.get("status") or {}
    if kind == "Namespace":
        phase = status.get("phase", "?")
        return phase == "Active", phase
    if kind == "Deployment":
        want = (obj.get("spec") or {}).get("replicas", 1)
        ready = status.get("readyReplicas", 0) or 0
        available = _condition(obj, "Available") == "True"
        current = (status.get("observedGeneration") or 0) >= (obj["metadata"].get("generation") or 0)
        return available and current and ready >= want, f"{ready}/{want} ready" + ("" if available else ", not available")
    if kind == "Service":
        ip = (obj.get("spec") or {}).get("clusterIP") or "-"
        slices = cluster.list("EndpointSlice", "discovery.k8s.io/v1", obj["metadata"]["namespace"],
                              f"kubernetes.io/service-name={obj['metadata']['name']}")
        ready = sum(1 for s in slices for e in s.get("endpoints") or []
                    if (e.get("conditions") or {}).get("ready") is not False)
        return ip not in ("-", "None") and ready > 0, f"cluster IP {ip}, {ready} ready endpoint(s)"
    if kind == "PersistentVolumeClaim":
        phase = status.get("phase", "?")
        if phase == "Pending":
            klass = (obj.get("spec") or {}).get("storageClassName")
            return False, (f"Pending: no volume of storage class {klass!r} yet" if klass else
                           "Pending: no default StorageClass provisions it (set --storage-class or "
                           "SCANFLOW_K8S_STORAGE_CLASS, or use SCANFLOW_TRACKER_DB_URI + SCANFLOW_TRACKER_ARTIFACTS)")
        return phase == "Bound", phase
    if kind == "HorizontalPodAutoscaler":
        detail = f"{status.get('currentReplicas', 0)} replicas (desired {status.get('desiredReplicas', 0)})"
        if _condition(obj, "ScalingActive") == "False":
            detail += ", no metrics yet (is metrics-server installed?)"
        return _condition(obj, "AbleToScale") != "False", detail
    return True, "present"


def status(app: Application, config: DeployConfig, *, cluster: Cluster | None = None) -> EnvironmentStatus:
    """Existence and readiness of every object the notebook's environment consists of."""
    manifests = mf.build_manifests(app, config)
    out = EnvironmentStatus(app.name, mf.team_of(app, config), mf.namespace_name(app, config))
    own = cluster is None
    cluster = cluster or connect(config)

    def one(m: Manifest) -> ObjectStatus:
        meta = m["metadata"]
        obj = cluster.get_manifest(m)
        if obj is None:
            return ObjectStatus(m["kind"], meta["name"], meta.get("namespace"), False, False, "missing")
        ready, detail = _readiness(cluster, m, obj)
        if obj["metadata"].get("deletionTimestamp"):
            ready, detail = False, "terminating"
        return ObjectStatus(m["kind"], meta["name"], meta.get("namespace"), True, ready, detail)

    try:
        with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
            out.objects = list(pool.map(one, manifests))
    finally:
        if own:
            cluster.close()
    return out


def wait_ready(app: Application, config: DeployConfig, cluster: Cluster, timeout: float,
               interval: float = 0.5) -> EnvironmentStatus:
    """Poll `status` until everything is ready or `timeout` passes; the last status."""
    deadline = time.monotonic() + timeout
    while True:
        current = status(app, config, cluster=cluster)
        if current.ready or time.monotonic() > deadline:
            return current
        time.sleep(interval)
