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

Content hash (`digest`, "<algorithm>:<hex>"): of the file's bytes, computed while the bytes are
written (no read-back for built-ins). XXH3-128 when the `xxhash` package is present (~10 GB/s,
a content fingerprint for caching, not a security boundary), else SHA-256 (~1.8 GB/s with
SHA-NI; a 100 MB array then costs ~55 ms of hashing, ~2.5x np.save).

Import cost matters (this module is imported in every step kernel): numpy, pandas, pyarrow,
joblib, torch and cloudpickle are imported only when a value of theirs is seen, or when a file
of theirs is loaded.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import sys
import threading
import types
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "OutputRecord",
    "Serializer",
    "SerializerDeclined",
    "UnserializableError",
    "LoadError",
    "atomic_write_bytes",
    "dump_value",
    "get_serializer",
    "load_value",
    "read_record",
    "register",
    "serializers",
]

_CHUNK = 8 * 1024 * 1024
_PARALLEL_HASH_MIN = 4 * 1024 * 1024
_GENERIC_HINT = (
    "pass the data it holds instead (a path, a DataFrame, the model's parameters) or create it "
    "inside the consuming step or in %%setup"
)


# --------------------------------------------------------------------------- records & errors


@dataclass(frozen=True)
class OutputRecord:
    """What was saved for one variable: file name (in its folder), serializer, hash and size."""

    name: str
    file: str
    serializer: str
    digest: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OutputRecord:
        """Build from a dict; extra keys (e.g. the run store's ``folder``) are ignored."""
        return cls(
            name=str(data["name"]),
            file=str(data["file"]),
            serializer=str(data["serializer"]),
            digest=str(data["digest"]),
            size=int(data["size"]),
        )


class SerializerDeclined(Exception):
    """Raised by a serializer's dump to let the next serializer in the registry try."""


class UnserializableError(Exception):
    """A variable cannot be passed to another step; the message says why and how to fix it."""

    def __init__(
        self,
        name: str,
        type_name: str,
        reason: str,
        hint: str = _GENERIC_HINT,
        step: str | None = None,
    ) -> None:
        self.name = name
        self.type_name = type_name
        self.reason = reason
        self.hint = hint
        self.step = step
        super().__init__(name, type_name, reason, hint, step)

    def __str__(self) -> str:
        where = f" of step '{self.step}'" if self.step else ""
        return (
            f"cannot pass variable '{self.name}'{where} (type {self.type_name}) to other steps: "
            f"{self.reason}. How to fix: {self.hint}."
        )


class LoadError(Exception):
    """A saved variable's file is missing, changed, or cannot be read back."""


# --------------------------------------------------------------------------- file helpers


