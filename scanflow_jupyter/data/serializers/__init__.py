"""Serializers that pass Python variables between pipeline steps, chosen by the value's type.

Every step runs in its own kernel process, so a variable produced by one step reaches the next
one as a file in the run store: ``<outputs>/<name>.<ext>`` plus ``<name>.meta.json`` holding its
:class:`OutputRecord`. The built-in serializers are tried in order and the first one that
handles a value writes it:

==================  =====================================================  =========
name                values                                                 file
==================  =====================================================  =========
``numpy``           ``numpy.ndarray`` (not object dtype, not subclasses)   ``.npy``
``pandas-frame``    ``pandas.DataFrame`` that parquet stores exactly       ``.parquet``
``pandas-series``   ``pandas.Series`` that parquet stores exactly          ``.parquet``
``json``            plain JSON data whose round trip is exact              ``.json``
``joblib``          scikit-learn objects (anything from ``sklearn.*``)      ``.joblib``
``torch``           ``torch.nn.Module`` (``torch.save`` of the object)     ``.pt``
``cloudpickle``     everything else (the fallback)                         ``.pkl``
==================  =====================================================  =========

A serializer may *decline* a value it cannot store exactly (raise :class:`SerializerDeclined`);
the next one is then tried, so e.g. a DataFrame with mixed object columns ends up pickled
rather than failing. Values nothing can pass raise :class:`UnserializableError`, which names
the variable and says how to fix the step.

Content hash (`digest`, "<algorithm>:<hex>", `data/hashing.py`): of the file's bytes, computed
while the bytes are written (no read-back for built-ins). XXH3-128 when the `xxhash` package is present (~10 GB/s,
a content fingerprint for caching, not a security boundary), else SHA-256 (~1.8 GB/s with
SHA-NI; a 100 MB array then costs ~55 ms of hashing, ~2.5x np.save).

Layout: `base.py` (base classes, errors), one module per serializer, `unpicklable.py`; the
registry and `dump_value` / `read_record` / `load_value` are here; records in `data/records.py`.

Import cost matters (this module is imported in every step kernel): numpy, pandas, pyarrow,
joblib, torch and cloudpickle are imported only when a value of theirs is seen, or when a file
of theirs is loaded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from scanflow_jupyter.data.files import atomic_write_bytes, temp_path, unlink_quietly
from scanflow_jupyter.data.hashing import hash_file
from scanflow_jupyter.data.records import LoadError, OutputRecord
from scanflow_jupyter.data.serializers.base import (
    Serializer,
    SerializerDeclined,
    UnserializableError,
    type_name,
)
from scanflow_jupyter.data.serializers.cloudpickle_fallback import CloudpickleSerializer
from scanflow_jupyter.data.serializers.json_values import JsonSerializer
from scanflow_jupyter.data.serializers.numpy_arrays import NumpySerializer
from scanflow_jupyter.data.serializers.pandas_parquet import DataFrameSerializer, SeriesSerializer
from scanflow_jupyter.data.serializers.sklearn_joblib import JoblibSerializer
from scanflow_jupyter.data.serializers.torch_modules import TorchSerializer
from scanflow_jupyter.data.serializers.unpicklable import known_unpicklable

__all__ = ["dump_value", "get_serializer", "load_value", "read_record", "register", "serializers"]

_REGISTRY: list[Serializer] = [
    NumpySerializer(),
    DataFrameSerializer(),
    SeriesSerializer(),
    JsonSerializer(),
    JoblibSerializer(),
    TorchSerializer(),
    CloudpickleSerializer(),
]
_FALLBACK = _REGISTRY[-1]


def register(serializer: Serializer, first: bool = False) -> None:
    """Add a serializer: before all others if ``first``, else just before the fallback.

    A serializer with the same ``name`` is replaced.
    """
    ext = serializer.ext
    if not serializer.name or not ext or "/" in ext or "\\" in ext or ext == "meta.json":
        raise ValueError("a serializer needs a non-empty name and a plain ext (not meta.json)")
    _REGISTRY[:] = [s for s in _REGISTRY if s.name != serializer.name]
    if first:
        _REGISTRY.insert(0, serializer)
    else:
        pos = _REGISTRY.index(_FALLBACK) if _FALLBACK in _REGISTRY else len(_REGISTRY)
        _REGISTRY.insert(pos, serializer)


def serializers() -> list[Serializer]:
    """The registered serializers, in the order they are tried."""
    return list(_REGISTRY)


def get_serializer(name: str) -> Serializer:
    """The registered serializer called ``name`` (KeyError if none)."""
    for s in _REGISTRY:
        if s.name == name:
            return s
    known = ", ".join(s.name for s in _REGISTRY)
    raise KeyError(f"no serializer named {name!r} is registered (known: {known})")


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"variable name must be a Python identifier, got {name!r}")


def dump_value(name: str, obj: Any, folder: Path) -> OutputRecord:
    """Save variable ``name`` as ``folder/<name>.<ext>`` (atomically) plus ``<name>.meta.json``.

    Raises :class:`UnserializableError` when no serializer can store the value.
    """
    _check_name(name)
    folder = Path(folder)
    known = known_unpicklable(obj)
    if known is not None:
        raise UnserializableError(name, type_name(obj), known[0], known[1])
    folder.mkdir(parents=True, exist_ok=True)
    reasons: list[str] = []
    for serializer in list(_REGISTRY):
        if not serializer.handles(obj):
            continue
        final = folder / f"{name}.{serializer.ext}"
        tmp = temp_path(final)
        try:
            digest, size = serializer.dump_hashed(obj, tmp)
            os.replace(tmp, final)
        except SerializerDeclined as exc:
            unlink_quietly(tmp)
            reasons.append(f"{serializer.name}: {exc}")
            continue
        except BaseException:
            unlink_quietly(tmp)
            raise
        record = OutputRecord(name, final.name, serializer.name, digest, size)
        _write_meta(folder, record)
        return record
    raise UnserializableError(
        name, type_name(obj), reasons[-1] if reasons else "no serializer handles it"
    )


def _meta_path(folder: Path, name: str) -> Path:
    return Path(folder) / f"{name}.meta.json"


def _write_meta(folder: Path, record: OutputRecord) -> None:
    meta = _meta_path(folder, record.name)
    previous: str | None = None
    try:
        previous = json.loads(meta.read_bytes()).get("file")
    except (OSError, ValueError, AttributeError):
        pass
    atomic_write_bytes(meta, json.dumps(record.to_dict(), indent=1).encode())
    if previous and previous != record.file and Path(previous).name == previous:
        unlink_quietly(Path(folder) / previous)  # the variable changed serializer: drop old file


def read_record(folder: Path, name: str) -> OutputRecord:
    """Read ``folder/<name>.meta.json`` written by :func:`dump_value`."""
    _check_name(name)
    path = _meta_path(folder, name)
    try:
        return OutputRecord.from_dict(json.loads(path.read_bytes()))
    except FileNotFoundError:
        raise LoadError(
            f"no saved variable '{name}' in {folder} ({path.name} is missing)"
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise LoadError(f"{path} is not a valid output record: {exc}") from exc


def load_value(folder: Path, record: OutputRecord, *, verify: bool = False) -> Any:
    """Load the variable described by ``record`` from ``folder``.

    The file's size is always checked; ``verify=True`` also re-hashes it.
    """
    if Path(record.file).name != record.file or record.file in ("", ".", ".."):
        raise LoadError(f"invalid file name {record.file!r} in the record of '{record.name}'")
    path = Path(folder) / record.file
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise LoadError(f"cannot load variable '{record.name}': {path} no longer exists") from None
    if size != record.size:
        raise LoadError(
            f"cannot load variable '{record.name}': {path} has {size} bytes, "
            f"{record.size} were saved (the file was changed after it was written)"
        )
    if verify and hash_file(path, record.digest.split(":", 1)[0])[0] != record.digest:
        raise LoadError(f"cannot load variable '{record.name}': {path} content hash differs")
    try:
        serializer = get_serializer(record.serializer)
    except KeyError as exc:
        raise LoadError(
            f"cannot load variable '{record.name}': {exc.args[0]}; register it in %%setup"
        ) from None
    try:
        return serializer.load(path)
    except Exception as exc:
        raise LoadError(
            f"cannot load variable '{record.name}' from {path} with serializer "
            f"'{serializer.name}': {type(exc).__name__}: {exc}"
        ) from exc
