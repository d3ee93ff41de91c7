"""`scanflow build` against the real Docker Engine: images, reuse, rebuild, push, wheelhouse, checks."""

from __future__ import annotations

import io
import json
import os
import secrets
import subprocess
import tarfile
import urllib.request
from typing import Any

import pytest
from test_docker_support import *  # noqa: F403 - the Docker fixtures

pytestmark = pytest.mark.timeout(1200)


def build_json(project: Any, *args: str, timeout: float = 1200) -> tuple[int, dict[str, Any]]:
    return project.cli_json("build", "tiny.ipynb", "--json", *args, timeout=timeout)


def test_build_makes_one_labelled_image_per_step_and_reuses_them(docker_project: Any, docker_client: Any) -> None:
    code, doc = build_json(docker_project)
    assert code == 0, doc
    assert set(doc["steps"]) == {"first", "second", "third"}
    for name, step in doc["steps"].items():
        assert step["image"].startswith(f"scanflow/tiny-{name}:")
        tag = step["image"].rsplit(":", 1)[1]
        assert len(tag) == 12 and all(c in "0123456789abcdef" for c in tag)
        image = docker_client.images.get(step["image"])
        assert image.labels["scanflow.io/app"] == "tiny"
        assert image.labels["scanflow.io/step"] == name
        assert image.labels["scanflow.io/content-hash"].startswith(tag)
        assert step["import_check"] == {"checked": True, "problems": []}
    assert doc["steps"]["first"]["requirements"] == [f"threadpoolctl=={_version('threadpoolctl')}"]

    # every image shares the base, certificate and runtime layers; only the last ones differ: the step's
    # own requirements, the runtime wheel, the step notebook and the chmod that makes its folder
    # writable for a non-root uid (build/context.py, layer 6)
    layers = {n: docker_client.images.get(s["image"]).attrs["RootFS"]["Layers"] for n, s in doc["steps"].items()}
    shared = os.path.commonprefix(list(layers.values()))
    assert len(shared) >= len(layers["second"]) - 4, "the steps do not share their lower layers"

    code, again = build_json(docker_project)
    assert code == 0, again
    assert {n: s["built"] for n, s in again["steps"].items()} == {"first": False, "second": False, "third": False}
    assert {n: s["image"] for n, s in again["steps"].items()} == {n: s["image"] for n, s in doc["steps"].items()}


def test_rebuild_after_edit_rebuilds_only_the_changed_step(docker_project: Any) -> None:
    code, before = build_json(docker_project)
    assert code == 0, before
    docker_project.edit_cell("tiny", "%%executor second",
                             "%%executor second --inputs numbers --outputs total\ntotal = sum(numbers) * 2  # edited\n"
                             f"print('second, edited {secrets.token_hex(4)}', total)")
    code, after = build_json(docker_project)
    assert code == 0, after
    try:
        assert {n: s["built"] for n, s in after["steps"].items()} == {"first": False, "second": True, "third": False}
        assert after["steps"]["second"]["image"] != before["steps"]["second"]["image"]
        assert after["steps"]["first"]["image"] == before["steps"]["first"]["image"]
    finally:  # a one-off image (random edit): do not let them pile up on the engine
        _remove_images(after["steps"]["second"]["image"])


def test_build_of_one_step_and_inspect_show_the_pinned_requirements(docker_project: Any) -> None:
    code, doc = build_json(docker_project, "--step", "third")
    assert code == 0, doc
    assert list(doc["steps"]) == ["third"]
    code, inspect = docker_project.cli_json("inspect", "tiny.ipynb", "--json")
    assert code == 0
    first = inspect["requirements"]["first"]
    assert first["imports"] == ["threadpoolctl"]
    assert first["requirements"] == [f"threadpoolctl=={_version('threadpoolctl')}"]
    assert f"ipykernel=={_version('ipykernel')}" in first["pinned"]["runtime"]
    code, doc = build_json(docker_project, "--step", "nope")
    assert code == 2 and "nope" in doc["error"]


def test_import_check_reports_a_missing_package_with_the_fix(docker_project: Any) -> None:
    docker_project.write_notebook("broken", [
        "%load_ext scanflow_jupyter\n%scanflow_app broken",
        "%%executor uses_missing --outputs x\nimport scanflow_no_such_module_xyz\nx = 1",
        "%%executor fine --outputs y\ny = 2",
    ])
    code, doc = docker_project.cli_json("build", "broken.ipynb", "--json", timeout=1200)
    assert code == 1, doc
    assert doc["ok"] is False
    problems = doc["steps"]["uses_missing"]["import_check"]["problems"]
    assert [p["module"] for p in problems] == ["scanflow_no_such_module_xyz"]
    assert "ModuleNotFoundError" in problems[0]["error"]
    assert "--requirements" in problems[0]["fix"] and problems[0]["cell"] == 2  # 1-based
    assert doc["steps"]["fine"]["import_check"]["problems"] == []
    assert any(m["code"] == "unresolved-import" for m in doc["messages"])

    # the text form names the module and the fix, on stderr
    proc = docker_project.cli("build", "broken.ipynb", timeout=600)
    assert proc.returncode == 1
    assert "scanflow_no_such_module_xyz" in proc.stderr and "Fix:" in proc.stderr

    # a pipeline run stops before any container starts
    code, run = docker_project.cli_json("run", "broken.ipynb", "--backend", "docker", "--json", timeout=600)
    assert code == 1, run
    state = docker_project.store.read_state(run["run_id"])
    error = state.steps["fine"].error or state.steps["uses_missing"].error
    assert error is not None and error.ename == "ImportCheckError"
    assert "scanflow_no_such_module_xyz" in error.evalue


