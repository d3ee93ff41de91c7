"""`cloudpickle` serializer: the fallback for anything picklable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scanflow_jupyter.data.serializers.base import SerializerDeclined, StreamSerializer


class CloudpickleSerializer(StreamSerializer):
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
