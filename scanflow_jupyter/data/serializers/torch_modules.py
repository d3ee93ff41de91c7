"""`torch` serializer: `torch.nn.Module` with `torch.save` of the whole object."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from scanflow_jupyter.data.serializers.base import (
    SerializerDeclined,
    StreamSerializer,
    from_modules,
)


class TorchSerializer(StreamSerializer):
    """``torch.nn.Module`` with ``torch.save`` of the whole object (``.pt``).

    A ``state_dict`` alone cannot be loaded without the model's class, so the module itself is
    saved. Modules whose classes are defined in the notebook (``__main__``) are declined and
    fall through to cloudpickle, which stores those classes by value.
    """

    name = "torch"
    ext = "pt"

    def handles(self, obj: Any) -> bool:
        if "torch" not in sys.modules or not from_modules(obj, "torch"):
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


