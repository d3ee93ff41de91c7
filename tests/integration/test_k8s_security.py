"""Least privilege and no leaked credentials, checked against a real API server (RBAC authorizer).

SubjectAccessReviews ask the API server what the environment's ServiceAccount may do; the leak
check reads every object back from the cluster and looks for the fake password and keys.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from scanflow_jupyter.kubernetes import environment as env
from scanflow_jupyter.kubernetes import manifests as mf
from scanflow_jupyter.kubernetes.client import Cluster
from scanflow_jupyter.kubernetes.config import DeployConfig
from scanflow_jupyter.notebook.parser import parse_notebook
from tests.integration.test_k8s_deploy import AGENTS_LOOP, TRACKER_IMAGE
from tests.k8s.fixture import k8s_cluster  # noqa: F401

pytestmark = pytest.mark.integration

FAKE_PASSWORD = "s3cr3t-" + uuid.uuid4().hex
FAKE_KEY_ID = "AKIAFAKE" + uuid.uuid4().hex[:12].upper()
FAKE_SECRET_KEY = "fake-secret-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def secured(k8s_cluster) -> Iterator[dict[str, Any]]:  # noqa: F811
    cluster = Cluster(kubeconfig=str(k8s_cluster.kubeconfig))
    team = f"sec-{uuid.uuid4().hex[:6]}"
    app = parse_notebook(AGENTS_LOOP)
    config = DeployConfig(kubeconfig=str(k8s_cluster.kubeconfig), team=team, tracker_image=TRACKER_IMAGE,
                          tracker_db_uri=f"postgresql://mlflow:{FAKE_PASSWORD}@db.example:5432/mlflow",
                          tracker_artifacts="s3://bucket/mlflow", s3_endpoint_url="http://minio.example:9000",
                          aws_access_key_id=FAKE_KEY_ID, aws_secret_access_key=FAKE_SECRET_KEY)
    env.deploy(app, config, cluster=cluster)
    yield {"cluster": cluster, "app": app, "config": config, "ns": mf.namespace_name(app, config)}
    env.undeploy(app, config, cluster=cluster)
    cluster.close()


def can(cluster: Cluster, ns: str, verb: str, resource: str, *, group: str = "", namespace: str | None = None,
        subresource: str | None = None, name: str | None = None) -> bool:
    """Ask the API server whether the environment's ServiceAccount may do this."""
    attrs: dict[str, Any] = {"verb": verb, "resource": resource, "group": group}
    if namespace:
        attrs["namespace"] = namespace
    if subresource:
        attrs["subresource"] = subresource
    if name:
        attrs["name"] = name
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
              "spec": {"user": f"system:serviceaccount:{ns}:{mf.SERVICE_ACCOUNT}",
                       "groups": ["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"],
                       "resourceAttributes": attrs}}
    return bool(cluster.create(review)["status"].get("allowed"))


def test_authorizer_is_not_allow_all(secured):
    # if this fails, every other "cannot" below would be meaningless
    assert not can(secured["cluster"], secured["ns"], "delete", "nodes")


def test_can_do_what_agents_and_pipelines_need(secured):
    cluster, ns = secured["cluster"], secured["ns"]
    for verb in ("get", "list", "watch"):
        assert can(cluster, ns, verb, "pods", namespace=ns), verb
    assert can(cluster, ns, "get", "pods", subresource="log", namespace=ns)
    for verb in ("create", "get", "watch"):
        assert can(cluster, ns, verb, "workflows", group="argoproj.io", namespace=ns), verb
    assert can(cluster, ns, "create", "workflowtaskresults", group="argoproj.io", namespace=ns)
    assert can(cluster, ns, "get", "configmaps", namespace=ns, name=mf.ENV_CONFIGMAP)


def test_cannot_read_secrets_anywhere(secured):
    cluster, ns = secured["cluster"], secured["ns"]
    for namespace in ("kube-system", "default", ns):
        for verb in ("get", "list", "watch"):
            assert not can(cluster, ns, verb, "secrets", namespace=namespace), (verb, namespace)
    assert not can(cluster, ns, "get", "secrets", namespace=ns, name=mf.SECRET)


def test_cannot_reach_other_namespaces_or_cluster_scope(secured):
    cluster, ns = secured["cluster"], secured["ns"]
    assert not can(cluster, ns, "list", "pods", namespace="kube-system")
    assert not can(cluster, ns, "create", "workflows", group="argoproj.io", namespace="default")
    assert not can(cluster, ns, "get", "configmaps", namespace=ns, name="someone-elses")
    for verb, resource, group in [("create", "namespaces", ""), ("create", "clusterroles", "rbac.authorization.k8s.io"),
                                  ("create", "clusterrolebindings", "rbac.authorization.k8s.io"),
                                  ("create", "nodes", ""), ("list", "nodes", ""), ("delete", "namespaces", "")]:
        assert not can(cluster, ns, verb, resource, group=group), (verb, resource)
    for verb in ("create", "update", "delete"):
        assert not can(cluster, ns, verb, "roles", group="rbac.authorization.k8s.io", namespace=ns), verb
        assert not can(cluster, ns, verb, "deployments", group="apps", namespace=ns), verb


def test_no_credential_outside_the_secret(secured):
    cluster, ns = secured["cluster"], secured["ns"]
    values = [FAKE_PASSWORD, FAKE_KEY_ID, FAKE_SECRET_KEY]
    selector = env.selector_for(secured["app"], secured["config"])
    stored: dict[str, Any] = {}
    for api_version, kind in env.OWNED_KINDS:
        for item in cluster.list(kind, api_version, ns, selector):
            stored[f"{kind}/{item['metadata']['name']}"] = item
    assert "Secret/scanflow-tracker" in stored and f"Deployment/{mf.TRACKER}" in stored
    secret = stored.pop("Secret/scanflow-tracker")
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert FAKE_PASSWORD in decoded["backend-store-uri"]  # the config really carried the credentials
    assert decoded["aws-secret-access-key"] == FAKE_SECRET_KEY
    assert FAKE_PASSWORD not in json.dumps(secret["metadata"])  # not in annotations (last-applied) either
    for name, item in stored.items():
        text = json.dumps(item)
        for value in values:
            assert value not in text, f"a credential leaks into {name}"
    for name, item in stored.items():
        if not name.startswith("Deployment/"):  # list items carry no kind
            continue
        for c in item["spec"]["template"]["spec"]["containers"]:
            for e in c.get("env") or []:
                if e["name"] in ("BACKEND_STORE_URI", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                    assert "value" not in e and e["valueFrom"]["secretKeyRef"]["name"] == mf.SECRET, (name, e)
    # and none in the generated manifests either (what `scanflow export` writes)
    for m in mf.build_manifests(secured["app"], secured["config"]):
        if m["kind"] != "Secret":
            assert not any(v in json.dumps(m) for v in values), mf.describe(m)
