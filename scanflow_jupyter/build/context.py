"""Build contexts of step images: the Dockerfile, the files it copies, and the content-hash tag.

Layers, from least to most often changed (so an edited step rebuilds only its last layers):

1. the base image (``FROM``), then the host's extra CA certificates (`update-ca-certificates`,
   ``REQUESTS_CA_BUNDLE``/``SSL_CERT_FILE``) and a venv at ``/opt/venv`` (PEP 668);
2. the runtime requirements (ipykernel, nbclient, nbformat, cloudpickle, xxhash, mlflow-skinny,
   papermill, pinned) — identical in every image, so built once per machine;
3. the `%%setup` requirements — identical for every step of a notebook;
4. the step's own requirements (its imports and ``--requirements``);
5. the Scanflow runtime wheel packed from the working copy (``--no-deps``);
6. the compiled step notebook (its folder writable by any uid, HOME=/tmp: the image runs as a
   non-root user on Kubernetes), labels and the command.

The tag is the first 12 hex digits of a sha256 over the base image id and every file of the
context, Dockerfile included: an unchanged step has the same tag (never rebuilt), a changed one
a new tag (always built). Credentials never enter a context: containers get them at run time.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import socket
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from scanflow_jupyter.build.requirements import StepRequirements
from scanflow_jupyter.runtime.figures import INLINE_BACKEND

VENV = "/opt/venv"
WORKDIR = "/opt/scanflow"
HOME = "/tmp"  # writable for whichever uid runs the image
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
LABEL_APP = "scanflow.io/app"
LABEL_STEP = "scanflow.io/step"
LABEL_KIND = "scanflow.io/kind"
LABEL_RUN = "scanflow.io/run"
LABEL_HASH = "scanflow.io/content-hash"
LABEL_RUNNER = "scanflow.io/runner"  # "<hostname>:<pid>" of the process that owns a container
_REPO_PART = re.compile(r"[^a-z0-9]+")


def repository_name(app: str, step: str) -> str:
    """`scanflow/<app>-<step>`, lower-cased and reduced to what Docker accepts in a repository."""
    def clean(text: str) -> str:
        return _REPO_PART.sub("-", text.lower()).strip("-") or "x"

    return f"scanflow/{clean(app)}-{clean(step)}"


def runner_id() -> str:
    """`<hostname>:<pid>` of this process (the owner label of the containers it starts)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def image_ref(repository: str, tag: str, registry: str | None = None) -> str:
    prefix = f"{registry.rstrip('/')}/" if registry else ""
    return f"{prefix}{repository}:{tag}"


@dataclass
class BuildContext:
    """Everything one image is built from; `files` maps context paths to bytes or host files."""

    app: str
    name: str  # step (or service / agent) name
    kind: str  # "executor" | "service" | "agent"
    base: str
    base_id: str
    requirements: StepRequirements
    files: dict[str, bytes | Path] = field(default_factory=dict)
    content_hash: str = ""
    offline: bool = False

    @property
    def repository(self) -> str:
        return repository_name(self.app, self.name)

    @property
    def tag(self) -> str:
        return self.content_hash[:12]

    def ref(self, registry: str | None = None) -> str:
        return image_ref(self.repository, self.tag, registry)

    def tarball(self) -> IO[bytes]:
        """The context as an uncompressed tar (deterministic headers), rewound."""
        out = tempfile.SpooledTemporaryFile(max_size=64 * 1024 * 1024)  # noqa: SIM115 - returned open
        with tarfile.open(fileobj=out, mode="w") as tar:
            for name in sorted(self.files):
                content = self.files[name]
                info = tarfile.TarInfo(name)
                info.mode, info.mtime, info.uid, info.gid = 0o644, 0, 0, 0
                if isinstance(content, Path):
                    info.size = content.stat().st_size
                    with content.open("rb") as fh:
                        tar.addfile(info, fh)
                else:
                    info.size = len(content)
                    tar.addfile(info, io.BytesIO(content))
        out.seek(0)
        return out  # type: ignore[return-value]


def _file_digest(content: bytes | Path) -> str:
    h = hashlib.sha256()
    if isinstance(content, Path):
        with content.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    else:
        h.update(content)
    return h.hexdigest()


def content_hash(base_id: str, files: dict[str, bytes | Path]) -> str:
    """sha256 over the base image id and every (path, content) of the context."""
    h = hashlib.sha256(f"base {base_id}\n".encode())
    for name in sorted(files):
        h.update(f"{name}\0{_file_digest(files[name])}\n".encode())
    return h.hexdigest()


def _quote(value: str) -> str:
    return json.dumps(value)


