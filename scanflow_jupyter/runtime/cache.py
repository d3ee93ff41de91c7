"""Cache keys of steps (DESIGN §3): normalized code + parameters + upstream content + environment."""

from __future__ import annotations

import ast
import hashlib
import json
import platform
from typing import Any

from scanflow_jupyter import __version__
from scanflow_jupyter.model import Application, Executor


def _magic_safe(source: str) -> str:
    """Turn IPython magic/shell lines into calls so they take part in the key."""
    out = []
    for line in source.split("\n"):
        stripped = line.lstrip()
        if stripped.startswith(("%", "!")):
            out.append(f"{line[: len(line) - len(stripped)]}__magic__({stripped!r})")
        else:
            out.append(line)
    return "\n".join(out)


def normalize_code(source: str) -> str:
    """Code with comments, blank lines and formatting removed (a comment never busts the cache)."""
    try:
        return ast.unparse(ast.parse(_magic_safe(source)))
    except SyntaxError:
        return "\n".join(line.rstrip() for line in source.split("\n") if line.strip())


def environment_spec(app: Application, ex: Executor) -> dict[str, Any]:
    """What the step runs on: kernel, Python, image and requirements, Scanflow version."""
    return {
        "kernel": app.kernel_name,
        "python": platform.python_version(),
        "image": ex.image,
        "requirements": sorted(ex.requirements),
        "scanflow": __version__,
    }


def step_cache_key(
    app: Application, ex: Executor, params: dict[str, Any], upstream: dict[str, str]
) -> str:
    """The cache key of `ex` given the run's parameters and its inputs' content digests."""
    material = {
        "setup": [normalize_code(b.source) for b in app.setup],
        "body": normalize_code(ex.source),
        "params": params,
        "inputs": dict(sorted(upstream.items())),
        "outputs": ex.outputs,
        "env": environment_spec(app, ex),
    }
    blob = json.dumps(material, sort_keys=True, default=repr).encode()
    return hashlib.sha256(blob).hexdigest()
