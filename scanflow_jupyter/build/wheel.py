"""The Scanflow runtime as a wheel, packed from the working copy of the `scanflow_jupyter` package.

Images install Scanflow from this wheel (``pip install --no-deps``), never from a mounted source
tree. The wheel is reproducible — same sources, same bytes (fixed timestamps, sorted entries) —
so its hash can go into the image tag and an unchanged runtime never invalidates a layer.
Built frontend assets (``labextension/``) and caches are left out: a step does not need them.
"""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from importlib import metadata
from pathlib import Path

DIST_NAME = "scanflow-jupyter"
_EXCLUDED_DIRS = {"__pycache__", "labextension", "node_modules"}
_EXCLUDED_SUFFIXES = (".pyc", ".pyo", ".so.tmp")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def package_dir() -> Path:
    """Folder of the `scanflow_jupyter` package being run (the working copy when editable)."""
    import scanflow_jupyter

    return Path(scanflow_jupyter.__file__).resolve().parent


def _files(root: Path) -> list[Path]:
    out = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part in _EXCLUDED_DIRS or part.startswith(".") for part in rel.parts):
            continue
        if path.is_file() and not path.name.endswith(_EXCLUDED_SUFFIXES):
            out.append(path)
    return out


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def _entry_points() -> str | None:
    try:
        return metadata.distribution(DIST_NAME).read_text("entry_points.txt")
    except metadata.PackageNotFoundError:
        return None


def runtime_wheel() -> tuple[str, bytes]:
    """(file name, bytes) of a wheel holding the `scanflow_jupyter` package as it is on disk."""
    from scanflow_jupyter import __version__

    root = package_dir()
    pkg = root.name
    dist_info = f"scanflow_jupyter-{__version__}.dist-info"
    entries: list[tuple[str, bytes]] = [(f"{pkg}/{p.relative_to(root).as_posix()}", p.read_bytes()) for p in _files(root)]
    meta = (
        "Metadata-Version: 2.1\n"
        f"Name: {DIST_NAME}\n"
        f"Version: {__version__}\n"
        "Summary: Scanflow runtime for step images (packed from the working copy)\n"
        "Requires-Python: >=3.10\n"
    )
    entries.append((f"{dist_info}/METADATA", meta.encode()))
    entries.append((f"{dist_info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: scanflow-jupyter\nRoot-Is-Purelib: true\nTag: py3-none-any\n"))
    eps = _entry_points()
    if eps:
        entries.append((f"{dist_info}/entry_points.txt", eps.encode()))
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in entries)
    record += f"{dist_info}/RECORD,,\n"
    entries.append((f"{dist_info}/RECORD", record.encode()))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return f"scanflow_jupyter-{__version__}-py3-none-any.whl", buf.getvalue()
