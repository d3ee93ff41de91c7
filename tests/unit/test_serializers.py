"""Serializer registry: per-type round trips, exact-JSON rule, hashing, atomicity, clear errors."""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import types
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scanflow_jupyter.data import files
from scanflow_jupyter.data import serializers as ser
from scanflow_jupyter.data.records import LoadError, OutputRecord
from scanflow_jupyter.data.serializers import dump_value, load_value, read_record
from scanflow_jupyter.data.serializers.base import (
    Serializer,
    SerializerDeclined,
    UnserializableError,
)
from scanflow_jupyter.data.serializers.torch_modules import TorchSerializer


def _expected_digest(data: bytes) -> str:
    """The digest dump_value must record: xxh3_128 when xxhash is installed, else sha256."""
    try:
        import xxhash

        return "xxh3_128:" + xxhash.xxh3_128(data).hexdigest()
    except ImportError:
        return "sha256:" + hashlib.sha256(data).hexdigest()


def roundtrip(obj, folder: Path):
    record = dump_value("v", obj, folder)
    return record, load_value(folder, read_record(folder, "v"), verify=True)


# --------------------------------------------------------------------------- numpy


ARRAYS = {
    "c_order": np.arange(12.0).reshape(3, 4),
    "f_order": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
    "strided": np.arange(24).reshape(4, 6)[::2, 1::2],
    "zero_d": np.array(5),
    "empty": np.zeros((0, 3)),
    "structured": np.array([(1, 2.5)], dtype=[("a", "i4"), ("b", "f8")]),
    "big_endian": np.arange(5, dtype=">i4"),
    "datetime": np.array(["2020-01-01", "2021-06-30"], dtype="datetime64[D]"),
    "unicode": np.array(["ab", "ç"]),
    "bool": np.array([True, False]),
    "complex": np.array([1 + 2j]),
}


@pytest.mark.parametrize("label", sorted(ARRAYS))
def test_ndarray_roundtrip_writes_exactly_what_np_save_writes(tmp_path, label):
    arr = ARRAYS[label]
    record, back = roundtrip(arr, tmp_path)
    assert record.serializer == "numpy"
    assert record.file == "v.npy"
    assert back.dtype == arr.dtype and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)
    expected = io.BytesIO()
    np.save(expected, arr, allow_pickle=False)
    assert (tmp_path / "v.npy").read_bytes() == expected.getvalue()


def test_object_arrays_and_ndarray_subclasses_fall_through_to_pickle(tmp_path):
    record, back = roundtrip(np.array([1, "a", None], dtype=object), tmp_path)
    assert record.serializer == "cloudpickle"
    assert back.tolist() == [1, "a", None]

    masked = np.ma.array([1, 2, 3], mask=[0, 1, 0])
    record, back = roundtrip(masked, tmp_path)
    assert record.serializer == "cloudpickle"
    assert isinstance(back, np.ma.MaskedArray)
    assert back.mask.tolist() == [False, True, False]


def test_record_hash_and_size_describe_the_file_bytes(tmp_path):
    arr = np.random.default_rng(0).random((600, 1000))  # ~4.8 MB: crosses the threaded path
    record = dump_value("big", arr, tmp_path)
    data = (tmp_path / record.file).read_bytes()
    assert record.size == len(data)
    assert record.digest == _expected_digest(data)
    assert read_record(tmp_path, "big") == record
    meta = json.loads((tmp_path / "big.meta.json").read_text())
    assert meta == record.to_dict()


