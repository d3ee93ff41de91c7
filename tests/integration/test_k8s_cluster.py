"""Smoke tests of the local Kubernetes cluster (tests/k8s/cluster.sh) with the Python client.

Real etcd, kube-apiserver (RBAC on), controller-manager, scheduler, Argo workflow-controller and
the real node `scanflow-node-0` (kubelet + containerd): the pods here run for real, from the
busybox image in the cluster's local registry. kwok's fake node is only a tainted, explicitly
selected pool (tests/k8s/manifests/kwok-pool.yaml); tests/integration/test_k8s_node.py has more.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import require
from tests.k8s.fixture import K8sCluster, k8s_cluster, wait_until  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

ARGO = {"group": "argoproj.io", "version": "v1alpha1", "plural": "workflows"}




@pytest.fixture(scope="module")
def api(k8s_cluster: K8sCluster) -> Any:  # noqa: F811
    require("kubernetes")
    return k8s_cluster.api_client()


@pytest.fixture(scope="module")
def image(k8s_cluster: K8sCluster) -> str:  # noqa: F811
    """busybox from the cluster's local registry (the real node has no other source of images)."""
    if not k8s_cluster.busybox:
        pytest.fail("cluster.sh up printed no SCANFLOW_K8S_BUSYBOX: the real node is missing")
    return k8s_cluster.busybox


@pytest.fixture(scope="module")
def node(k8s_cluster: K8sCluster) -> str:  # noqa: F811
    return k8s_cluster.node


@pytest.fixture(scope="module")
def namespace(api: Any) -> Iterator[str]:
    """A fresh namespace, deleted afterwards (its default ServiceAccount is waited for)."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    name = f"sf-smoke-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    wait_until(lambda: [sa.metadata.name for sa in core.list_namespaced_service_account(name).items],
               lambda names: "default" in names, f"ServiceAccount default in {name}")
    # Argo's executor (wait container) writes the step's WorkflowTaskResult as the pod's ServiceAccount
    rbac = client.RbacAuthorizationV1Api(api)
    rbac.create_namespaced_role(name, {"metadata": {"name": "argo-executor"}, "rules": [
        {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]}]})
    rbac.create_namespaced_role_binding(name, {
        "metadata": {"name": "argo-executor"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "argo-executor"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": name}]})
    yield name
    core.delete_namespace(name)


def workflow(name: str, image: str, fail_step: str | None = None, kwok_fail: bool = False) -> dict[str, Any]:
    """A 2-step DAG: `first` then `second`; `fail_step` really exits 1 (or, with `kwok_fail`, is
    labelled to fail on the kwok pool)."""

    def template(step: str) -> dict[str, Any]:
        command = ["false"] if step == fail_step and not kwok_fail else ["true"]
        tmpl: dict[str, Any] = {"name": step, "container": {"image": image, "command": command}}
        if step == fail_step and kwok_fail:
            tmpl["metadata"] = {"labels": {"scanflow.io/kwok-fail": "true"}}
        return tmpl

    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {
            "entrypoint": "main",
            "templates": [
                {"name": "main", "dag": {"tasks": [
                    {"name": "first", "template": "first"},
                    {"name": "second", "template": "second", "dependencies": ["first"]},
                ]}},
                template("first"),
                template("second"),
            ],
        },
    }


def run_workflow(api: Any, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    """Create the Workflow and wait until Argo's controller gives it a final phase."""
    from kubernetes import client

    custom = client.CustomObjectsApi(api)
    name = body["metadata"]["name"]
    custom.create_namespaced_custom_object(namespace=namespace, body=body, **ARGO)
    return wait_until(
        lambda: custom.get_namespaced_custom_object(namespace=namespace, name=name, **ARGO),
        lambda wf: wf.get("status", {}).get("phase") in ("Succeeded", "Failed", "Error"),
        f"Workflow {name} finished", timeout=120)


def node_phases(wf: dict[str, Any]) -> dict[str, str]:
    """Phase of each Pod node of a Workflow, by DAG task name."""
    nodes = wf["status"].get("nodes", {}).values()
    return {n["displayName"]: n["phase"] for n in nodes if n["type"] == "Pod"}


def test_server_version_is_1_36(api: Any) -> None:
    from kubernetes import client

    version = client.VersionApi(api).get_code()
    assert version.git_version.startswith("v1.36."), version
    assert (version.major, version.minor) == ("1", "36")


def test_kwok_node_is_ready(api: Any) -> None:
    from kubernetes import client

    nodes = client.CoreV1Api(api).list_node().items
    ready = {n.metadata.name: {c.type: c.status for c in n.status.conditions}.get("Ready")
             for n in nodes}
    assert ready.get("kwok-node-0") == "True", ready


def test_deployment_becomes_available(api: Any, namespace: str, image: str, node: str) -> None:
    from kubernetes import client

    apps = client.AppsV1Api(api)
    labels = {"app": "web"}
    apps.create_namespaced_deployment(namespace, client.V1Deployment(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1DeploymentSpec(
            replicas=2,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(
                    name="web", image=image, command=["sleep", "3600"])])))))
    dep = wait_until(lambda: apps.read_namespaced_deployment_status("web", namespace),
                     lambda d: d.status.available_replicas == 2, "Deployment web available")
    conditions = {c.type: c.status for c in dep.status.conditions}
    assert conditions.get("Available") == "True", conditions
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector="app=web").items
    assert len(pods) == 2
    assert all(p.status.phase == "Running" and p.spec.node_name == node for p in pods)


