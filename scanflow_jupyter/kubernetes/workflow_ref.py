"""Where a kubernetes run's Argo Workflow is: `<run_dir>/workflow.json`, and how to show it.

The kubernetes backend writes `{"name", "namespace", "context"}` before it submits the Workflow;
the run summary (`GET runs/{id}`) carries it as `workflow` with a `kubectl` command and, when
`$SCANFLOW_ARGO_UI_URL` names an Argo UI, a link `<that URL>/workflows/<namespace>/<name>`.
Stdlib only: the server reads it for every run it lists.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from scanflow_jupyter.data.files import atomic_write_bytes

FILE = "workflow.json"
ARGO_UI_ENV = "SCANFLOW_ARGO_UI_URL"


def write(run_dir: Path, name: str, namespace: str, context: str | None = None) -> None:
    """Record the run's Workflow (atomically)."""
    doc = {"name": name, "namespace": namespace, "context": context or None}
    atomic_write_bytes(Path(run_dir) / FILE, (json.dumps(doc, indent=1) + "\n").encode())


def read(run_dir: Path) -> dict[str, Any] | None:
    """The recorded Workflow, or None (not a kubernetes run, or submitted by an older Scanflow)."""
    try:
        doc = json.loads((Path(run_dir) / FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("name"), str) or not isinstance(doc.get("namespace"), str):
        return None
    return doc


def argo_ui_base(env: dict[str, str] | None = None) -> str | None:
    """`$SCANFLOW_ARGO_UI_URL` as a link base (http(s) only; user-info, query and fragment dropped)."""
    raw = ((env if env is not None else os.environ).get(ARGO_UI_ENV) or "").strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def summary(run_dir: Path, env: dict[str, str] | None = None) -> dict[str, Any] | None:
    """`{name, namespace, context, command, url}` for the run summary, or None."""
    doc = read(run_dir)
    if doc is None:
        return None
    name, namespace, context = doc["name"], doc["namespace"], doc.get("context") or None
    command = ["kubectl", *(["--context", context] if isinstance(context, str) else []),
               "-n", namespace, "get", "workflow", name]
    base = argo_ui_base(env)
    url = f"{base}/workflows/{quote(namespace, safe='')}/{quote(name, safe='')}" if base else None
    return {"name": name, "namespace": namespace, "context": context if isinstance(context, str) else None,
            "command": shlex.join(command), "url": url}
