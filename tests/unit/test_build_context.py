"""Build contexts without an engine: Dockerfile layers, content-hash tags, the runtime wheel, errors."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from scanflow_jupyter.build.base import BaseRecipe
from scanflow_jupyter.build.builder import BuildError, follow_build
from scanflow_jupyter.build.context import make_context, read_certs, repository_name
from scanflow_jupyter.build.requirements import Layer, Pin, StepRequirements
from scanflow_jupyter.build.wheel import runtime_wheel
from scanflow_jupyter.build.wheelhouse import PythonTarget


def _reqs(step_lines: list[str] = ()) -> StepRequirements:
    runtime = Layer("runtime", [Pin("ipykernel", "ipykernel==7.4.0", "runtime", "7.4.0")])
    setup = Layer("setup", [Pin("numpy", "numpy==2.0.0", "import numpy", "2.0.0")])
    step = Layer("step", [Pin(line.split("==")[0], line, "import x", None) for line in step_lines])
    return StepRequirements("s", [], [], [runtime, setup, step])


def _ctx(payload: bytes = b"{}", certs: dict[str, bytes] | None = None, step_lines: list[str] = (), base_id: str = "sha256:b",
         offline: dict[str, list[Path]] | None = None):
    return make_context(app="My App", name="Train_1", kind="executor", base="scanflow/base:x", base_id=base_id,
                        requirements=_reqs(step_lines), payload={"step.ipynb": payload}, command=["python", "-V"],
                        wheel=("scanflow_jupyter-0.1.0-py3-none-any.whl", b"wheel"), certs=certs or {},
                        offline_wheels=offline)


def test_layers_go_from_least_to_most_often_changed() -> None:
    text = _ctx(certs={"proxy.crt": b"CERT"}, step_lines=["scipy==1.0"]).files["Dockerfile"].decode()
    order = ["FROM scanflow/base:x", "update-ca-certificates", "REQUESTS_CA_BUNDLE=", "/opt/venv",
             "runtime.txt", "setup.txt", "step.txt", "scanflow_jupyter-0.1.0-py3-none-any.whl", "COPY payload/",
             'CMD ["python", "-V"]', '"scanflow.io/app"="My App"', '"scanflow.io/content-hash"']
    positions = [text.index(marker) for marker in order]
    assert positions == sorted(positions), text
    assert 'SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' in text
    # runnable by a non-root uid (Kubernetes, Pod Security `restricted`): writable working folder and HOME
    assert "RUN chmod 1777 /opt/scanflow\nENV HOME=/tmp\nWORKDIR /opt/scanflow\n" in text


def test_the_tag_is_a_content_hash_of_everything_that_went_in() -> None:
    base = _ctx()
    assert base.ref() == f"scanflow/my-app-train-1:{base.content_hash[:12]}"
    assert _ctx().tag == base.tag
    for changed in (_ctx(payload=b"{ }"), _ctx(certs={"a.crt": b"x"}), _ctx(step_lines=["scipy==1.0"]),
                    _ctx(base_id="sha256:other")):
        assert changed.tag != base.tag
    assert base.ref("127.0.0.1:5000/") == f"127.0.0.1:5000/scanflow/my-app-train-1:{base.tag}"


def test_offline_contexts_install_from_copied_wheels_only(tmp_path: Path) -> None:
    wheel = tmp_path / "numpy-2.0.0-cp311-cp311-manylinux_2_17_x86_64.whl"
    wheel.write_bytes(b"numpy wheel")
    ctx = _ctx(offline={"runtime": [], "setup": [wheel]})
    text = ctx.files["Dockerfile"].decode()
    assert "pip install --no-index --find-links /tmp/scanflow/wheels/setup -r /tmp/scanflow/setup.txt" in text
    assert ctx.files[f"wheels/setup/{wheel.name}"] == wheel
    assert ctx.offline
    with tarfile.open(fileobj=ctx.tarball()) as tar:
        assert tar.extractfile(f"wheels/setup/{wheel.name}").read() == b"numpy wheel"
        assert all(m.mtime == 0 and m.uid == 0 for m in tar.getmembers())


def test_repository_names_are_valid_docker_names() -> None:
    assert repository_name("Churn Model", "train__v2") == "scanflow/churn-model-train-v2"
    assert repository_name("...", "x") == "scanflow/x-x"


def test_certificates_are_read_fresh_from_the_folder(tmp_path: Path) -> None:
    (tmp_path / "a.crt").write_bytes(b"A")
    (tmp_path / "notes.txt").write_bytes(b"no")
    assert read_certs(tmp_path) == {"a.crt": b"A"}
    (tmp_path / "a.crt").write_bytes(b"A2")
    assert read_certs(tmp_path) == {"a.crt": b"A2"}
    assert read_certs(tmp_path / "missing") == {} and read_certs(None) == {}


def test_the_runtime_wheel_is_reproducible_and_holds_the_package() -> None:
    name, first = runtime_wheel()
    assert name == "scanflow_jupyter-0.1.0-py3-none-any.whl"
    assert runtime_wheel()[1] == first
    with zipfile.ZipFile(io.BytesIO(first)) as zf:
        names = zf.namelist()
        assert "scanflow_jupyter/runtime/execute_step.py" in names
        assert "scanflow_jupyter/data/step_io.py" in names
        assert not [n for n in names if "__pycache__" in n or "/labextension/" in n]
        record = zf.read("scanflow_jupyter-0.1.0.dist-info/RECORD").decode()
        assert "scanflow_jupyter/data/step_io.py,sha256=" in record
        assert "Name: scanflow-jupyter" in zf.read("scanflow_jupyter-0.1.0.dist-info/METADATA").decode()


def _stream(*lines: str, error: str | None = None):
    for line in lines:
        yield {"stream": line + "\n"}
    if error:
        yield {"errorDetail": {"message": error}, "error": error}
    else:
        yield {"aux": {"ID": "sha256:abc"}}


def test_build_errors_from_the_stream_name_the_step_and_failing_lines() -> None:
    logged: list[str] = []
    assert follow_build(_stream("Step 1/2 : FROM x", " ---> 123"), "train", logged.append) == "sha256:abc"
    assert logged[0] == "train: Step 1/2 : FROM x"
    with pytest.raises(BuildError) as info:
        follow_build(_stream("Step 7/12 : RUN pip install -r /tmp/scanflow/step.txt", " ---> Running in 5d",
                             "Collecting nosuch==1.0",
                             "ERROR: Could not find a version that satisfies the requirement nosuch==1.0",
                             "ERROR: No matching distribution found for nosuch==1.0",
                             error="The command '/bin/sh -c pip install -r /tmp/scanflow/step.txt' returned a non-zero code: 1"),
                     "train", lambda _l: None)
    err = info.value
    assert err.instruction == "RUN pip install -r /tmp/scanflow/step.txt"
    assert err.lines[-1] == "ERROR: No matching distribution found for nosuch==1.0"
    text = str(err)
    assert "'train'" in text and "returned a non-zero code: 1" in text and "Fix:" in text and "--requirements" in text


def test_network_failures_in_pip_point_at_certificates_and_the_wheelhouse() -> None:
    with pytest.raises(BuildError, match="wheelhouse"):
        follow_build(_stream("Step 5/9 : RUN pip install -r /tmp/scanflow/runtime.txt",
                             "WARNING: Retrying ... SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED]'))",
                             error="non-zero code: 1"), "s", lambda _l: None)


def test_a_cancelled_build_stops_reading_the_stream() -> None:
    with pytest.raises(BuildError, match="cancelled"):
        follow_build(_stream("Step 1/2 : FROM x"), "s", lambda _l: None, cancelled=lambda: True)


def test_the_base_recipe_tag_hashes_the_recipe() -> None:
    a, b = BaseRecipe("bookworm"), BaseRecipe("trixie")
    assert a.tag.startswith("scanflow/base:bookworm-") and a.tag != b.tag
    cmd = a.command()
    assert cmd[:2] == ["mmdebstrap", "--variant=minbase"]
    assert "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr" in cmd
    assert "--include=python3,python3-venv,python3-pip,ca-certificates" in cmd
    assert any("python3 -m venv /opt/venv" in c for c in cmd)
    assert "ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" in a.changes()


def test_wheelhouse_targets_the_image_interpreter() -> None:
    target = PythonTarget("3.12", "x86_64", "2.36")
    args = target.pip_download_args()
    assert args[:3] == ["--only-binary=:all:", "--python-version", "3.12"]
    assert "manylinux_2_36_x86_64" in args and "manylinux_2_17_x86_64" in args and "manylinux2014_x86_64" in args
    import platform
    import sys

    here = PythonTarget(f"{sys.version_info[0]}.{sys.version_info[1]}", platform.machine(), None)
    assert here.matches_host() and not PythonTarget("2.7", platform.machine(), None).matches_host()