def test_build_errors_name_the_failing_line(docker_project: Any) -> None:
    docker_project.write_notebook("badpin", [
        "%load_ext scanflow_jupyter\n%scanflow_app badpin",
        "%%executor step --outputs x --requirements scanflow-no-such-distribution==0.0.1\nx = 1",
    ])
    code, doc = docker_project.cli_json("build", "badpin.ipynb", "--json", timeout=1200)
    assert code == 1, doc
    assert "pip install" in doc["error"] and "scanflow-no-such-distribution" in doc["error"]
    assert "Fix:" in doc["error"]


def test_push_to_a_local_registry(docker_project: Any, registry: str) -> None:
    code, doc = build_json(docker_project, "--push", registry, "--step", "first")
    assert code == 0, doc
    step = doc["steps"]["first"]
    assert step["pushed"] is True and step["image"].startswith(f"{registry}/scanflow/tiny-first:")
    with urllib.request.urlopen(f"http://{registry}/v2/scanflow/tiny-first/tags/list", timeout=10) as resp:
        tags = json.loads(resp.read())["tags"]
    assert step["image"].rsplit(":", 1)[1] in tags


def test_wheelhouse_build_runs_with_no_network(docker_project: Any, docker_client: Any) -> None:
    from scanflow_jupyter.build import cache_dir

    wheelhouse = cache_dir() / "test-wheelhouse"  # kept between runs: only the first one downloads
    code, doc = build_json(docker_project, "--wheelhouse", str(wheelhouse), "--step", "first", timeout=1800)
    assert code == 0, doc
    image = docker_client.images.get(doc["steps"]["first"]["image"])
    history = " ".join(h.get("CreatedBy", "") for h in image.history())
    assert "--no-index --find-links /tmp/scanflow/wheels/runtime" in history
    assert "--no-index --find-links /tmp/scanflow/wheels/step" in history
    assert any(wheelhouse.glob("runtime-*/threadpoolctl*.whl")) is False  # layers keep their own wheels
    assert any(wheelhouse.glob("step-*/threadpoolctl-*.whl"))
    assert doc["steps"]["first"]["import_check"]["problems"] == []


def test_no_credential_reaches_any_image_layer(docker_project: Any, docker_client: Any) -> None:
    """Credentials given to build and run stay in the environment: every layer is scanned for them."""
    token = f"sfsecret-{secrets.token_hex(16)}"
    aws = f"sfaws-{secrets.token_hex(16)}"
    marker = f"layer-scan-marker-{secrets.token_hex(6)}"
    docker_project.edit_cell("tiny", "%%executor third",
                             "%%executor third --inputs total --outputs report\nimport os\n"
                             f"report = json.dumps({{'total': total, 'marker': '{marker}'}})\n"
                             "print('token seen:', len(os.environ.get('MLFLOW_TRACKING_TOKEN', '')))")
    env = docker_project.env()
    env.update(MLFLOW_TRACKING_TOKEN=token, AWS_SECRET_ACCESS_KEY=aws)
    proc = subprocess.run([*_scanflow(), "build", "tiny.ipynb", "--json"], cwd=docker_project.root, env=env,
                          capture_output=True, text=True, timeout=1200, check=False)
    assert proc.returncode == 0, proc.stderr
    images = [s["image"] for s in json.loads(proc.stdout)["steps"].values()]
    run = subprocess.run([*_scanflow(), "run", "tiny.ipynb", "--backend", "docker", "--json"], cwd=docker_project.root,
                         env=env, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stderr + run.stdout
    run_id = json.loads(run.stdout)["run_id"]
    log = (docker_project.runs_dir / run_id / "third" / "log.txt").read_text()
    assert f"token seen: {len(token)}" in log  # the container did receive it, as environment

    try:
        found = _scan_saved_images(docker_client, images, [token.encode(), aws.encode(), marker.encode()])
    finally:  # the third image holds a random marker: one-off
        _remove_images(*[i for i in images if "/tiny-third:" in i])
    assert found[marker.encode()], "the scan did not see the step notebook: it does not read the layers"
    assert not found[token.encode()], f"the MLflow token is in an image layer: {found[token.encode()]}"
    assert not found[aws.encode()], f"the AWS secret is in an image layer: {found[aws.encode()]}"


def _scan_saved_images(client: Any, images: list[str], needles: list[bytes]) -> dict[bytes, list[str]]:
    """`docker save` each image and search every file of every layer (and every config) for needles."""
    found: dict[bytes, list[str]] = {n: [] for n in needles}
    overlap = max(len(n) for n in needles)
    seen: set[str] = set()
    for image in images:
        raw = io.BufferedReader(_ChunkReader(client.images.get(image).save(named=True)), buffer_size=1 << 20)
        with tarfile.open(fileobj=raw, mode="r|") as outer:
            for member in outer:
                if not member.isfile() or member.name in seen:
                    continue
                seen.add(member.name)
                data = outer.extractfile(member)
                assert data is not None
                if member.name.endswith(".tar"):
                    with tarfile.open(fileobj=data, mode="r|") as layer:
                        for entry in layer:
                            if entry.isfile():
                                _search(layer.extractfile(entry), f"{image} {member.name}:{entry.name}", needles,
                                        found, overlap)
                else:
                    _search(data, f"{image} {member.name}", needles, found, overlap)
    return found


def _search(stream: Any, where: str, needles: list[bytes], found: dict[bytes, list[str]], overlap: int) -> None:
    tail = b""
    while True:
        block = stream.read(1 << 20)
        if not block:
            return
        window = tail + block
        for needle in needles:
            if needle in window and where not in found[needle]:
                found[needle].append(where)
        tail = window[-overlap:]


class _ChunkReader(io.RawIOBase):
    """A readable stream over an iterator of byte chunks (the SDK's `get_image` generator)."""

    def __init__(self, chunks: Any) -> None:
        self._chunks = iter(chunks)
        self._rest = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._rest:
            try:
                self._rest = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._rest))
        buffer[:n] = self._rest[:n]
        self._rest = self._rest[n:]
        return n


