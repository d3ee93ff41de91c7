"""`pandas-frame` / `pandas-series` serializers: parquet, only when the round trip is exact."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from scanflow_jupyter.data.serializers.base import SerializerDeclined, StreamSerializer
from scanflow_jupyter.data.serializers.json_values import is_exact_json

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


class DataFrameSerializer(StreamSerializer):
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


class SeriesSerializer(StreamSerializer):
    """``pandas.Series`` as a one-column parquet file that loads back as a Series with its name."""

    name = "pandas-series"
    ext = "parquet"

    def handles(self, obj: Any) -> bool:
        cls = type(obj)
        return cls.__name__ == "Series" and cls.__module__.partition(".")[0] == "pandas"

    def write(self, obj: Any, fh: Any) -> None:
        if obj.attrs:
            raise SerializerDeclined("Series.attrs are not stored in parquet")
        if not is_exact_json(obj.name) or isinstance(obj.name, (list, dict)):
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
