"""Air-gapped builds: fetch the pinned wheels on the host, so images build with no network.

`scanflow build --wheelhouse DIR` downloads, per requirements layer, every pinned wheel into
``DIR/<layer>-<hash>/`` (once: a finished folder is marked and reused), and the image build
then runs with ``--network none`` and ``pip install --no-index --find-links``. When the image's
Python matches this one (version and machine), ``pip wheel`` is used, which also turns sdists
into wheels; otherwise ``pip download --only-binary=:all:`` targets the image's interpreter.
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_DONE = ".complete"


class WheelhouseError(RuntimeError):
    """pip could not fetch the wheels; the message carries pip's own error lines."""


@dataclass(frozen=True)
class PythonTarget:
    """The interpreter of an image: what wheels it can install."""

    version: str  # "3.11"
    machine: str  # "x86_64"
    glibc: str | None  # "2.36"

    def matches_host(self) -> bool:
        return self.version == f"{sys.version_info[0]}.{sys.version_info[1]}" and self.machine == platform.machine()

    def pip_download_args(self) -> list[str]:
        nodot = self.version.replace(".", "")
        args = ["--only-binary=:all:", "--python-version", self.version, "--implementation", "cp",
                "--abi", f"cp{nodot}", "--abi", "abi3", "--abi", "none"]
        platforms = [f"linux_{self.machine}", f"manylinux2014_{self.machine}"]
        if self.glibc:
            major, minor = (int(x) for x in self.glibc.split(".")[:2])
            platforms += [f"manylinux_{major}_{m}_{self.machine}" for m in range(minor, 16, -1)]
        for plat in platforms:
            args += ["--platform", plat]
        return args


def fetch_layer(directory: Path, layer: str, text: str, target: PythonTarget,
                log: Callable[[str], None] | None = None) -> list[Path]:
    """The wheel files that install requirements `text` for `target`, fetched if not there yet."""
    log = log or (lambda _line: None)
    key = hashlib.sha256(f"{text}\n{target}".encode()).hexdigest()[:12]
    folder = directory / f"{layer}-{key}"
    if not (folder / _DONE).exists():
        folder.mkdir(parents=True, exist_ok=True)
        req = folder / "requirements.txt"
        req.write_text(text, encoding="utf-8")
        if target.matches_host():
            cmd = [sys.executable, "-m", "pip", "wheel", "--wheel-dir", str(folder), "-r", str(req)]
        else:
            cmd = [sys.executable, "-m", "pip", "download", "--dest", str(folder), *target.pip_download_args(), "-r", str(req)]
        log(f"wheelhouse: {' '.join(cmd[2:5])} … for layer '{layer}' into {folder}")
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")] or proc.stderr.splitlines()[-8:]
            raise WheelhouseError(f"pip could not fetch the wheels of layer '{layer}' into {folder}:\n  "
                                  + "\n  ".join(errors)
                                  + "\nFix: check the pins shown by `scanflow inspect`, and that this machine reaches the package index.")
        (folder / _DONE).write_text("", encoding="utf-8")
    return sorted(p for p in folder.iterdir() if p.suffix == ".whl")
