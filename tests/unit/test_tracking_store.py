"""The sqlite tracking store helper and the run's tracking buffer, on real files and real MLflow."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from scanflow_jupyter.tracking import TrackingError
from scanflow_jupyter.tracking_store import (
    ensure_sqlite_store,
    run_exists,
    sqlite_path,
    store_ready,
    with_busy_timeout,
)
from scanflow_jupyter.tracking_sync import buffer_ids, buffer_uri, create_buffer, unreachable
from tests.conftest import require


def table_names(db: Path) -> list[str]:
    con = sqlite3.connect(db)
    try:
        return [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    finally:
        con.close()


def test_busy_timeout_is_added_to_sqlite_uris_only() -> None:
    assert with_busy_timeout("sqlite:////a/b.db") == "sqlite:////a/b.db?timeout=60"
    assert with_busy_timeout("sqlite:////a/b.db?timeout=5") == "sqlite:////a/b.db?timeout=5"
    assert with_busy_timeout("http://h:5000") == "http://h:5000"
    assert sqlite_path("sqlite:////a/b.db?timeout=60") == Path("/a/b.db")
    assert sqlite_path("http://h") is None


def test_checks_never_create_a_missing_store(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'gone.db'}"
    assert run_exists(uri, "abc") is False
    assert store_ready(uri) is False
    assert not (tmp_path / "gone.db").exists()


def test_unwritable_store_folder_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    uri = f"sqlite:///{tmp_path / 'file' / 'mlflow.db'}"
    with pytest.raises(TrackingError, match=r"file/mlflow\.db.*writable"):
        ensure_sqlite_store(uri)


@pytest.mark.timeout(240)
def test_concurrent_creation_is_done_once_with_wal_and_no_leftovers(tmp_path: Path) -> None:
    require("mlflow")
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    code = "import sys; from scanflow_jupyter.tracking_store import ensure_sqlite_store as e; e(sys.argv[1])"
    procs = [subprocess.Popen([sys.executable, "-c", code, uri], stderr=subprocess.PIPE, text=True) for _ in range(4)]
    for p in procs:
        _, err = p.communicate(timeout=200)
        assert p.returncode == 0, err[-2000:]
    assert store_ready(uri)
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        revision = con.execute("SELECT version_num FROM alembic_version").fetchone()[0]
        # an interrupted migration's leftover makes the store "not ready"; the next ensure drops it
        con.execute("CREATE TABLE _alembic_tmp_params (x INTEGER)")
        con.commit()
    finally:
        con.close()
    assert not store_ready(uri)
    ensure_sqlite_store(uri)
    assert store_ready(uri)
    assert "_alembic_tmp_params" not in table_names(db)
    con = sqlite3.connect(db)
    try:
        assert con.execute("SELECT version_num FROM alembic_version").fetchone()[0] == revision
    finally:
        con.close()


@pytest.mark.timeout(240)
def test_buffer_is_a_copy_of_the_template_and_names_the_pipeline_runs(tmp_path: Path) -> None:
    tracking = require("mlflow.tracking")
    home, run_dir = tmp_path / ".scanflow", tmp_path / "run"
    assert create_buffer(run_dir, home, allow_slow=False) is False  # no template yet: the recorder makes it
    assert create_buffer(run_dir, home) is True
    other = tmp_path / "other"
    assert create_buffer(other, home, allow_slow=False) is True  # template ready: a stdlib copy
    assert store_ready(buffer_uri(other))
    client = tracking.MlflowClient(buffer_uri(run_dir))
    exp = client.create_experiment("app")
    parent = client.create_run(exp, tags={"scanflow.kind": "pipeline"}).info.run_id
    step = client.create_run(exp, tags={"scanflow.kind": "step", "scanflow.step": "train"}).info.run_id
    assert buffer_ids(run_dir) == {"parent": parent, "steps": {"train": step}}
    assert run_exists(buffer_uri(run_dir), parent) is True
    assert buffer_ids(other) == {"parent": None, "steps": {}}


def test_unreachable_tracker_is_told_by_a_tcp_probe() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert "cannot connect to 127.0.0.1" in (unreachable(f"http://user:pw@127.0.0.1:{port}/", timeout=2) or "")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        assert unreachable(f"http://127.0.0.1:{server.getsockname()[1]}", timeout=2) is None
    assert unreachable("sqlite:////tmp/x.db") is None
