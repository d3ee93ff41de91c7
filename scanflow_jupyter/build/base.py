"""An offline base image made from Debian packages: mmdebstrap piped into `docker import`.

For machines that reach a Debian mirror but no container registry. The recipe is
`mmdebstrap --variant=minbase` with its merged-usr hook (otherwise perl is pulled in), the
packages python3, python3-venv, python3-pip and ca-certificates, and a venv at /opt/venv (Debian's
Python refuses `pip install` into the system, PEP 668). The tag hashes the recipe, so an image is
built once per machine and recipe: `ensure_base_image` reuses it when the tag exists.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BASE_REPOSITORY = "scanflow/base"
OFFLINE_BASE_ALIASES = ("scanflow/base", "scanflow-base", "offline")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates")
HOOK_DIRS = ("/usr/share/mmdebstrap/hooks/merged-usr",)
VENV = "/opt/venv"


class BaseImageError(RuntimeError):
    """The base image could not be made; the message says why and what to do."""


@dataclass(frozen=True)
class BaseRecipe:
    """What goes into the base image (its hash is the tag)."""

    suite: str
    mirror: str = DEFAULT_MIRROR
    packages: tuple[str, ...] = PACKAGES

    def changes(self) -> list[str]:
        return [
            f"ENV PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            f"ENV VIRTUAL_ENV={VENV}",
            "ENV LANG=C.UTF-8",
            'CMD ["python3"]',
            f'LABEL "scanflow.io/base-recipe"="{self.digest()}"',
        ]

    def command(self) -> list[str]:
        hooks = [f"--hook-dir={d}" for d in HOOK_DIRS]
        return [
            "mmdebstrap", "--variant=minbase", *hooks, f"--include={','.join(self.packages)}",
            f"--customize-hook=chroot \"$1\" python3 -m venv {VENV}",
            "--format=tar", self.suite, "-", self.mirror,
        ]

    def digest(self) -> str:
        text = "\n".join([self.suite, self.mirror, *self.packages, *HOOK_DIRS, VENV, "v1"])
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def tag(self) -> str:
        return f"{BASE_REPOSITORY}:{self.suite}-{self.digest()[:12]}"


def host_suite() -> str:
    """The Debian codename of this machine (`bookworm`), the default suite of the base image."""
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("VERSION_CODENAME=") and line.split("=", 1)[1].strip():
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "bookworm"


def default_recipe() -> BaseRecipe:
    return BaseRecipe(suite=os.environ.get("SCANFLOW_BASE_SUITE") or host_suite(),
                      mirror=os.environ.get("SCANFLOW_BASE_MIRROR") or DEFAULT_MIRROR)


def ensure_base_image(client: Any, recipe: BaseRecipe | None = None, *, rebuild: bool = False,
                      log: Callable[[str], None] | None = None, tag: str | None = None) -> tuple[str, bool, float]:
    """The base image tag, built now if missing: (tag, built_now, seconds).

    `tag` builds the recipe under another name (benchmarks: the cached image stays untouched).
    """
    import docker.errors

    recipe = recipe or default_recipe()
    tag = tag or recipe.tag
    if not rebuild:
        try:
            client.images.get(tag)
            return tag, False, 0.0
        except docker.errors.ImageNotFound:
            pass
    started = time.monotonic()
    _build(client, recipe, log or (lambda _line: None), tag)
    return tag, True, time.monotonic() - started


def _build(client: Any, recipe: BaseRecipe, log: Callable[[str], None], tag: str) -> None:
    if shutil.which("mmdebstrap") is None:
        raise BaseImageError("mmdebstrap is not installed, so no offline base image can be made. "
                             "Fix: `apt-get install -y mmdebstrap` (or run `make docker`), or set "
                             "SCANFLOW_BASE_IMAGE to an image your engine already has.")
    missing = [d for d in HOOK_DIRS if not Path(d).is_dir()]
    if missing:
        raise BaseImageError(f"mmdebstrap hook folder {missing[0]} is missing (mmdebstrap too old?). "
                             "Fix: install mmdebstrap ≥ 1.0 from Debian bookworm or newer.")
    log(f"building base image {tag}: {' '.join(recipe.command())}")
    proc = subprocess.Popen(recipe.command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    tail: list[str] = []

    def read_stderr() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            tail.append(line)
            del tail[:-30]
            log(line)

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        repository, _, name = tag.rpartition(":")
        client.api.import_image_from_stream(proc.stdout, repository=repository, tag=name, changes=recipe.changes())
    except Exception as exc:  # noqa: BLE001 - the engine refused the stream
        proc.kill()
        proc.wait()
        reader.join(timeout=5)
        raise BaseImageError(f"docker import of the mmdebstrap tarball failed: {exc}") from exc
    code = proc.wait()
    reader.join(timeout=5)
    if code != 0:
        try:  # a truncated tarball may have been imported: never keep it under the cached tag
            client.images.remove(tag, force=True)
        except Exception:  # noqa: BLE001
            pass
        detail = "\n  ".join(tail[-12:])
        raise BaseImageError(f"mmdebstrap failed (exit {code}) building {tag}:\n  {detail}\n"
                             f"Fix: check that {recipe.mirror} is reachable (apt proxy / CA) and that suite "
                             f"'{recipe.suite}' exists; set SCANFLOW_BASE_MIRROR / SCANFLOW_BASE_SUITE otherwise.")