def atomic_write_bytes(path: Path, data: bytes, *, fsync: bool = False) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and ``os.replace``."""
    path = Path(path)
    tmp = _temp_path(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    if fsync:
        _fsync_dir(path.parent)


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _fsync_dir(folder: Path) -> None:
    """Persist a rename on POSIX (no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def new_hasher(algorithm: str | None = None) -> Any:
    """A hash object for content digests: xxh3_128 if available, else sha256."""
    if algorithm in (None, "xxh3_128"):
        try:
            import xxhash

            return xxhash.xxh3_128()
        except ImportError:
            if algorithm == "xxh3_128":
                raise
    return hashlib.sha256()


def _algorithm(hasher: Any) -> str:
    return "xxh3_128" if type(hasher).__module__.startswith("xxhash") else "sha256"


def format_digest(hasher: Any) -> str:
    """"<algorithm>:<hex>" of a finished hasher."""
    return f"{_algorithm(hasher)}:{hasher.hexdigest()}"


def _hash_file(path: Path, algorithm: str | None = None) -> tuple[str, int]:
    digest = new_hasher(algorithm)
    size = 0
    with open(path, "rb", buffering=0) as fh:
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        while n := fh.readinto(buf):
            digest.update(view[:n])
            size += n
    return format_digest(digest), size


class _HashingWriter:
    """Write-only file object that hashes and counts every byte it forwards."""

    closed = False

    def __init__(self, fh: Any) -> None:
        self._fh = fh
        self._digest = new_hasher()
        self.size = 0

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def write(self, data: Any) -> int:
        view = memoryview(data)
        n = view.nbytes
        if n >= _PARALLEL_HASH_MIN:
            # hashlib and file writes both release the GIL: hash on a helper thread while this
            # one writes, so a big array costs max(write, hash) instead of their sum.
            hasher = threading.Thread(target=self._digest.update, args=(view,), daemon=True)
            hasher.start()
            try:
                self._fh.write(view)
            finally:
                hasher.join()
        elif n:
            self._digest.update(view)
            self._fh.write(view)
        self.size += n
        return n

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._fh.flush()

    def digest(self) -> str:
        return format_digest(self._digest)


def _type_name(obj: Any) -> str:
    cls = type(obj)
    return cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _from_modules(obj: Any, *roots: str) -> bool:
    """True when ``obj``'s class or one of its bases is defined in one of the given packages."""
    for cls in type(obj).__mro__:
        mod = getattr(cls, "__module__", None) or ""
        if mod.partition(".")[0] in roots:
            return True
    return False


# --------------------------------------------------------------------------- serializer base


class Serializer:
    """Base class: ``handles`` a value, ``dump`` it to a path and ``load`` it back.

    Subclasses set ``name`` (unique, recorded in :class:`OutputRecord`) and ``ext`` (file
    extension without the dot). ``dump`` may raise :class:`SerializerDeclined` to pass the value
    on to the next serializer. Override :meth:`dump_hashed` to hash while writing; the default
    dumps and then hashes the written file.
    """

    name: str = ""
    ext: str = ""

    def handles(self, obj: Any) -> bool:
        raise NotImplementedError

    def dump(self, obj: Any, path: Path) -> None:
        raise NotImplementedError

    def load(self, path: Path) -> Any:
        raise NotImplementedError

    def dump_hashed(self, obj: Any, path: Path) -> tuple[str, int]:
        """Write ``obj`` to ``path``; return (digest of the file, size in bytes)."""
        self.dump(obj, path)
        return _hash_file(path)


class _StreamSerializer(Serializer):
    """A serializer that writes to a file object, so the hash is computed while writing."""

    def write(self, obj: Any, fh: Any) -> None:
        raise NotImplementedError

    def dump(self, obj: Any, path: Path) -> None:
        with open(path, "wb") as fh:
            self.write(obj, fh)

    def dump_hashed(self, obj: Any, path: Path) -> tuple[str, int]:
        with open(path, "wb") as fh:
            writer = _HashingWriter(fh)
            self.write(obj, writer)
            fh.flush()
        return writer.digest(), writer.size


# --------------------------------------------------------------------------- numpy


class NumpySerializer(_StreamSerializer):
    """``numpy.ndarray`` (exact type, non-object dtype) as ``.npy``; loaded without pickle."""

    name = "numpy"
    ext = "npy"

    def handles(self, obj: Any) -> bool:
        cls = type(obj)
        if cls.__module__.partition(".")[0] != "numpy" or cls.__name__ != "ndarray":
            return False
        return not obj.dtype.hasobject

    def write(self, obj: Any, fh: Any) -> None:
        import numpy as np

        fmt = np.lib.format
        header = fmt.header_data_from_array_1_0(obj)
        try:
            if header["fortran_order"]:
                data = obj.T  # F-contiguous array's transpose is C-contiguous
            else:
                data = np.ascontiguousarray(obj)
            raw = data.reshape(-1).view(np.uint8)
        except (ValueError, TypeError):  # exotic dtypes (zero itemsize, ...): let numpy do it
            np.save(fh, obj, allow_pickle=False)
            return
        head = io.BytesIO()
        try:
            fmt.write_array_header_1_0(head, header)
        except ValueError:  # header too large for format 1.0
            head = io.BytesIO()
            try:
                fmt.write_array_header_2_0(head, header)
            except ValueError:  # needs format 3.0 (non-latin1 field names)
                np.save(fh, obj, allow_pickle=False)
                return
        fh.write(head.getbuffer())
        fh.write(memoryview(raw))

    def load(self, path: Path) -> Any:
        import numpy as np

        return np.load(path, allow_pickle=False)


# --------------------------------------------------------------------------- pandas (parquet)

_SERIES_KEY = b"scanflow.series"
_SERIES_COLUMN = "__scanflow_series__"
_FREQ_KEY = b"scanflow.index_freq"
# Arrow types an object-dtype pandas column may have and still come back equal.
_EXACT_OBJECT_ARROW = ("string", "large_string", "binary", "large_binary", "bool", "date32[day]")


def _frame_to_table(df: Any) -> Any:
    """Convert a DataFrame to an Arrow table, declining anything parquet would not round-trip."""
    import pandas as pd
    import pyarrow as pa

    if df.attrs:
        raise SerializerDeclined("DataFrame.attrs are not stored in parquet")
    cols = df.columns
    if isinstance(cols, pd.MultiIndex) or not all(isinstance(c, str) for c in cols):
        raise SerializerDeclined("parquet needs string column names")
    if cols.has_duplicates:
        raise SerializerDeclined("parquet needs unique column names")
    if not all(n is None or isinstance(n, str) for n in (*df.index.names, cols.name)):
        raise SerializerDeclined("parquet needs string (or no) index names")
    try:
        with warnings.catch_warnings():
            # pyarrow reads tz-aware columns through a pandas-deprecated path; not the user's doing.
            warnings.filterwarnings("ignore", message="Series.values returning an ndarray")
            table = pa.Table.from_pandas(df)
    except Exception as exc:  # any Arrow conversion failure means "not parquet"
        raise SerializerDeclined(f"parquet cannot store it ({type(exc).__name__}: {exc})") from exc
    # Object columns come back as object only for some Arrow types, and nulls may change kind.
    schema = table.schema
    index_fields = [
        c for c in (schema.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)
    ]
    to_check = [(df[name], schema.field(name).type) for name in cols]
    if len(index_fields) == df.index.nlevels:  # a RangeIndex is metadata only, not a column
        for level, field in enumerate(index_fields):
            to_check.append((df.index.get_level_values(level), schema.field(field).type))
    for values, arrow_type in to_check:
        if values.dtype == object and (
            str(arrow_type) not in _EXACT_OBJECT_ARROW or bool(values.isna().any())
        ):
            raise SerializerDeclined(f"an object column would come back as Arrow {arrow_type}")
    for field in schema:
        if pa.types.is_timestamp(field.type) and field.type.unit == "s":
            raise SerializerDeclined("parquet stores second-resolution timestamps as ms")
    # Compare what pandas would rebuild from the schema alone (zero rows: no data cost).
    back = table.slice(0, 0).to_pandas()
    same_index = type(back.index) is type(df.index) and back.index.dtype == df.index.dtype
    if not isinstance(df.index, pd.RangeIndex):  # a RangeIndex's name lives in the metadata
        same_index = same_index and list(back.index.names) == list(df.index.names)
    if not same_index or list(back.columns) != list(cols) or list(back.dtypes) != list(df.dtypes):
        raise SerializerDeclined("parquet would change its columns, dtypes or index")
    freq = getattr(df.index, "freqstr", None)
    if freq and isinstance(df.index, (pd.DatetimeIndex, pd.TimedeltaIndex)):
        table = table.replace_schema_metadata({**schema.metadata, _FREQ_KEY: freq.encode()})
    return table


def _table_to_frame(table: Any) -> Any:
    """Inverse of :func:`_frame_to_table` (restores a datetime index's ``freq``)."""
    import pandas as pd

    df = table.to_pandas()
    freq = (table.schema.metadata or {}).get(_FREQ_KEY)
    if freq is not None:
        kind = pd.DatetimeIndex if isinstance(df.index, pd.DatetimeIndex) else pd.TimedeltaIndex
        df.index = kind(df.index, freq=freq.decode())
    return df


def _write_parquet(table: Any, fh: Any) -> None:
    import pyarrow.parquet as pq

    pq.write_table(table, fh)


class DataFrameSerializer(_StreamSerializer):
    """``pandas.DataFrame`` as parquet (pyarrow); declines frames parquet cannot store exactly."""

    name = "pandas-frame"
    ext = "parquet"

    def handles(self, obj: Any) -> bool:
        cls = type(obj)
        return cls.__name__ == "DataFrame" and cls.__module__.partition(".")[0] == "pandas"

    def write(self, obj: Any, fh: Any) -> None:
        _write_parquet(_frame_to_table(obj), fh)

    def load(self, path: Path) -> Any:
        import pyarrow.parquet as pq

        return _table_to_frame(pq.read_table(path))


class SeriesSerializer(_StreamSerializer):
    """``pandas.Series`` as a one-column parquet file that loads back as a Series with its name."""

    name = "pandas-series"
    ext = "parquet"

    def handles(self, obj: Any) -> bool:
        cls = type(obj)
        return cls.__name__ == "Series" and cls.__module__.partition(".")[0] == "pandas"

    def write(self, obj: Any, fh: Any) -> None:
        if obj.attrs:
            raise SerializerDeclined("Series.attrs are not stored in parquet")
        if not _is_exact_json(obj.name) or isinstance(obj.name, (list, dict)):
            raise SerializerDeclined("the Series name is not a plain str/int/float/bool/None")
        table = _frame_to_table(obj.rename(None).to_frame(name=_SERIES_COLUMN))
        meta = dict(table.schema.metadata or {})
        meta[_SERIES_KEY] = json.dumps({"name": obj.name}).encode()
        _write_parquet(table.replace_schema_metadata(meta), fh)

    def load(self, path: Path) -> Any:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        info = json.loads((table.schema.metadata or {}).get(_SERIES_KEY, b'{"name": null}'))
        series = _table_to_frame(table)[_SERIES_COLUMN]
        series.name = info["name"]
        return series


# --------------------------------------------------------------------------- JSON

_JSON_SCALARS = (str, bool, type(None))
_MAX_JSON_INT_BITS = 4000 * 3  # well under Python's 4300-digit int/str conversion limit


def _is_exact_json(obj: Any, depth: int = 0) -> bool:
    """True if ``json.loads(json.dumps(obj))`` gives back an equal value of the same types."""
    if depth > 200:
        return False
    t = type(obj)
    if t in _JSON_SCALARS:
        return True
    if t is int:
        return obj.bit_length() <= _MAX_JSON_INT_BITS
    if t is float:
        return math.isfinite(obj)
    if t is list:
        return all(_is_exact_json(item, depth + 1) for item in obj)
    if t is dict:
        return all(type(k) is str and _is_exact_json(v, depth + 1) for k, v in obj.items())
    return False


class JsonSerializer(_StreamSerializer):
    """Plain data (dict with str keys, list, str, int, bool, None, finite float) as ``.json``."""

    name = "json"
    ext = "json"

    def handles(self, obj: Any) -> bool:
        return _is_exact_json(obj)

    def write(self, obj: Any, fh: Any) -> None:
        fh.write(json.dumps(obj, ensure_ascii=True, allow_nan=False).encode("ascii"))

    def load(self, path: Path) -> Any:
        with open(path, "rb") as fh:
            return json.loads(fh.read())


# --------------------------------------------------------------------------- scikit-learn


class _MainReference(Exception):
    pass


def _main_checking_pickler(fh: Any) -> Any:
    """A joblib pickler that refuses functions/classes of ``__main__`` (another kernel lacks them)."""
    from joblib.numpy_pickle import NumpyPickler

    class _Pickler(NumpyPickler):
        def reducer_override(self, obj: Any) -> Any:
            if isinstance(obj, (type, types.FunctionType)) and obj.__module__ == "__main__":
                raise _MainReference(obj.__qualname__)
            return NotImplemented

    return _Pickler(fh)


class JoblibSerializer(_StreamSerializer):
    """scikit-learn estimators and other ``sklearn.*`` objects with joblib (``.joblib``).

    Objects that reference functions or classes defined in the notebook itself (``__main__``)
    are declined: joblib stores those by name, which the consuming kernel may not have, while
    the cloudpickle fallback stores them by value.
    """

    name = "joblib"
    ext = "joblib"

    def handles(self, obj: Any) -> bool:
        return "sklearn" in sys.modules and _from_modules(obj, "sklearn")

    def write(self, obj: Any, fh: Any) -> None:
        try:
            _main_checking_pickler(fh).dump(obj)
        except _MainReference as exc:
            raise SerializerDeclined(f"it references {exc} defined in the notebook") from None
        except Exception as exc:  # let cloudpickle have a go
            raise SerializerDeclined(f"joblib: {type(exc).__name__}: {exc}") from exc

    def load(self, path: Path) -> Any:
        import joblib

        return joblib.load(path)


# --------------------------------------------------------------------------- torch


class TorchSerializer(_StreamSerializer):
    """``torch.nn.Module`` with ``torch.save`` of the whole object (``.pt``).

    A ``state_dict`` alone cannot be loaded without the model's class, so the module itself is
    saved. Modules whose classes are defined in the notebook (``__main__``) are declined and
    fall through to cloudpickle, which stores those classes by value.
    """

    name = "torch"
    ext = "pt"

    def handles(self, obj: Any) -> bool:
        if "torch" not in sys.modules or not _from_modules(obj, "torch"):
            return False
        try:
            import torch
        except ImportError:  # pragma: no cover - torch in sys.modules but broken
            return False
        return isinstance(obj, torch.nn.Module)

    def write(self, obj: Any, fh: Any) -> None:
        import torch

        for module in obj.modules():
            if type(module).__module__ == "__main__":
                raise SerializerDeclined(f"class {type(module).__qualname__} is in the notebook")
        torch.save(obj, fh)

    def load(self, path: Path) -> Any:
        import torch

        return torch.load(path, weights_only=False)


# --------------------------------------------------------------------------- cloudpickle


class CloudpickleSerializer(_StreamSerializer):
    """The fallback: anything cloudpickle can pickle (``.pkl``)."""

    name = "cloudpickle"
    ext = "pkl"

    def handles(self, obj: Any) -> bool:
        return True

    def write(self, obj: Any, fh: Any) -> None:
        import cloudpickle

        try:
            cloudpickle.dump(obj, fh, protocol=5)
        except Exception as exc:  # any pickling failure
            raise SerializerDeclined(f"pickling failed ({type(exc).__name__}: {exc})") from exc

    def load(self, path: Path) -> Any:
        import pickle

        with open(path, "rb") as fh:
            return pickle.load(fh)


# --------------------------------------------------------------------------- registry

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


# --------------------------------------------------------------------------- known unpicklables


def _known_unpicklable(obj: Any) -> tuple[str, str] | None:
    """(reason, hint) for kinds of objects that must never be passed, else None."""
    if isinstance(obj, (types.GeneratorType, types.AsyncGeneratorType, types.CoroutineType)):
        return (
            "generators and coroutines are live iterators of the kernel that created them",
            "materialize it first (e.g. list(x)) or create it inside the consuming step",
        )
    if isinstance(obj, types.ModuleType):
        return (
            "modules are not data",
            "import the module in %%setup or in the consuming step instead",
        )
    if isinstance(obj, io.IOBase) and not isinstance(obj, (io.BytesIO, io.StringIO)):
        return (
            "open files belong to the process that opened them",
            "pass the file's path and open it inside the consuming step",
        )
    modules = {(getattr(c, "__module__", None) or "") for c in type(obj).__mro__}
    if modules & {"_thread", "threading"} and "lock" in type(obj).__name__.lower():
        return ("locks cannot be shared between processes", _GENERIC_HINT)
    if modules & {"socket", "_socket", "ssl", "_ssl"}:
        return ("sockets belong to the process that opened them", _GENERIC_HINT)
    if modules & {"sqlite3", "_sqlite3"}:
        return (
            "database connections and cursors belong to the process that opened them",
            "pass the database path or URL and connect inside the consuming step (or in %%setup)",
        )
    return None


# --------------------------------------------------------------------------- dump / load


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"variable name must be a Python identifier, got {name!r}")


