"""Read a kubeconfig context into what an HTTPS client needs, without importing `kubernetes`.

`import kubernetes.client` costs 1-2 s (it loads every generated model), more than a whole
`scanflow deploy`. Most kubeconfigs hold a server URL, a CA and a client certificate or a bearer
token: those are read here and served by httpx. Anything else (exec plugins, auth providers,
several files in KUBECONFIG) returns None and the caller falls back to the `kubernetes` package.
"""

from __future__ import annotations

import base64
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class KubeconfigError(ValueError):
    """The kubeconfig is missing, unreadable, or has no such context."""


@dataclass
class Endpoint:
    """One context's API server and credentials (files written for inline data are removed by close)."""

    server: str
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    token: str | None = None
    insecure: bool = False
    _tmp: list[str] = field(default_factory=list)

    def close(self) -> None:
        for path in self._tmp:
            try:
                os.unlink(path)
            except OSError:
                pass
        self._tmp.clear()


def kubeconfig_path(explicit: str | None = None) -> str:
    return explicit or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")


def load_endpoint(kubeconfig: str | None = None, context: str | None = None) -> Endpoint | None:
    """The context's endpoint, or None when only the `kubernetes` package can handle it."""
    path = kubeconfig_path(kubeconfig)
    if os.pathsep in path:
        return None  # several files to merge: leave it to the kubernetes package
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise KubeconfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise KubeconfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise KubeconfigError(f"{path} is not a kubeconfig (no mapping at the top)")
    name = context or doc.get("current-context")
    if not name:
        raise KubeconfigError(f"{path} has no current-context; pick one with --context")
    ctx = _named(doc, "contexts", "context", name, path)
    cluster = _named(doc, "clusters", "cluster", ctx.get("cluster"), path)
    user = _named(doc, "users", "user", ctx.get("user"), path) if ctx.get("user") else {}
    if any(k in user for k in ("exec", "auth-provider", "username", "tokenFile")) or "proxy-url" in cluster:
        return None
    server = cluster.get("server")
    if not server:
        raise KubeconfigError(f"cluster {ctx.get('cluster')!r} in {path} has no server")
    base = Path(path).parent
    ep = Endpoint(server=str(server).rstrip("/"), insecure=bool(cluster.get("insecure-skip-tls-verify")),
                  token=user.get("token"))
    ep.ca_file = _file(ep, base, cluster, "certificate-authority")
    ep.cert_file = _file(ep, base, user, "client-certificate")
    ep.key_file = _file(ep, base, user, "client-key")
    return ep


def _named(doc: dict[str, Any], section: str, key: str, name: Any, path: str) -> dict[str, Any]:
    for item in doc.get(section) or []:
        if isinstance(item, dict) and item.get("name") == name:
            return item.get(key) or {}
    known = ", ".join(str(i.get("name")) for i in doc.get(section) or [] if isinstance(i, dict)) or "none"
    raise KubeconfigError(f"{path} has no {key} named {name!r} (known: {known})")


def _file(ep: Endpoint, base: Path, section: dict[str, Any], key: str) -> str | None:
    """Path of `key` (relative to the kubeconfig's folder), or a private temp file for `key-data`."""
    if section.get(f"{key}-data"):
        fd, tmp = tempfile.mkstemp(prefix="scanflow-kube-", suffix=".pem")
        with os.fdopen(fd, "wb") as fh:
            fh.write(base64.b64decode(section[f"{key}-data"]))
        ep._tmp.append(tmp)
        return tmp
    if section.get(key):
        return str((base / section[key]).resolve())
    return None


def http_client(ep: Endpoint, timeout: float) -> Any:
    """An httpx.Client for the endpoint (TLS with its CA and client certificate, or its token)."""
    import ssl

    import httpx

    context = ssl.create_default_context(cafile=ep.ca_file) if ep.ca_file else ssl.create_default_context()
    if ep.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if ep.cert_file:
        context.load_cert_chain(ep.cert_file, ep.key_file)
    headers = {"Authorization": f"Bearer {ep.token}"} if ep.token else {}
    return httpx.Client(base_url=ep.server, verify=context, headers=headers, timeout=timeout)
