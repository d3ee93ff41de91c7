"""The run store's S3 client (scanflow_jupyter.data.object_store) against a real S3 server.

The server is versitygw (posix backend), the S3 server of the team environment, built from its Go
module by `tests/k8s/cluster.sh build` and run here as a local process on a temporary folder.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scanflow_jupyter.data.object_store import ObjectStoreError, S3Client, StoreURI
from tests.conftest import IN_CI

pytestmark = pytest.mark.integration

ACCESS, SECRET = "scanflow-test", "s3cr3t-value-for-tests"


def _binary() -> str:
    found = os.environ.get("SCANFLOW_VERSITYGW") or shutil.which("versitygw")
    if not found:
        cache = os.environ.get("SCANFLOW_K8S_CACHE") or str(Path.home() / ".cache" / "scanflow" / "k8s")
        found = next(iter(sorted(glob.glob(f"{cache}/*/bin/versitygw"))), None)
    if not found:
        message = "no versitygw binary (tests/k8s/cluster.sh build builds it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("s3root")
    port = _free_port()
    proc = subprocess.Popen([_binary(), "--port", f"127.0.0.1:{port}", "--access", ACCESS, "--secret", SECRET,
                             "posix", str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"versitygw did not start: {proc.stderr.read().decode() if proc.stderr else ''}")
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def s3(endpoint: str) -> Iterator[S3Client]:
    with S3Client(endpoint, ACCESS, SECRET) as client:
        client.ensure_bucket("scanflow")
        yield client


def test_a_step_folder_round_trips_byte_for_byte(s3: S3Client, tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = {"input.ipynb": b'{"cells": []}', "log.txt": "ünïcode log\n".encode(),
             "outputs/a b.json": b'{"x": 1}', "outputs/deep/er/model.pkl": os.urandom(300_000)}
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    uri = StoreURI.parse("s3://scanflow/runs")
    assert s3.upload_dir(src, uri, "run-1", "train") == len(files)
    assert sorted(k for k, _ in s3.list("scanflow", "runs/run-1/")) == sorted(f"runs/run-1/train/{r}" for r in files)
    dst = tmp_path / "dst"
    assert s3.download_dir(uri, dst, "run-1", "train") == len(files)
    assert {p.relative_to(dst).as_posix(): p.read_bytes() for p in dst.rglob("*") if p.is_file()} == files
    assert s3.download_dir(uri, tmp_path / "none", "run-1", "absent") == 0  # a missing folder is empty, not an error


def test_listing_follows_continuation_pages(s3: S3Client) -> None:
    """More objects than one ListObjectsV2 page (1000) are all listed."""
    for i in range(1003):
        s3.put("scanflow", f"many/{i:04d}", b"")
    assert len(list(s3.list("scanflow", "many/"))) == 1003


def test_a_wrong_secret_is_refused_with_the_servers_reason(endpoint: str) -> None:
    with S3Client(endpoint, ACCESS, "not-the-secret") as bad, pytest.raises(ObjectStoreError) as err:
        bad.put("scanflow", "x", b"1")
    assert "403" in str(err.value) and "SignatureDoesNotMatch" in str(err.value)


def test_an_unreachable_store_names_the_endpoint_and_the_fix() -> None:
    with S3Client(f"http://127.0.0.1:{_free_port()}", ACCESS, SECRET, timeout=3) as gone, \
            pytest.raises(ObjectStoreError) as err:
        gone.get("scanflow", "x")
    assert "127.0.0.1" in str(err.value) and "Fix" in str(err.value)


def test_configuration_comes_from_the_environment_and_missing_keys_are_named(endpoint: str) -> None:
    with pytest.raises(ObjectStoreError) as err:
        S3Client.from_env({"SCANFLOW_S3_ENDPOINT_URL": endpoint})
    assert "AWS_ACCESS_KEY_ID" in str(err.value) and "AWS_SECRET_ACCESS_KEY" in str(err.value)
    with S3Client.from_env({"MLFLOW_S3_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": ACCESS,
                            "AWS_SECRET_ACCESS_KEY": SECRET}) as client:
        client.ensure_bucket("other")
        client.put("other", "k", b"v")
        assert client.get("other", "k") == b"v"
    with pytest.raises(ValueError, match="s3://BUCKET/PREFIX"):
        StoreURI.parse("/local/path")
