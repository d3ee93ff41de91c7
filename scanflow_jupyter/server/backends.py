"""Which backends can run here: every backend registered in the `scanflow_jupyter.backends` entry
points. local always; docker if the engine answers; kubernetes if a kubeconfig (or in-cluster
config) loads; any other plug-in as its class's `available()` says. Each entry also carries the
backend's declared `capabilities`, `execution` kind and `fix`. Checked in a thread, cached."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

CACHE_S = 10.0
_cache: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}


def _entry_point_names() -> set[str]:
    from scanflow_jupyter.runtime.backends import available_backends

    return set(available_backends())


def check_docker() -> dict[str, Any]:
    if "docker" not in _entry_point_names():
        return {"name": "docker", "available": False, "reason": "the docker backend plug-in is not installed"}
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - any failure means "unavailable", with its reason
        return {"name": "docker", "available": False,
                "reason": f"no Docker Engine answers ({exc}); start dockerd or set DOCKER_HOST"}
    return {"name": "docker", "available": True, "reason": None}


def check_kubernetes(context: str = "") -> dict[str, Any]:
    if "kubernetes" not in _entry_point_names():
        return {"name": "kubernetes", "available": False,
                "reason": "no 'kubernetes' backend is registered in the scanflow_jupyter.backends entry points"}
    from scanflow_jupyter.kubernetes.api import KubeconfigUnavailable, configuration

    try:
        configuration(context or None)  # the configuration deploy and runs use (kubernetes/api.py)
    except KubeconfigUnavailable as exc:
        where = f"context '{context}'" if context else "the current context"
        return {"name": "kubernetes", "available": False,
                "reason": f"no usable kubeconfig for {where}: {exc.detail}. Fix: set KUBECONFIG to your cluster's "
                          "kubeconfig, or pick a context (Settings → Scanflow → kube context, or c.Scanflow.kube_context)"}
    return {"name": "kubernetes", "available": True, "reason": None}


def _cached(key: tuple[str, str], fn: Any, *args: Any) -> dict[str, Any]:
    hit = _cache.get(key)
    if hit and time.monotonic() - hit[0] < CACHE_S:
        return hit[1]
    value = fn(*args)
    _cache[key] = (time.monotonic(), value)
    return value


def _kube_key(context: str) -> tuple[str, str]:
    """Cache key of a kubernetes check: the context and the kubeconfig it is read from."""
    return ("kubernetes", f"{context}\0{os.environ.get('KUBECONFIG', '')}")


BUILT_IN = ("local", "docker", "kubernetes")
ALL_CAPABILITIES = ["cache", "cancel", "logs", "only", "resume", "retries"]


def check_plugin(name: str) -> dict[str, Any]:
    """A third-party backend: loaded from its entry point, asked `available()`."""
    from scanflow_jupyter.runtime.backends import load_backend

    try:
        cls = load_backend(name)
        state = cls.available()
    except Exception as exc:  # noqa: BLE001 - a broken plug-in is unavailable, with its reason
        return {"name": name, "available": False, "reason": f"the {name} backend plug-in does not load: {exc}",
                "fix": "reinstall the package that provides it", "capabilities": [], "execution": None}
    return {"name": name, "available": bool(state.ok), "reason": None if state.ok else state.reason,
            "fix": None if state.ok else (state.fix or None), "capabilities": sorted(cls.capabilities),
            "execution": cls.execution}


def _with_contract(entry: dict[str, Any]) -> dict[str, Any]:
    """Built-ins declare every capability (kubernetes executes whole pipelines)."""
    return {"fix": None, "capabilities": list(ALL_CAPABILITIES),
            "execution": "whole_pipeline" if entry["name"] == "kubernetes" else "per_step", **entry}


def check_all(kube_context: str = "") -> list[dict[str, Any]]:
    """Availability of every registered backend: built-ins first, then plug-ins by name (cached ~10 s)."""
    out = [_with_contract({"name": "local", "available": True, "reason": None}),
           _with_contract(_cached(("docker", ""), check_docker)),
           _with_contract(_cached(_kube_key(kube_context), check_kubernetes, kube_context))]
    out += [_cached((name, ""), check_plugin, name) for name in sorted(_entry_point_names()) if name not in BUILT_IN]
    return out


async def backends(kube_context: str = "") -> list[dict[str, Any]]:
    return await asyncio.get_running_loop().run_in_executor(None, check_all, kube_context)


def check_one(name: str, kube_context: str = "") -> dict[str, Any] | None:
    if name == "local":
        return {"name": "local", "available": True, "reason": None}
    if name == "docker":
        return _cached(("docker", ""), check_docker)
    if name == "kubernetes":
        return _cached(_kube_key(kube_context), check_kubernetes, kube_context)
    if name in _entry_point_names():
        return _cached((name, ""), check_plugin, name)
    return None


async def backend(name: str, kube_context: str = "") -> dict[str, Any] | None:
    """One backend's availability (only that one is checked); None for an unregistered name."""
    if name == "local":
        return check_one(name)
    return await asyncio.get_running_loop().run_in_executor(None, check_one, name, kube_context)
