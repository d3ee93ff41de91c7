"""The serializer base classes, their errors, and helpers that look at a value's type."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scanflow_jupyter.data.hashing import HashingWriter, hash_file

GENERIC_HINT = (
    "pass the data it holds instead (a path, a DataFrame, the model's parameters) or create it "
    "inside the consuming step or in %%setup"
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
        hint: str = GENERIC_HINT,
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


def type_name(obj: Any) -> str:
    cls = type(obj)
    return cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def from_modules(obj: Any, *roots: str) -> bool:
    """True when ``obj``'s class or one of its bases is defined in one of the given packages."""
    for cls in type(obj).__mro__:
        mod = getattr(cls, "__module__", None) or ""
        if mod.partition(".")[0] in roots:
            return True
    return False


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
        return hash_file(path)


class StreamSerializer(Serializer):
    """A serializer that writes to a file object, so the hash is computed while writing."""

    def write(self, obj: Any, fh: Any) -> None:
        raise NotImplementedError

    def dump(self, obj: Any, path: Path) -> None:
        with open(path, "wb") as fh:
            self.write(obj, fh)

    def dump_hashed(self, obj: Any, path: Path) -> tuple[str, int]:
        with open(path, "wb") as fh:
            writer = HashingWriter(fh)
            self.write(obj, writer)
            fh.flush()
        return writer.digest(), writer.size