def dump_value(name: str, obj: Any, folder: Path) -> OutputRecord:
    """Save variable ``name`` as ``folder/<name>.<ext>`` (atomically) plus ``<name>.meta.json``.

    Raises :class:`UnserializableError` when no serializer can store the value.
    """
    _check_name(name)
    folder = Path(folder)
    known = _known_unpicklable(obj)
    if known is not None:
        raise UnserializableError(name, _type_name(obj), known[0], known[1])
    folder.mkdir(parents=True, exist_ok=True)
    reasons: list[str] = []
    for serializer in list(_REGISTRY):
        if not serializer.handles(obj):
            continue
        final = folder / f"{name}.{serializer.ext}"
        tmp = _temp_path(final)
        try:
            digest, size = serializer.dump_hashed(obj, tmp)
            os.replace(tmp, final)
        except SerializerDeclined as exc:
            _unlink_quietly(tmp)
            reasons.append(f"{serializer.name}: {exc}")
            continue
        except BaseException:
            _unlink_quietly(tmp)
            raise
        record = OutputRecord(name, final.name, serializer.name, digest, size)
        _write_meta(folder, record)
        return record
    raise UnserializableError(
        name, _type_name(obj), reasons[-1] if reasons else "no serializer handles it"
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
        _unlink_quietly(Path(folder) / previous)  # the variable changed serializer: drop old file


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
    if verify and _hash_file(path, record.digest.split(":", 1)[0])[0] != record.digest:
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