def _pip_layer(layer: str, offline_wheels: list[Path] | None, files: dict[str, bytes | Path], text: str) -> list[str]:
    req = f"requirements/{layer}.txt"
    files[req] = text.encode()
    lines = [f"COPY {req} /tmp/scanflow/{layer}.txt"]
    if offline_wheels is None:
        lines.append(f"RUN pip install -r /tmp/scanflow/{layer}.txt")
        return lines
    for wheel in offline_wheels:
        files[f"wheels/{layer}/{wheel.name}"] = wheel
    lines.append(f"COPY wheels/{layer}/ /tmp/scanflow/wheels/{layer}/")
    lines.append(f"RUN pip install --no-index --find-links /tmp/scanflow/wheels/{layer} -r /tmp/scanflow/{layer}.txt"
                 f" && rm -rf /tmp/scanflow/wheels/{layer}")
    return lines


def make_context(
    *,
    app: str,
    name: str,
    kind: str,
    base: str,
    base_id: str,
    requirements: StepRequirements,
    payload: dict[str, bytes],
    command: list[str] | None,
    wheel: tuple[str, bytes],
    certs: dict[str, bytes],
    offline_wheels: dict[str, list[Path]] | None = None,
) -> BuildContext:
    """Write the Dockerfile and collect the context of one image; compute its content hash.

    `payload` maps file names to bytes copied into ``/opt/scanflow/`` (the step notebook);
    `offline_wheels` (layer -> wheel files) makes every pip layer install with ``--no-index``.
    """
    files: dict[str, bytes | Path] = {}
    lines = [f"FROM {base}", "USER root"]
    if certs:
        for cert_name, data in sorted(certs.items()):
            files[f"ca-certificates/{cert_name}"] = data
        lines += [
            "COPY ca-certificates/ /usr/local/share/ca-certificates/scanflow/",
            "RUN update-ca-certificates",
            f"ENV REQUESTS_CA_BUNDLE={CA_BUNDLE} SSL_CERT_FILE={CA_BUNDLE}",
        ]
    lines += [
        f"RUN test -x {VENV}/bin/python || python3 -m venv {VENV}",
        f"ENV PATH={VENV}/bin:$PATH VIRTUAL_ENV={VENV} PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1"
        f" PIP_NO_INPUT=1 PYTHONUNBUFFERED=1 MPLBACKEND={INLINE_BACKEND}",
    ]
    for layer in requirements.layers:
        text = layer.text()
        if text:
            wheels = None if offline_wheels is None else offline_wheels.get(layer.name, [])
            lines += _pip_layer(layer.name, wheels, files, text)
    wheel_name, wheel_bytes = wheel
    files[f"runtime/{wheel_name}"] = wheel_bytes
    lines += [
        f"COPY runtime/{wheel_name} /tmp/scanflow/{wheel_name}",
        f"RUN pip install --no-deps --force-reinstall /tmp/scanflow/{wheel_name} && rm /tmp/scanflow/{wheel_name}",
    ]
    for file_name, data in sorted(payload.items()):
        files[f"payload/{file_name}"] = data
    lines.append(f"COPY payload/ {WORKDIR}/")
    # any uid may run the image (Kubernetes runs it as a non-root uid, Pod Security `restricted`):
    # the working folder and HOME are writable for it; root-owned files stay read-only
    lines += [f"RUN chmod 1777 {WORKDIR}", f"ENV HOME={HOME}", f"WORKDIR {WORKDIR}"]
    if command:
        lines.append("CMD " + json.dumps(command))
    labels = {LABEL_APP: app, LABEL_STEP: name, LABEL_KIND: kind}
    lines.append("LABEL " + " ".join(f"{_quote(k)}={_quote(v)}" for k, v in labels.items()))
    dockerfile = "\n".join(lines) + "\n"
    files["Dockerfile"] = dockerfile.encode()
    digest = content_hash(base_id, files)
    files["Dockerfile"] = (dockerfile + f"LABEL {_quote(LABEL_HASH)}={_quote(digest)}\n").encode()
    return BuildContext(app=app, name=name, kind=kind, base=base, base_id=base_id, requirements=requirements,
                        files=files, content_hash=digest, offline=offline_wheels is not None)


def read_certs(folder: str | Path | None) -> dict[str, bytes]:
    """The extra CA certificates to trust: every `*.crt` file of `folder` (read now, never stored)."""
    if folder is None:
        return {}
    path = Path(folder)
    if not path.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in sorted(path.glob("*.crt")) if p.is_file()}


def describe(ctx: BuildContext) -> dict[str, Any]:
    """A summary of a context for logs and `--json` (no file contents)."""
    return {"name": ctx.name, "kind": ctx.kind, "base": ctx.base, "tag": ctx.tag,
            "files": sorted(ctx.files), "requirements": ctx.requirements.to_dict()}
