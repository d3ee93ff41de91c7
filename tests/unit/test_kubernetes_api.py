"""kubernetes/api.py: the one configuration loader for deploy, Argo runs and the availability check.

Real kubeconfig files read by the real `kubernetes` package; nothing is contacted here
(tests/integration/test_k8s_exec_kubeconfig.py meets a real API server).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import require


def write(tmp_path: Path, users: list[dict], current: str = "dev", name: str = "config") -> Path:
    doc = {
        "apiVersion": "v1", "kind": "Config", "current-context": current,
        "clusters": [{"name": "c1", "cluster": {"server": "https://127.0.0.1:6443", "insecure-skip-tls-verify": True}}],
        "contexts": [{"name": u["name"], "context": {"cluster": "c1", "user": u["name"]}} for u in users],
        "users": users,
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(autouse=True)
def _kubernetes(monkeypatch):
    require("kubernetes")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


def test_context_choice_and_token(tmp_path):
    from scanflow_jupyter.kubernetes.api import KubeconfigUnavailable, configuration

    path = str(write(tmp_path, [{"name": "dev", "user": {"token": "t0"}}, {"name": "ci", "user": {"token": "t1"}}]))
    assert configuration(kubeconfig=path).get_api_key_with_prefix("BearerToken") == "Bearer t0"
    conf = configuration("ci", path)
    assert conf.get_api_key_with_prefix("BearerToken") == "Bearer t1" and conf.host == "https://127.0.0.1:6443"
    with pytest.raises(KubeconfigUnavailable, match="no usable kubeconfig for context 'prod'") as err:
        configuration("prod", path)
    assert "prod" in err.value.detail and "--context" in str(err.value)


def test_exec_plugin_token_is_used(tmp_path):
    from scanflow_jupyter.kubernetes.api import configuration

    plugin = tmp_path / "plugin.sh"
    plugin.write_text('#!/bin/sh\necho \'{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",'
                      ' "status": {"token": "from-plugin"}}\'\n')
    plugin.chmod(0o755)
    exec_user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": str(plugin),
                          "interactiveMode": "Never"}}
    path = str(write(tmp_path, [{"name": "dev", "user": exec_user}]))
    assert configuration(kubeconfig=path).get_api_key_with_prefix("BearerToken") == "Bearer from-plugin"


def test_merged_kubeconfig_list_from_the_environment(tmp_path, monkeypatch):
    from scanflow_jupyter.kubernetes.api import configuration

    a = write(tmp_path, [{"name": "dev", "user": {"token": "ta"}}], name="a")
    b = write(tmp_path, [{"name": "ci", "user": {"token": "tb"}}], current="ci", name="b")
    monkeypatch.setenv("KUBECONFIG", f"{a}:{b}")
    assert configuration("ci").get_api_key_with_prefix("BearerToken") == "Bearer tb"


def test_missing_file_is_a_clear_error(tmp_path, monkeypatch):
    from scanflow_jupyter.kubernetes.api import KubeconfigUnavailable, configuration
    from scanflow_jupyter.kubernetes.argo_run import KubernetesUnavailable, kube_client
    from scanflow_jupyter.kubernetes.client import Cluster, ClusterUnavailable

    missing = str(tmp_path / "nope")
    monkeypatch.setenv("KUBECONFIG", missing)
    with pytest.raises(KubeconfigUnavailable) as err:
        configuration()
    assert err.value.detail == f"there is none at {missing}"
    with pytest.raises(ClusterUnavailable, match=f"there is none at {missing}"):
        Cluster()
    with pytest.raises(KubernetesUnavailable, match=f"there is none at {missing}"):
        kube_client()
