"""`json` serializer: plain JSON data whose round trip is exact."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from scanflow_jupyter.data.serializers.base import StreamSerializer

_JSON_SCALARS = (str, bool, type(None))
_MAX_JSON_INT_BITS = 4000 * 3  # well under Python's 4300-digit int/str conversion limit


def is_exact_json(obj: Any, depth: int = 0) -> bool:
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
        return all(is_exact_json(item, depth + 1) for item in obj)
    if t is dict:
        return all(type(k) is str and is_exact_json(v, depth + 1) for k, v in obj.items())
    return False


class JsonSerializer(StreamSerializer):
    """Plain data (dict with str keys, list, str, int, bool, None, finite float) as ``.json``."""

    name = "json"
    ext = "json"

    def handles(self, obj: Any) -> bool:
        return is_exact_json(obj)

    def write(self, obj: Any, fh: Any) -> None:
        fh.write(json.dumps(obj, ensure_ascii=True, allow_nan=False).encode("ascii"))

    def load(self, path: Path) -> Any:
        with open(path, "rb") as fh:
            return json.loads(fh.read())


