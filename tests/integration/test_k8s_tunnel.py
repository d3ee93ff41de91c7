"""`kubernetes.tunnel.ServiceTunnel` on the real node: HTTP through the API server's port-forward.

The runner reaches the environment's tracker and S3 server through two tunnels while its Argo watch
uses the same API client. The kubernetes package's portforward swaps `api_client.request` for a
websocket call while it connects: a tunnel that shared the caller's client made the watch's calls
fail for good (a run that never saw its Workflow finish). Here many connections through two tunnels
run while the caller's client keeps listing: every request and every listing must succeed.
"""

from __future__ import annotations

import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.k8s.fixture import K8sCluster, k8s_cluster, wait_until  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

SECURE = {"runAsNonRoot": True, "runAsUser": 65534, "allowPrivilegeEscalation": False,
          "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


@pytest.fixture(scope="module")
def web(k8s_cluster: K8sCluster) -> Iterator[tuple[Any, str]]:  # noqa: F811
    """Two httpd pods behind Services `web-a` and `web-b` (busybox from the local registry)."""
    from kubernetes import client

    if not k8s_cluster.busybox:
        pytest.fail(f"cluster.sh up printed no busybox image: {k8s_cluster}")
    api = k8s_cluster.api_client()
    core = client.CoreV1Api(api)
    ns = f"sf-tunnel-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": ns}})
    try:
        for name in ("web-a", "web-b"):
            script = f"mkdir -p /tmp/w && echo {name} > /tmp/w/index.html && httpd -f -p 8080 -h /tmp/w"
            core.create_namespaced_pod(ns, {"metadata": {"name": name, "labels": {"app": name}}, "spec": {
                "containers": [{"name": "c", "image": k8s_cluster.busybox, "command": ["sh", "-c", script],
                                "securityContext": SECURE,
                                "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}]}})
            core.create_namespaced_service(ns, {"metadata": {"name": name}, "spec": {
                "selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
        for name in ("web-a", "web-b"):
            wait_until(lambda n=name: [a for s in core.read_namespaced_endpoints(n, ns).subsets or []
                                       for a in s.addresses or []], bool, f"{name} has a Ready address")
        yield api, ns
    finally:
        core.delete_namespace(ns)


def test_many_connections_through_two_tunnels_while_the_callers_client_keeps_working(web: tuple[Any, str]) -> None:
    from kubernetes import client

    from scanflow_jupyter.kubernetes.tunnel import ServiceTunnel

    api, ns = web
    core = client.CoreV1Api(api)
    answers: list[str] = []
    errors: list[str] = []
    with ServiceTunnel(api, ns, "web-a", 80) as a, ServiceTunnel(api, ns, "web-b", 80) as b:
        def fetch(url: str) -> None:
            try:
                with urllib.request.urlopen(f"{url}/index.html", timeout=60) as resp:
                    answers.append(resp.read().decode().strip())
            except Exception as exc:  # noqa: BLE001 - collected, asserted below
                errors.append(f"{url}: {exc!r}")

        threads = [threading.Thread(target=fetch, args=(t.url,)) for _ in range(8) for t in (a, b)]
        for t in threads:
            t.start()
        listings = 0
        deadline = time.monotonic() + 120
        while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
            core.list_namespaced_pod(ns, _request_timeout=30)  # the caller's own client, meanwhile
            listings += 1
        for t in threads:
            t.join(60)
        core.list_namespaced_pod(ns, _request_timeout=30)  # and after: not left patched
    assert not errors, errors
    assert sorted(answers) == ["web-a"] * 8 + ["web-b"] * 8
    assert listings > 0
