"""Reach a Service of the team environment from this machine through the API server (port-forward).

The runner talks to the environment's tracker and object store while a kubernetes run goes on.
Those are ClusterIP Services: from a laptop only the API server is reachable. `ServiceTunnel`
listens on 127.0.0.1:<free port> and forwards each connection to a Ready pod behind the Service
(`pods/portforward`, the same permission `kubectl port-forward` needs), so clients simply use
`http://127.0.0.1:<port>`. Nothing is exposed beyond loopback.
"""

from __future__ import annotations

import select
import socket
import threading
from typing import Any

from scanflow_jupyter.kubernetes.argo_run import KubernetesUnavailable

CHUNK = 65536


class ServiceTunnel:
    """`with ServiceTunnel(api, ns, "scanflow-tracker", 5000) as t: t.url` -> http://127.0.0.1:PORT."""

    def __init__(self, api: Any, namespace: str, service: str, port: int) -> None:
        self.api, self.namespace, self.service, self.port = api, namespace, service, port
        self._server: socket.socket | None = None
        self._closed = threading.Event()
        self._pod, self._target = self._resolve()

    def _resolve(self) -> tuple[str, int]:
        """(pod name, container port) of a Ready endpoint of the Service."""
        from kubernetes import client

        core = client.CoreV1Api(self.api)
        try:
            svc = core.read_namespaced_service(self.service, self.namespace, _request_timeout=15)
            eps = core.read_namespaced_endpoints(self.service, self.namespace, _request_timeout=15)
        except client.exceptions.ApiException as exc:
            raise KubernetesUnavailable(f"Service {self.namespace}/{self.service}: {exc.status} {exc.reason}. Fix: "
                                        "deploy the team environment (`scanflow deploy NOTEBOOK`).") from exc
        port = next((p for p in svc.spec.ports or [] if p.port == self.port), None)
        if port is None:
            raise KubernetesUnavailable(f"Service {self.namespace}/{self.service} has no port {self.port}.")
        for subset in eps.subsets or []:
            target = next((p.port for p in subset.ports or [] if p.name == port.name or len(subset.ports) == 1), None)
            for address in subset.addresses or []:
                if address.target_ref is not None and address.target_ref.kind == "Pod" and target:
                    return address.target_ref.name, int(target)
        raise KubernetesUnavailable(f"Service {self.namespace}/{self.service} has no Ready pod. Fix: check "
                                    f"`kubectl -n {self.namespace} get pods` (the environment may still be starting).")

    @property
    def url(self) -> str:
        assert self._server is not None, "open the tunnel first"
        return f"http://127.0.0.1:{self._server.getsockname()[1]}"

    def open(self) -> ServiceTunnel:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        server.settimeout(0.5)
        self._server = server
        threading.Thread(target=self._accept, name=f"tunnel-{self.service}", daemon=True).start()
        return self

    def close(self) -> None:
        self._closed.set()
        if self._server is not None:
            self._server.close()

    def __enter__(self) -> ServiceTunnel:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        assert self._server is not None
        while not self._closed.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        from kubernetes import client
        from kubernetes.stream import portforward

        forward = None
        # a client of its own per connection: the kubernetes package's stream/portforward swaps
        # `api_client.request` for a websocket call while it runs, so sharing the caller's client
        # (or one between connections) races with every other request made through it
        api = client.ApiClient(self.api.configuration)
        try:
            core = client.CoreV1Api(api)
            try:
                forward = portforward(core.connect_get_namespaced_pod_portforward, self._pod, self.namespace,
                                      ports=str(self._target))
            except Exception:  # noqa: BLE001 - the pod went away: find the Service's current pod once
                self._pod, self._target = self._resolve()
                forward = portforward(core.connect_get_namespaced_pod_portforward, self._pod, self.namespace,
                                      ports=str(self._target))
            remote = forward.socket(self._target)
            remote.setblocking(True)
            _pump(conn, remote, self._closed)
        except Exception:  # noqa: BLE001 - the client sees its connection closed
            pass
        finally:
            conn.close()
            if forward is not None:
                try:
                    forward.close()
                except Exception:  # noqa: BLE001
                    pass
            api.close()


def _pump(a: socket.socket, b: Any, closed: threading.Event) -> None:
    """Copy bytes both ways until either side closes."""
    pair = {a: b, b: a}
    while not closed.is_set():
        readable, _, _ = select.select(list(pair), [], [], 0.5)
        for src in readable:
            data = src.recv(CHUNK)
            if not data:
                return
            pair[src].sendall(data)
