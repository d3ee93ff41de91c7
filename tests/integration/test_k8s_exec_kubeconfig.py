"""An exec-plugin kubeconfig (the EKS/GKE/AKS shape) against the test control plane (issue #13 item 9).

The kubeconfig's user is `exec: {command: <script>}`; the script prints an ExecCredential with
the cluster's admin client certificate (tests/k8s/cluster.sh PKI) and notes each call. Deploy
(`environment.connect` → `Cluster`), Argo submit (`argo_run.kube_client` → `submit`) and the
server's availability check all go through kubernetes/api.py and so through the plugin.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import require
from tests.k8s.fixture import K8sCluster, k8s_cluster  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _exec_kubeconfig(cluster: K8sCluster, tmp_path: Path, cert: str, key: str) -> tuple[Path, Path]:
    """(kubeconfig whose user is an exec plugin, file the plugin appends a line to per call)."""
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    calls = tmp_path / "plugin-calls"
    credential = {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {"clientCertificateData": cert, "clientKeyData": key}}
    (tmp_path / "credential.json").write_text(json.dumps(credential))
    plugin = tmp_path / "get-credential.sh"
    plugin.write_text(f"#!/bin/sh\necho called >> {calls}\ncat {tmp_path / 'credential.json'}\n")
    plugin.chmod(0o755)
    doc = {
        "apiVersion": "v1", "kind": "Config", "current-context": "exec",
        "clusters": admin["clusters"],
        "contexts": [{"name": "exec", "context": {"cluster": admin["contexts"][0]["context"]["cluster"],
                                                  "user": "plugin"}}],
        "users": [{"name": "plugin", "user": {"exec": {"apiVersion": "client.authentication.k8s.io/v1",
                                                       "command": str(plugin), "interactiveMode": "Never"}}}],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return path, calls


def _admin_pem(cluster: K8sCluster) -> tuple[str, str]:
    import base64

    user = yaml.safe_load(cluster.kubeconfig.read_text())["users"][0]["user"]
    return (base64.b64decode(user["client-certificate-data"]).decode(),
            base64.b64decode(user["client-key-data"]).decode())


@pytest.fixture
def exec_kubeconfig(k8s_cluster: K8sCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:  # noqa: F811
    require("kubernetes")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    cert, key = _admin_pem(k8s_cluster)
    return _exec_kubeconfig(k8s_cluster, tmp_path, cert, key)


def test_deploy_submit_and_availability_through_an_exec_plugin(k8s_cluster, exec_kubeconfig, monkeypatch):  # noqa: F811
    from scanflow_jupyter.kubernetes import argo_run
    from scanflow_jupyter.kubernetes.client import Cluster
    from scanflow_jupyter.kubernetes.environment import apply_manifests
    from scanflow_jupyter.server.backends import check_kubernetes

    path, calls = exec_kubeconfig
    ns = f"sf-exec-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("KUBECONFIG", str(path))
    # the availability check
    assert check_kubernetes() == {"name": "kubernetes", "available": True, "reason": None}
    cluster = Cluster(kubeconfig=str(path))
    try:
        # deploy: the deploy code path applies a namespace and a ConfigMap
        manifests = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
                     {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "probe", "namespace": ns},
                      "data": {"via": "exec-plugin"}}]
        outcome = apply_manifests(manifests, cluster)
        assert [o.action for o in outcome.objects] == ["created", "created"], outcome.to_dict()
        assert cluster.get("ConfigMap", "v1", "probe", ns)["data"] == {"via": "exec-plugin"}
        # Argo: submit a Workflow with the client argo_run builds, read it back
        api = argo_run.kube_client()
        try:
            workflow = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
                        "metadata": {"name": "probe", "namespace": ns},
                        "spec": {"entrypoint": "main", "templates": [{"name": "main", "suspend": {}}]}}
            created = argo_run.submit(api, workflow)
            assert created["metadata"]["name"] == "probe"
            assert cluster.get("Workflow", "argoproj.io/v1alpha1", "probe", ns) is not None
        finally:
            api.close()
    finally:
        cluster.delete("Namespace", "v1", ns)
        cluster.close()
    assert calls.read_text().count("called") >= 3  # check, deploy and Argo each ran the plugin


def test_a_plugin_credential_the_server_rejects_is_a_clear_error(k8s_cluster, tmp_path, monkeypatch):  # noqa: F811
    """Without the plugin's certificate the request is anonymous and refused: the plugin is what authenticates."""
    from scanflow_jupyter.kubernetes.client import Cluster, ClusterError

    require("kubernetes")
    import subprocess

    key = tmp_path / "other.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(tmp_path / "other.crt"), "-days", "1", "-subj", "/CN=stranger"], check=True,
                   capture_output=True)
    path, calls = _exec_kubeconfig(k8s_cluster, tmp_path, (tmp_path / "other.crt").read_text(), key.read_text())
    with Cluster(kubeconfig=str(path)) as cluster, pytest.raises(ClusterError) as err:
        cluster.list("Namespace", "v1")
    assert err.value.status in (401, 403), str(err.value)
    assert calls.exists()
