"""A small REST client for the objects Scanflow manages: server-side apply, get, list, delete.

Requests go through the `kubernetes` package's `ApiClient`, configured by `api.py` like Argo runs
and the server's availability check (every kubeconfig: certificates, tokens, exec plugins, auth
providers, merged files, in-cluster). Apply is a server-side apply
(`PATCH` with `application/apply-patch+yaml`, `fieldManager=scanflow`, `force=true`). Every error
the API server answers becomes a `ClusterError` whose message names the object and the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from scanflow_jupyter.kubernetes.manifests import Manifest, describe

FIELD_MANAGER = "scanflow"


@dataclass(frozen=True)
class Resource:
    """Where objects of one kind live in the REST API."""

    prefix: str  # /api/v1 or /apis/<group>/<version>
    plural: str
    namespaced: bool


RESOURCES: dict[tuple[str, str], Resource] = {
    ("v1", "Namespace"): Resource("/api/v1", "namespaces", False),
    ("v1", "ServiceAccount"): Resource("/api/v1", "serviceaccounts", True),
    ("v1", "Secret"): Resource("/api/v1", "secrets", True),
    ("v1", "ConfigMap"): Resource("/api/v1", "configmaps", True),
    ("v1", "PersistentVolumeClaim"): Resource("/api/v1", "persistentvolumeclaims", True),
    ("v1", "PersistentVolume"): Resource("/api/v1", "persistentvolumes", False),
    ("v1", "Service"): Resource("/api/v1", "services", True),
    ("v1", "Pod"): Resource("/api/v1", "pods", True),
    ("rbac.authorization.k8s.io/v1", "Role"): Resource("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"):
        Resource("/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    ("apps/v1", "Deployment"): Resource("/apis/apps/v1", "deployments", True),
    ("networking.k8s.io/v1", "NetworkPolicy"): Resource("/apis/networking.k8s.io/v1", "networkpolicies", True),
    ("autoscaling/v2", "HorizontalPodAutoscaler"):
        Resource("/apis/autoscaling/v2", "horizontalpodautoscalers", True),
    ("discovery.k8s.io/v1", "EndpointSlice"): Resource("/apis/discovery.k8s.io/v1", "endpointslices", True),
    ("argoproj.io/v1alpha1", "Workflow"): Resource("/apis/argoproj.io/v1alpha1", "workflows", True),
}


class ClusterError(RuntimeError):
    """The cluster refused or could not be reached; the message says which object, which field, and why."""

    def __init__(self, message: str, *, object: str | None = None, field: str | None = None,
                 status: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.object = object
        self.field = field
        self.status = status
        self.reason = reason

    def to_dict(self) -> dict[str, Any]:
        return {"error": str(self), "object": self.object, "field": self.field, "status": self.status,
                "reason": self.reason}


class ClusterUnavailable(ClusterError):
    """No kubeconfig / context, or the API server does not answer."""


def resource_of(kind: str, api_version: str) -> Resource:
    try:
        return RESOURCES[(api_version, kind)]
    except KeyError:
        known = ", ".join(f"{k} ({v})" for v, k in RESOURCES)
        raise ClusterError(f"Scanflow does not manage {kind} ({api_version}); it knows {known}.",
                           object=kind) from None


def object_path(kind: str, api_version: str, name: str | None = None, namespace: str | None = None) -> str:
    res = resource_of(kind, api_version)
    path = res.prefix
    if res.namespaced:
        if not namespace:
            raise ClusterError(f"{kind}/{name}: metadata.namespace is missing.", object=f"{kind}/{name}",
                               field="metadata.namespace")
        path += f"/namespaces/{quote(namespace, safe='')}"
    path += f"/{res.plural}"
    if name:
        path += f"/{quote(name, safe='')}"
    return path


def error_from_api(exc: Any, obj: str, action: str) -> ClusterError:
    """An `ApiException` (its JSON `Status` body) -> ClusterError naming the object and the field(s)."""
    status = getattr(exc, "status", None)
    body: Any = getattr(exc, "body", None)
    try:
        doc = json.loads(body) if isinstance(body, (str, bytes)) and body else {}
    except ValueError:
        doc = {}
    message = doc.get("message") or getattr(exc, "reason", None) or str(exc)
    reason = doc.get("reason")
    causes = (doc.get("details") or {}).get("causes") or []
    fields = [c.get("field") for c in causes if c.get("field")]
    if causes:
        detail = "; ".join(f"{c.get('field') or '(object)'}: {c.get('message')}" for c in causes)
    else:
        detail = message
    if status in (401, 403):
        fix = ("the kubeconfig user may not do this: use a context with rights to manage namespaces and "
               "RBAC (--context), or ask a cluster admin to create the environment.")
    elif status == 422 or reason in ("Invalid", "FieldValueInvalid"):
        fix = ("the API server refused the field above. If it is immutable (e.g. a Deployment's selector), "
               "`scanflow undeploy` then deploy again; otherwise fix the notebook option it comes from.")
    elif status == 409:
        fix = "another writer changed the object; run the command again."
    elif status == 404:
        fix = "the API server does not serve this kind or the namespace is gone (is the CRD installed?)."
    else:
        fix = "see the API server's message above."
    field = fields[0] if fields else None
    where = f" {field}:" if field and not causes else ""
    text = f"{action} {obj} failed ({status} {reason or ''}):{where} {detail}. Fix: {fix}".replace(" )", ")")
    return ClusterError(text, object=obj, field=field, status=status, reason=reason)


class Cluster:
    """One API server reached through a kubeconfig context."""

    def __init__(self, context: str | None = None, kubeconfig: str | None = None, timeout: float = 30.0) -> None:
        from scanflow_jupyter.kubernetes.api import KubeconfigUnavailable, api_client

        self.timeout = timeout
        self.context = context
        try:
            self.api: Any = api_client(context, kubeconfig)
        except KubeconfigUnavailable as exc:
            raise self._unavailable(kubeconfig, context, exc) from exc
        self.host = self.api.configuration.host

    @staticmethod
    def _unavailable(kubeconfig: str | None, context: str | None, exc: Any) -> ClusterUnavailable:
        where = kubeconfig or "$KUBECONFIG or ~/.kube/config"
        return ClusterUnavailable(
            f"cannot load the kubeconfig {where}" + (f" (context {context})" if context else "")
            + f": {exc.detail}. Fix: point KUBECONFIG at a valid file and pick a context with --context "
            "(`kubectl config get-contexts` lists them).")

    def close(self) -> None:
        self.api.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- raw requests

    def request(self, method: str, path: str, *, body: Any = None, query: list[tuple[str, str]] | None = None,
                content_type: str | None = None, obj: str = "", action: str = "") -> tuple[int, Any]:
        """(HTTP status, decoded JSON body); ClusterError for any non-2xx answer."""
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            resp = self.api.call_api(path, method, query_params=query or [], header_params=headers, body=body,
                                     auth_settings=["BearerToken"], _preload_content=False,
                                     _request_timeout=self.timeout)
        except ApiException as exc:
            raise error_from_api(exc, obj or path, action or method) from None
        except HTTPError as exc:
            raise self._no_answer(exc) from exc
        data = resp.data
        return resp.status, (json.loads(data) if data else None)

    def _no_answer(self, exc: Exception) -> ClusterUnavailable:
        return ClusterUnavailable(
            f"the API server at {self.host} does not answer ({type(exc).__name__}: {exc}). Fix: check that the "
            "cluster runs and that the kubeconfig context points at it (--context).")

    # -- objects

    def get(self, kind: str, api_version: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The object, or None if it does not exist."""
        try:
            return self.request("GET", object_path(kind, api_version, name, namespace),
                                obj=f"{kind}/{name}", action="reading")[1]
        except ClusterError as exc:
            if exc.status == 404:
                return None
            raise

    def get_manifest(self, m: Manifest) -> dict[str, Any] | None:
        meta = m["metadata"]
        return self.get(m["kind"], m["apiVersion"], meta["name"], meta.get("namespace"))

    def apply(self, m: Manifest, *, dry_run: bool = False) -> tuple[int, dict[str, Any]]:
        """Server-side apply of one manifest; (201 created | 200, the object as stored)."""
        meta = m["metadata"]
        query = [("fieldManager", FIELD_MANAGER), ("force", "true")]
        if dry_run:
            query.append(("dryRun", "All"))
        return self.request("PATCH", object_path(m["kind"], m["apiVersion"], meta["name"], meta.get("namespace")),
                            body=m, query=query, content_type="application/apply-patch+yaml",
                            obj=describe(m), action="applying")

    def list(self, kind: str, api_version: str, namespace: str | None = None,
             label_selector: str | None = None) -> list[dict[str, Any]]:
        """Objects of a kind (in a namespace); [] if the kind is not served (e.g. no Argo CRD)."""
        query = [("labelSelector", label_selector)] if label_selector else []
        try:
            _, doc = self.request("GET", object_path(kind, api_version, None, namespace), query=query,
                                  obj=f"{kind} list", action="listing")
        except ClusterError as exc:
            if exc.status == 404:
                return []
            raise
        return list((doc or {}).get("items") or [])

    def delete(self, kind: str, api_version: str, name: str, namespace: str | None = None) -> bool:
        """Delete (background propagation); False if it was already gone."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        try:
            self.request("DELETE", object_path(kind, api_version, name, namespace), body=body,
                         obj=f"{kind}/{name}", action="deleting")
        except ClusterError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def create(self, m: Manifest) -> dict[str, Any]:
        """POST a new object (used for reviews such as SubjectAccessReview)."""
        res = m["apiVersion"]
        prefix = "/api/v1" if res == "v1" else f"/apis/{res}"
        plural = m["kind"].lower() + "s"
        return self.request("POST", f"{prefix}/{plural}", body=m, obj=m["kind"], action="creating")[1]