def _remove_images(*refs: str) -> None:
    from scanflow_jupyter.build.builder import docker_client

    client = docker_client()
    for ref in refs:
        try:
            client.images.remove(ref, force=True)
        except Exception:  # noqa: BLE001 - already gone
            pass


def _scanflow() -> list[str]:
    from tests.conftest import scanflow_command

    return scanflow_command()


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


def test_build_base_reuses_the_cached_image(docker_project: Any, offline_base: str) -> None:
    code, doc = docker_project.cli_json("build-base", "--json", timeout=600)
    assert code == 0, doc
    assert doc == {"image": offline_base, "built": False, "seconds": 0.0}


def test_services_and_agents_get_images_too(docker_project: Any, docker_client: Any) -> None:
    from scanflow_jupyter.build.builder import run_once

    docker_project.write_notebook("sa", [
        "%load_ext scanflow_jupyter\n%scanflow_app sa",
        "%%executor step --outputs x\nx = 1",
        "%%service api\nimport json\n\ndef predict(data):\n    return json.dumps(data)",
        "%%agent watcher --template monitor\nfrom scanflow_jupyter.agents import sensor",
    ])
    code, doc = docker_project.cli_json("build", "sa.ipynb", "--json", timeout=1200)
    assert code == 0, doc
    assert {n: s["kind"] for n, s in doc["steps"].items()} == {"step": "executor", "api": "service", "watcher": "agent"}
    agent = docker_client.images.get(doc["steps"]["watcher"]["image"])
    assert agent.labels["scanflow.io/kind"] == "agent" and agent.labels["scanflow.io/step"] == "watcher"
    out = run_once(docker_client, agent.id, ["python", "-c", "import croniter, fastapi, uvicorn, httpx, json;"
                                             "print(json.load(open('/opt/scanflow/target.json'))['template']);"
                                             "print(open('/opt/scanflow/agent.py').read())"])
    assert b"monitor" in out and b"from scanflow_jupyter.agents import sensor" in out


def test_argo_export_builds_pushes_and_pins_each_step_by_digest(docker_project: Any, registry: str) -> None:
    """`scanflow export --to argo --build --registry R`: every task runs the pushed image, by digest."""
    import re

    import yaml

    proc = docker_project.cli("export", "tiny.ipynb", "--to", "argo", "--build", "--registry", registry,
                              timeout=1200)
    assert proc.returncode == 0, proc.stderr
    workflow = yaml.safe_load(proc.stdout)
    images = {t["name"]: t["container"]["image"] for t in workflow["spec"]["templates"] if "container" in t}
    assert set(images) == {"first", "second", "third"}
    for step, image in images.items():
        match = re.fullmatch(rf"{re.escape(registry)}/scanflow/tiny-{step}@(sha256:[0-9a-f]{{64}})", image)
        assert match, image
        request = urllib.request.Request(
            f"http://{registry}/v2/scanflow/tiny-{step}/manifests/{match.group(1)}", method="HEAD",
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
        with urllib.request.urlopen(request, timeout=10) as resp:  # the registry serves exactly that digest
            assert resp.status == 200
            assert resp.headers["Docker-Content-Digest"] == match.group(1)
