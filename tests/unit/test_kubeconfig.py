"""Kubeconfig reading for the fast (httpx) Kubernetes client path."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from scanflow_jupyter.kubernetes.kubeconfig import KubeconfigError, load_endpoint


def write(tmp_path: Path, users: list[dict], current: str = "dev") -> Path:
    doc = {
        "apiVersion": "v1", "kind": "Config", "current-context": current,
        "clusters": [{"name": "c1", "cluster": {"server": "https://127.0.0.1:6443/",
                                                "certificate-authority": "ca.pem"}}],
        "contexts": [{"name": u["name"], "context": {"cluster": "c1", "user": u["name"]}} for u in users],
        "users": users,
    }
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_client_certificate_data_goes_to_private_files_removed_on_close(tmp_path):
    cert = base64.b64encode(b"CERT").decode()
    path = write(tmp_path, [{"name": "dev", "user": {"client-certificate-data": cert, "client-key": "k.pem"}}])
    ep = load_endpoint(str(path))
    assert ep is not None and ep.server == "https://127.0.0.1:6443"
    assert ep.ca_file == str((tmp_path / "ca.pem").resolve())  # relative to the kubeconfig's folder
    assert ep.key_file == str((tmp_path / "k.pem").resolve())
    assert Path(ep.cert_file).read_bytes() == b"CERT"
    assert Path(ep.cert_file).stat().st_mode & 0o077 == 0
    ep.close()
    assert not Path(ep.cert_file).exists()


def test_context_choice_and_token(tmp_path):
    path = write(tmp_path, [{"name": "dev", "user": {"token": "t0"}}, {"name": "ci", "user": {"token": "t1"}}])
    assert load_endpoint(str(path)).token == "t0"
    assert load_endpoint(str(path), "ci").token == "t1"
    with pytest.raises(KubeconfigError, match=r"no context named 'prod' \(known: dev, ci\)"):
        load_endpoint(str(path), "prod")


@pytest.mark.parametrize("user", [{"exec": {"command": "aws"}}, {"auth-provider": {"name": "gcp"}}])
def test_exec_and_auth_providers_are_left_to_the_kubernetes_package(tmp_path, user):
    assert load_endpoint(str(write(tmp_path, [{"name": "dev", "user": user}]))) is None


def test_merged_kubeconfig_list_is_left_to_the_kubernetes_package(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    assert load_endpoint() is None


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(KubeconfigError, match="cannot read"):
        load_endpoint(str(tmp_path / "nope"))
