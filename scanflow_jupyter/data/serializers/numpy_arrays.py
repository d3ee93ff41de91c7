"""`numpy` serializer: plain ndarrays as `.npy`, written without a copy, loaded without pickle."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from scanflow_jupyter.data.serializers.base import StreamSerializer


class NumpySerializer(StreamSerializer):
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
