"""The one way Scanflow reaches a Kubernetes API server: the `kubernetes` package's ApiClient.

Deploy (`client.Cluster`), Argo submit/watch (`argo_run`), the port-forward tunnel and the
server's availability check all load their configuration here, so every kubeconfig the
`kubernetes` package understands works the same everywhere: client certificates, tokens,
exec plugins (EKS `aws eks get-token`, GKE `gke-gcloud-auth-plugin`, AKS `kubelogin`), auth
providers, several files in KUBECONFIG. With no kubeconfig and no explicit context, a pod's
service account (in-cluster config) is used.
"""

from __future__ import annotations

import os
from typing import Any


class KubeconfigUnavailable(RuntimeError):
    """No usable kubeconfig or in-cluster configuration; the message says where and how to fix it.

    `detail` is the loader's own reason (e.g. "there is none at ~/.kube/config").
    """

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message)
        self.detail = detail


def configuration(context: str | None = None, kubeconfig: str | None = None) -> Any:
    """A `kubernetes.client.Configuration` for `context` of `kubeconfig`.

    Defaults: $KUBECONFIG as it is now (the package reads it only at import), else ~/.kube/config,
    its current context; else the in-cluster service account. Refreshed exec-plugin tokens are
    never written back to the kubeconfig.
    """
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    kubeconfig = kubeconfig or os.environ.get("KUBECONFIG") or None
    conf = client.Configuration()
    try:
        if os.environ.get("KUBERNETES_SERVICE_HOST") and not (context or kubeconfig):
            config.load_incluster_config(client_configuration=conf)
            return conf
        config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=conf,
                                persist_config=False)
        return conf
    except (ConfigException, OSError, TypeError, ValueError, KeyError) as exc:
        where = kubeconfig or "~/.kube/config"
        ctx = f"context {context!r}" if context else "the current context"
        detail = str(exc).strip().rstrip(".")
        if "No configuration found" in detail:
            detail = f"there is none at {where}"  # the package's words say less
        detail = detail.replace("Invalid kube-config file. ", "")
        raise KubeconfigUnavailable(
            f"no usable kubeconfig for {ctx}: {detail}. Fix: point KUBECONFIG at "
            "your cluster's kubeconfig and pick a context with --context / SCANFLOW_K8S_CONTEXT "
            "(`kubectl config get-contexts` lists them); an exec plugin (aws, gke-gcloud-auth-plugin, kubelogin) "
            "must be on PATH and print an ExecCredential.", detail) from exc


def api_client(context: str | None = None, kubeconfig: str | None = None) -> Any:
    """An ApiClient for `context` of `kubeconfig` (see `configuration`)."""
    from kubernetes import client

    return client.ApiClient(configuration(context, kubeconfig))
