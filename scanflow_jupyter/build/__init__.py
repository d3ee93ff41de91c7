"""Container images of an application: one per executor, layered for caching (DESIGN §2 `build/`).

`requirements` resolves and pins what a step imports; `wheel` packs the Scanflow runtime from
the working copy; `context` writes the Dockerfile and build context and hashes them into the
tag; `builder` talks to the Docker Engine (build, reuse, push, pre-flight import check);
`base` makes an offline base image with mmdebstrap; `wheelhouse` prepares air-gapped builds.
Importing this package imports nothing heavy (no docker, no mlflow).
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Where heavy, reusable build material lives (outside any repository).

    `$SCANFLOW_CACHE_DIR`, else `$XDG_CACHE_HOME/scanflow`, else `~/.cache/scanflow`.
    """
    env = os.environ.get("SCANFLOW_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "scanflow"