def test_value_dumped_here_loads_in_another_process(tmp_path):
    arr = np.arange(1000, dtype=np.int64).reshape(10, 100)
    dump_value("arr", arr, tmp_path)
    code = textwrap.dedent(
        f"""
        from pathlib import Path
        from scanflow_jupyter.data.serializers import load_value, read_record
        folder = Path({str(tmp_path)!r})
        a = load_value(folder, read_record(folder, "arr"), verify=True)
        print(int(a.sum()), a.shape)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == f"{int(arr.sum())} (10, 100)"


# --------------------------------------------------------------------------- pandas


def assert_frame_identical(back, df):
    pd.testing.assert_frame_equal(back, df, check_exact=True)
    assert type(back.index) is type(df.index)
    assert back.index.names == df.index.names


FRAMES = {
    "basic": lambda: pd.DataFrame({"a": [1, 2], "b": ["x", "y"], "c": [0.5, np.nan]}),
    "categorical": lambda: pd.DataFrame({"a": pd.Categorical(["x", "y", "x"])}),
    "tz_datetime": lambda: pd.DataFrame({"t": pd.date_range("2020", periods=3, tz="UTC")}),
    "nullable_int": lambda: pd.DataFrame({"a": pd.array([1, None], dtype="Int64")}),
    "named_str_index": lambda: pd.DataFrame({"a": [1, 2]}, index=pd.Index(["r", "s"], name="row")),
    "multiindex": lambda: pd.DataFrame(
        {"a": [1, 2]}, index=pd.MultiIndex.from_tuples([("a", 1), ("b", 2)], names=["k", "n"])
    ),
    "range_index_offset": lambda: pd.DataFrame({"a": [1]}, index=pd.RangeIndex(3, 4, name="r")),
    "datetime_index_freq": lambda: pd.DataFrame(
        {"a": [1, 2, 3]}, index=pd.date_range("2020", periods=3, freq="D", name="day")
    ),
    "empty": lambda: pd.DataFrame(),
}


@pytest.mark.parametrize("label", sorted(FRAMES))
def test_dataframe_roundtrips_through_parquet(tmp_path, label):
    df = FRAMES[label]()
    record, back = roundtrip(df, tmp_path)
    assert record.serializer == "pandas-frame"
    assert record.file == "v.parquet"
    assert_frame_identical(back, df)
    if isinstance(df.index, pd.DatetimeIndex):
        assert back.index.freq == df.index.freq


NOT_PARQUET = {
    "int_column_names": lambda: pd.DataFrame({0: [1, 2], 1: [3, 4]}),
    "mixed_object_column": lambda: pd.DataFrame({"a": [1, "x"]}),
    "list_column": lambda: pd.DataFrame({"a": [[1], [2, 3]]}),
    "duplicate_columns": lambda: pd.DataFrame([[1, 2]], columns=["a", "a"]),
    "complex_column": lambda: pd.DataFrame({"a": [1 + 2j]}),
    "second_timestamps": lambda: pd.DataFrame(
        {"t": np.array(["2020-01-01", "2020-01-02"], dtype="datetime64[s]")}
    ),
}


@pytest.mark.parametrize("label", sorted(NOT_PARQUET))
def test_dataframes_parquet_cannot_store_exactly_fall_through_to_pickle(tmp_path, label):
    df = NOT_PARQUET[label]()
    record, back = roundtrip(df, tmp_path)
    assert record.serializer == "cloudpickle"
    assert_frame_identical(back, df)
    assert not list(tmp_path.glob("*.parquet"))
    assert not list(tmp_path.glob(".*.tmp"))


def test_dataframe_attrs_are_kept_by_falling_through(tmp_path):
    df = pd.DataFrame({"a": [1]})
    df.attrs["source"] = "sensor-3"
    record, back = roundtrip(df, tmp_path)
    assert record.serializer == "cloudpickle"
    assert back.attrs == {"source": "sensor-3"}


@pytest.mark.parametrize("name", ["price", None, 3])
def test_series_roundtrips_as_a_series_with_its_name(tmp_path, name):
    s = pd.Series([1.5, 2.5], index=pd.Index(["x", "y"], name="k"), name=name)
    record, back = roundtrip(s, tmp_path)
    assert record.serializer == "pandas-series"
    assert isinstance(back, pd.Series)
    pd.testing.assert_series_equal(back, s, check_exact=True)
    assert back.name == name


def test_series_with_a_tuple_name_falls_through_to_pickle(tmp_path):
    s = pd.Series([1, 2], name=("a", "b"))
    record, back = roundtrip(s, tmp_path)
    assert record.serializer == "cloudpickle"
    assert back.name == ("a", "b")


def test_parquet_output_is_readable_by_pandas(tmp_path):
    df = FRAMES["basic"]()
    record = dump_value("df", df, tmp_path)
    assert_frame_identical(pd.read_parquet(tmp_path / record.file), df)


# --------------------------------------------------------------------------- JSON


@pytest.mark.parametrize(
    "value",
    [
        {"a": 1, "b": [1.5, -0.0, "x", None, True], "c": {"d": []}},
        [1, 2, 3],
        "text with ünïcode and \ud800 lone surrogate",
        42,
        10**100,
        False,
        None,
        2.5,
    ],
)
def test_exact_json_values_are_stored_as_json(tmp_path, value):
    record, back = roundtrip(value, tmp_path)
    assert record.serializer == "json"
    assert record.file == "v.json"
    assert back == value
    assert type(back) is type(value)


@pytest.mark.parametrize(
    "value",
    [
        (1, 2),
        {1, 2},
        frozenset({"a"}),
        {1: "int key"},
        {"nested": (1, 2)},
        [1, (2, 3)],
        float("inf"),
        np.float64(1.5),
        np.int64(7),
        b"bytes",
        {"a": np.int64(1)},
        3 + 4j,
    ],
    ids=repr,
)
def test_values_json_would_change_go_to_pickle_and_keep_their_type(tmp_path, value):
    record, back = roundtrip(value, tmp_path)
    assert record.serializer == "cloudpickle"
    assert back == value
    assert type(back) is type(value)


def test_nan_is_not_json(tmp_path):
    record, back = roundtrip(float("nan"), tmp_path)
    assert record.serializer == "cloudpickle"
    assert back != back


def test_self_referencing_list_is_pickled(tmp_path):
    loop: list = [1]
    loop.append(loop)
    record, back = roundtrip(loop, tmp_path)
    assert record.serializer == "cloudpickle"
    assert back[1] is back


# --------------------------------------------------------------------------- scikit-learn


@pytest.fixture
def fitted_pipeline():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    X = rng.random((60, 3))
    y = (X[:, 0] > 0.5).astype(int)
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y), X


def test_sklearn_estimators_use_joblib(tmp_path, fitted_pipeline):
    model, X = fitted_pipeline
    record, back = roundtrip(model, tmp_path)
    assert record.serializer == "joblib"
    assert record.file == "v.joblib"
    np.testing.assert_array_equal(back.predict_proba(X), model.predict_proba(X))


def test_sklearn_objects_that_are_not_estimators_use_joblib(tmp_path):
    from sklearn.model_selection import KFold

    record, back = roundtrip(KFold(n_splits=4, shuffle=True, random_state=1), tmp_path)
    assert record.serializer == "joblib"
    assert back.n_splits == 4 and back.random_state == 1


def test_sklearn_object_referencing_a_notebook_function_is_pickled_by_value(tmp_path, monkeypatch):
    """joblib would store ``__main__.double`` by name; the consuming kernel lacks it."""
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    namespace: dict = {"__name__": "__main__"}
    exec("def double(x):\n    return x * 2\n", namespace)  # a function as a notebook defines it
    double = namespace["double"]
    monkeypatch.setattr(sys.modules["__main__"], "double", double, raising=False)
    X = np.arange(10.0).reshape(5, 2)
    model = make_pipeline(FunctionTransformer(double), LinearRegression()).fit(X, X[:, 0])

    record = dump_value("model", model, tmp_path)
    assert record.serializer == "cloudpickle"
    code = textwrap.dedent(
        f"""
        from pathlib import Path
        import numpy as np
        from scanflow_jupyter.data.serializers import load_value, read_record
        folder = Path({str(tmp_path)!r})
        m = load_value(folder, read_record(folder, "model"))
        print(m.predict(np.array([[1.0, 2.0]])).round(6).tolist())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == str(model.predict(np.array([[1.0, 2.0]])).round(6).tolist())


# --------------------------------------------------------------------------- torch (faked)


@pytest.fixture
def fake_torch(monkeypatch):
    """A stand-in ``torch`` module: torch itself is not installed in this environment."""
    torch = types.ModuleType("torch")
    nn = types.ModuleType("torch.nn")
    saved: dict = {}

    class Module:
        def modules(self):
            yield self

    Module.__module__ = "torch.nn.modules.module"

    def save(obj, fh):
        saved["obj"] = obj
        fh.write(b"fake torch archive")
        fh.flush()

    def load(path, weights_only=True):
        assert weights_only is False, "a whole module needs weights_only=False"
        assert Path(path).read_bytes() == b"fake torch archive"
        return saved["obj"]

    nn.Module = Module
    torch.nn = nn
    torch.save = save
    torch.load = load
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch.nn", nn)
    return torch


def test_torch_modules_use_torch_save_of_the_whole_module(tmp_path, fake_torch):
    class Net(fake_torch.nn.Module):
        pass

    Net.__module__ = "mypkg.models"  # an importable model class
    net = Net()
    record, back = roundtrip(net, tmp_path)
    assert record.serializer == "torch"
    assert record.file == "v.pt"
    assert back is net


def test_torch_modules_defined_in_the_notebook_are_declined(tmp_path, fake_torch):
    class Net(fake_torch.nn.Module):
        pass

    Net.__module__ = "__main__"
    with pytest.raises(SerializerDeclined, match="notebook"):
        TorchSerializer().dump_hashed(Net(), tmp_path / "n.pt")


def test_torch_is_not_imported_for_other_values(tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert not TorchSerializer().handles(object())
    assert "torch" not in sys.modules


# --------------------------------------------------------------------------- unserializable


def _generator():
    yield 1


@pytest.fixture
def unpicklables(tmp_path):
    fh = open(tmp_path / "open.txt", "w")  # noqa: SIM115 - an open file is the point
    sock = socket.socket()
    conn = sqlite3.connect(":memory:")
    values = {
        "gen": _generator(),
        "fh": fh,
        "lock": threading.Lock(),
        "rlock": threading.RLock(),
        "sock": sock,
        "conn": conn,
        "cursor": conn.cursor(),
        "mod": os,
        "cond": threading.Condition(),
        "nested": {"a": [threading.Lock()]},
    }
    yield values
    fh.close()
    sock.close()
    conn.close()


@pytest.mark.parametrize(
    "var", ["gen", "fh", "lock", "rlock", "sock", "conn", "cursor", "mod", "cond", "nested"]
)
def test_unpicklable_values_raise_an_actionable_error(tmp_path, unpicklables, var):
    out = tmp_path / "outputs"
    with pytest.raises(UnserializableError) as info:
        dump_value(var, unpicklables[var], out)
    err = info.value
    message = str(err)
    assert err.name == var
    assert f"'{var}'" in message
    assert type(unpicklables[var]).__name__ in message
    assert "How to fix" in message
    leftovers = list(out.iterdir()) if out.exists() else []
    assert leftovers == []


def test_unserializable_error_mentions_the_pickling_error(tmp_path):
    with pytest.raises(UnserializableError, match="cannot pickle '_thread.lock'"):
        dump_value("holder", {"lock": threading.Lock()}, tmp_path)


def test_in_memory_buffers_are_data_not_open_files(tmp_path):
    record, back = roundtrip(io.BytesIO(b"abc"), tmp_path)
    assert record.serializer == "cloudpickle"
    assert back.getvalue() == b"abc"


# --------------------------------------------------------------------------- dump_value mechanics


def test_failed_write_leaves_the_previous_value_intact(tmp_path, monkeypatch):
    dump_value("x", [1, 2, 3], tmp_path)

    # Fault injection: a crash between writing the temp file and renaming it cannot be caused
    # from outside, so os.replace is made to fail.
    def broken_replace(src, dst):
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(files.os, "replace", broken_replace)
    with pytest.raises(OSError, match="simulated crash"):
        dump_value("x", [4, 5, 6], tmp_path)
    monkeypatch.undo()

    assert load_value(tmp_path, read_record(tmp_path, "x"), verify=True) == [1, 2, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json", "x.meta.json"]


def test_saving_with_another_serializer_removes_the_old_file(tmp_path):
    dump_value("x", [1, 2], tmp_path)
    dump_value("x", (1, 2), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.meta.json", "x.pkl"]
    assert load_value(tmp_path, read_record(tmp_path, "x")) == (1, 2)


@pytest.mark.parametrize("name", ["../escape", "a/b", "", "x.y", "1abc"])
def test_variable_names_must_be_identifiers(tmp_path, name):
    with pytest.raises(ValueError, match="identifier"):
        dump_value(name, 1, tmp_path)


def test_load_detects_a_changed_file(tmp_path):
    record = dump_value("x", np.zeros(10), tmp_path)
    path = tmp_path / record.file
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))  # same size, other content
    assert load_value(tmp_path, record)[-1] != 0  # size check alone cannot see it
    with pytest.raises(LoadError, match="hash"):
        load_value(tmp_path, record, verify=True)
    path.write_bytes(b"short")
    with pytest.raises(LoadError, match="bytes"):
        load_value(tmp_path, record)
    path.unlink()
    with pytest.raises(LoadError, match="no longer exists"):
        load_value(tmp_path, record)


def test_read_record_of_an_unknown_variable(tmp_path):
    with pytest.raises(LoadError, match="no saved variable 'nope'"):
        read_record(tmp_path, "nope")


def test_record_with_a_path_in_its_file_name_is_refused(tmp_path):
    (tmp_path / "secret").write_text("x")
    record = OutputRecord("x", "../secret", "json", "0" * 64, 1)
    with pytest.raises(LoadError, match="invalid file name"):
        load_value(tmp_path / "sub", record)


def test_output_record_dict_roundtrip_ignores_extra_keys():
    record = OutputRecord("m", "m.pkl", "cloudpickle", "ab" * 32, 10)
    assert OutputRecord.from_dict(record.to_dict()) == record
    assert OutputRecord.from_dict({**record.to_dict(), "folder": "/elsewhere"}) == record


# --------------------------------------------------------------------------- registry


class Point:
    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y


class PointSerializer(Serializer):
    """A user serializer with only dump/load: the registry hashes its file afterwards."""

    name = "point"
    ext = "point"

    def handles(self, obj):
        return isinstance(obj, Point)

    def dump(self, obj, path):
        Path(path).write_text(f"{obj.x},{obj.y}")

    def load(self, path):
        return Point(*map(int, Path(path).read_text().split(",")))


@pytest.fixture
def restore_registry():
    saved = list(ser._REGISTRY)
    yield
    ser._REGISTRY[:] = saved


def test_registered_serializer_is_used_and_hashed(tmp_path, restore_registry):
    ser.register(PointSerializer())
    names = [s.name for s in ser.serializers()]
    assert names[-1] == "cloudpickle" and names[-2] == "point"
    record, back = roundtrip(Point(3, 4), tmp_path)
    assert record.serializer == "point"
    assert (back.x, back.y) == (3, 4)
    assert record.digest == _expected_digest(b"3,4")
    assert record.size == 3


def test_register_first_overrides_builtins(tmp_path, restore_registry):
    class TextList(PointSerializer):
        name = "textlist"
        ext = "txt"

        def handles(self, obj):
            return isinstance(obj, list)

        def dump(self, obj, path):
            Path(path).write_text("\n".join(map(str, obj)))

        def load(self, path):
            return [int(x) for x in Path(path).read_text().split()]

    ser.register(TextList(), first=True)
    record, back = roundtrip([1, 2], tmp_path)
    assert record.serializer == "textlist"
    assert back == [1, 2]
    ser.register(TextList(), first=True)  # same name again: replaced, not duplicated
    assert [s.name for s in ser.serializers()].count("textlist") == 1


def test_register_refuses_a_meta_json_extension(restore_registry):
    class Bad(PointSerializer):
        ext = "meta.json"

    with pytest.raises(ValueError):
        ser.register(Bad())


def test_loading_with_an_unregistered_serializer_says_so(tmp_path):
    (tmp_path / "x.weird").write_bytes(b"1")
    record = OutputRecord("x", "x.weird", "weird", _expected_digest(b"1"), 1)
    with pytest.raises(LoadError, match="no serializer named 'weird'"):
        load_value(tmp_path, record)


def test_type_detection_does_not_import_heavy_libraries():
    code = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        import tempfile
        from scanflow_jupyter.data.serializers import dump_value, load_value
        d = Path(tempfile.mkdtemp())
        for v in ({"a": 1}, (1, 2), "s", object.__new__(type("X", (), {}))):
            try:
                dump_value("v", v, d)
            except Exception:
                pass
        heavy = ("numpy", "pandas", "pyarrow", "sklearn", "torch", "joblib")
        print(sorted(m for m in heavy if m in sys.modules))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_object_column_missing_values_keep_their_kind(tmp_path):
    """Parquet would turn a NaN in an object column into None: such frames are pickled."""
    df = pd.DataFrame({"a": pd.Series([b"x", float("nan")], dtype=object)})
    record, back = roundtrip(df, tmp_path)
    assert record.serializer == "cloudpickle"
    assert isinstance(back["a"].iloc[1], float)


def test_saving_a_tz_aware_frame_shows_the_user_no_library_warning(tmp_path):
    df = pd.DataFrame({"t": pd.date_range("2020", periods=3, tz="Europe/Madrid")})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        record = dump_value("df", df, tmp_path)
    assert record.serializer == "pandas-frame"
