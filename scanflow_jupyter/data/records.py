"""What was saved for one variable (`OutputRecord`, its `<name>.meta.json`) and `LoadError`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


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


class LoadError(Exception):
    """A saved variable's file is missing, changed, or cannot be read back."""
