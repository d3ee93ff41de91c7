"""`joblib` serializer: scikit-learn objects (declined when they reference notebook code)."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

from scanflow_jupyter.data.serializers.base import (
    SerializerDeclined,
    StreamSerializer,
    from_modules,
)


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


class JoblibSerializer(StreamSerializer):
    """scikit-learn estimators and other ``sklearn.*`` objects with joblib (``.joblib``).

    Objects that reference functions or classes defined in the notebook itself (``__main__``)
    are declined: joblib stores those by name, which the consuming kernel may not have, while
    the cloudpickle fallback stores them by value.
    """

    name = "joblib"
    ext = "joblib"

    def handles(self, obj: Any) -> bool:
        return "sklearn" in sys.modules and from_modules(obj, "sklearn")

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