def test_job_pod_succeeds(api: Any, namespace: str, image: str) -> None:
    from kubernetes import client

    client.BatchV1Api(api).create_namespaced_job(namespace, client.V1Job(
        metadata=client.V1ObjectMeta(name="once"),
        spec=client.V1JobSpec(backoff_limit=0, template=client.V1PodTemplateSpec(
            spec=client.V1PodSpec(restart_policy="Never", containers=[
                client.V1Container(name="main", image=image, command=["true"])])))))
    job = wait_until(lambda: client.BatchV1Api(api).read_namespaced_job_status("once", namespace),
                     lambda j: (j.status.succeeded or 0) >= 1 or (j.status.failed or 0) >= 1,
                     "Job once finished")
    assert job.status.succeeded == 1 and not job.status.failed, job.status
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector="job-name=once")
    assert [p.status.phase for p in pods.items] == ["Succeeded"]


def test_argo_dag_workflow_succeeds(api: Any, namespace: str, image: str) -> None:
    wf = run_workflow(api, namespace, workflow("dag-ok", image))
    assert wf["status"]["phase"] == "Succeeded", wf["status"]
    assert node_phases(wf) == {"first": "Succeeded", "second": "Succeeded"}
    nodes = {n["displayName"]: n for n in wf["status"]["nodes"].values()}
    assert nodes["second"]["startedAt"] >= nodes["first"]["finishedAt"], "DAG order not kept"


@pytest.mark.parametrize("kwok_fail", [False, True], ids=["real-node", "kwok-pool"])
def test_failing_step_fails_the_workflow(api: Any, namespace: str, image: str, node: str, kwok_fail: bool) -> None:
    """A step that exits 1 on the real node; and the kwok pool's deliberate fake failure (the
    `scanflow.io/kwok-fail` label selects the kwok pool, tests/k8s/manifests/kwok-pool.yaml)."""
    from kubernetes import client

    name = "dag-fail-kwok" if kwok_fail else "dag-fail"
    wf = run_workflow(api, namespace, workflow(name, image, fail_step="first", kwok_fail=kwok_fail))
    assert wf["status"]["phase"] == "Failed", wf["status"]
    phases = node_phases(wf)
    assert phases.get("first") == "Failed", phases
    assert "second" not in phases or phases["second"] in ("Omitted", "Skipped"), phases
    first = next(n for n in wf["status"]["nodes"].values() if n["displayName"] == "first")
    assert "exit code 1" in first.get("message", ""), first
    pods = client.CoreV1Api(api).list_namespaced_pod(
        namespace, label_selector=f"workflows.argoproj.io/workflow={name}").items
    assert {p.spec.node_name for p in pods} == {"kwok-node-0" if kwok_fail else node}


def test_rbac_denies_a_fresh_service_account(api: Any, namespace: str) -> None:
    """A new ServiceAccount may not list Secrets, by review AND by a real request with its token."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(api)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="nobody")))
    user = f"system:serviceaccount:{namespace}:nobody"

    def allowed() -> bool:
        review = client.AuthorizationV1Api(api).create_subject_access_review(
            client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
                user=user, groups=["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
                resource_attributes=client.V1ResourceAttributes(
                    namespace=namespace, verb="list", resource="secrets"))))
        return bool(review.status.allowed)

    assert not allowed()

    token = core.create_namespaced_service_account_token(
        "nobody", namespace, client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[]))).status.token
    cfg = client.Configuration()
    cfg.host, cfg.ssl_ca_cert = api.configuration.host, api.configuration.ssl_ca_cert
    cfg.api_key = {"authorization": f"Bearer {token}"}
    as_sa = client.ApiClient(cfg)
    with pytest.raises(ApiException) as denied:
        client.CoreV1Api(as_sa).list_namespaced_secret(namespace)
    assert denied.value.status == 403, denied.value

    # positive control: the same checks pass once a Role grants it
    rbac = client.RbacAuthorizationV1Api(api)
    rbac.create_namespaced_role(namespace, client.V1Role(
        metadata=client.V1ObjectMeta(name="read-secrets"),
        rules=[client.V1PolicyRule(api_groups=[""], resources=["secrets"], verbs=["list"])]))
    rbac.create_namespaced_role_binding(namespace, client.V1RoleBinding(
        metadata=client.V1ObjectMeta(name="nobody-reads-secrets"),
        role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role",
                                  name="read-secrets"),
        subjects=[client.RbacV1Subject(kind="ServiceAccount", name="nobody", namespace=namespace)]))
    wait_until(allowed, bool, "SubjectAccessReview allowed after the RoleBinding", timeout=30)
    assert client.CoreV1Api(as_sa).list_namespaced_secret(namespace).items is not None


def test_namespace_deletion_completes(api: Any) -> None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(api)
    name = f"sf-gone-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    core.create_namespaced_config_map(name, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="c"), data={"k": "v"}))
    core.delete_namespace(name)

    def exists() -> bool:
        try:
            core.read_namespace(name)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    wait_until(exists, lambda present: not present, f"namespace {name} deleted", timeout=120)
