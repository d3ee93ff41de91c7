"""The data package's layout (#13): one module per serializer, file and hash utilities on their own."""

from __future__ import annotations

import subprocess
import sys

from scanflow_jupyter.data import files, hashing, records
from scanflow_jupyter.data.serializers import serializers


def test_each_builtin_serializer_lives_in_its_own_module() -> None:
    modules = [type(s).__module__ for s in serializers()]
    assert all(m.startswith("scanflow_jupyter.data.serializers.") for m in modules)
    pandas = "scanflow_jupyter.data.serializers.pandas_parquet"  # frame + series share the Arrow conversion
    assert len(set(modules)) == len(modules) - 1 and modules.count(pandas) == 2


def test_utilities_are_importable_without_the_serializers() -> None:
    code = ("import sys\nimport scanflow_jupyter.data.files, scanflow_jupyter.data.hashing, scanflow_jupyter.data.records\n"
            "assert 'scanflow_jupyter.data.serializers' not in sys.modules, sorted(sys.modules)\n"
            "assert not {'numpy', 'pandas', 'pyarrow', 'joblib', 'torch', 'cloudpickle'} & set(sys.modules)\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_utilities_work(tmp_path) -> None:
    target = tmp_path / "a.bin"
    files.atomic_write_bytes(target, b"abc", fsync=True)
    assert target.read_bytes() == b"abc" and [p.name for p in tmp_path.iterdir()] == ["a.bin"]
    digest, size = hashing.hash_file(target)
    hasher = hashing.new_hasher()
    hasher.update(b"abc")
    assert (digest, size) == (hashing.format_digest(hasher), 3)
    rec = records.OutputRecord("x", "x.json", "json", digest, 3)
    assert records.OutputRecord.from_dict({**rec.to_dict(), "folder": "ignored"}) == rec
