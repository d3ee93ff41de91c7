"""Finding 2 (credentials leak): a tracking URI with `user:password@` works at run time and is
recorded nowhere — not in the run store, the step notebooks, logs, MLflow, argv or exports.

The pipeline tracks into a real MLflow server through `http://user:password@127.0.0.1:PORT`
(MLflow's server without its auth app accepts and ignores basic-auth credentials).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from test_docker_support import *  # noqa: F403 - the Docker fixtures

from scanflow_jupyter.redact import redact_uri, secret_values
from tests.conftest import scanflow_command
from tests.secrets_support import (
    PASSWORD,
    USER,
    files_containing,
    processes_containing,
    server,  # noqa: F401 - the fixture
)

pytestmark = pytest.mark.integration

APP = "secret-check"
TOKEN = "Token-Value-6a1f0c"  # noqa: S105 - a credential of the user's shell (API_TOKEN), seen by steps
CELLS: list[Any] = [
    f"%load_ext scanflow_jupyter\n%scanflow_app {APP}",
    "%%executor train --outputs seen\n"
    "import os, pathlib, time\n"
    "import mlflow\n"
    "mlflow.log_metric('accuracy', 0.91)\n"
    "here = pathlib.Path(os.environ['SECRETS_TEST_SYNC'])\n"
    "(here / 'ready').touch()  # the test now reads every process's argv, then lets the step go on\n"
    "deadline = time.monotonic() + 600\n"
    "while not (here / 'go').exists() and time.monotonic() < deadline:\n"
    "    time.sleep(0.05)\n"
    "seen = {'uri': os.environ.get('MLFLOW_TRACKING_URI')}\n"
    "print('the step printed a token:', os.environ['API_TOKEN'])",
    "%%executor leak --requires train\n"
    "import os\n"
    "raise RuntimeError('login refused for ' + os.environ['API_TOKEN'])",
]




@pytest.fixture
def tracking_uri(server: tuple[str, Path]) -> str:  # noqa: F811
    return server[0]


def _env(project: Any, uri: str) -> dict[str, str]:
    env = project.env()
    env["MLFLOW_TRACKING_URI"] = uri
    env["API_TOKEN"] = TOKEN
    return env


def test_a_credentialed_tracking_uri_works_and_is_recorded_nowhere(project: Any, server: tuple[str, Path],  # noqa: F811
                                                                   require: Any) -> None:
    require("mlflow")
    tracking_uri, server_folder = server
    secrets = secret_values({"MLFLOW_TRACKING_URI": tracking_uri, "API_TOKEN": TOKEN})
    assert sorted(secrets) == sorted([PASSWORD, TOKEN])
    nb = project.write_notebook("secret", CELLS)
    env = _env(project, tracking_uri)
    sync = project.root / "sync"
    sync.mkdir()
    env["SECRETS_TEST_SYNC"] = str(sync)
    with (project.root / "out.txt").open("w+") as out, (project.root / "err.txt").open("w+") as err:
        proc = subprocess.Popen([*scanflow_command(), "run", str(nb), "--json"], cwd=project.root, env=env,
                                stdout=out, stderr=err, text=True)
        try:
            while not (sync / "ready").exists() and proc.poll() is None:
                time.sleep(0.05)
            # runner, recorder, kernel zygote and the step's kernel are all alive now
            argv_leaks = processes_containing(secrets)
            (sync / "go").touch()
            code = proc.wait(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    assert (sync / "ready").exists(), stderr[-3000:]
    assert argv_leaks == [], "a process had a credential in its (world-readable) argv"
    assert code == 1, stderr[-3000:]  # `leak` fails on purpose
    doc = json.loads(stdout)
    assert doc["steps"]["train"]["status"] == "succeeded" and doc["steps"]["leak"]["status"] == "failed"

    # the secret worked at run time: the step's metric reached the server through the credentialed URI
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(APP)
    assert experiment is not None, "nothing was tracked into the server"
    runs = client.search_runs([experiment.experiment_id])
    assert any(r.data.metrics.get("accuracy") == 0.91 for r in runs), [r.data.metrics for r in runs]

    # the step notebook names the store without credentials; the kernel's environment had none in URIs
    run_dir = Path(doc["run_dir"])
    seen = json.loads((run_dir / "train" / "outputs" / "seen.json").read_text())
    assert PASSWORD not in (seen["uri"] or "")
    assert PASSWORD not in (run_dir / "train" / "input.ipynb").read_text()

    # ... and the password is nowhere: run store, notebooks, logs, events, MLflow store & artifacts
    (project.root / "out.txt").unlink()
    (project.root / "err.txt").unlink()
    assert files_containing(project.root, secrets) == []
    assert files_containing(server_folder, secrets) == []
    assert not any(s in stdout + stderr for s in secrets)
    # the failure is reported, masked
    state = json.loads((run_dir / "run.json").read_text())
    assert "login refused for ***" in state["steps"]["leak"]["error"]["evalue"]
    assert "the step printed a token: ***" in (run_dir / "train" / "log.txt").read_text()
    listed = subprocess.run([*scanflow_command(), "runs", "--json"], cwd=project.root, env=env,
                            capture_output=True, text=True, timeout=120, check=True)
    assert not any(s in listed.stdout + listed.stderr for s in secrets)


def test_exported_manifests_and_workflows_carry_no_credential(project: Any, tracking_uri: str) -> None:
    """`scanflow export --to k8s|argo` with credentials in the shell: none in the YAML but the Secret."""
    env = _env(project, tracking_uri)
    env.update({"SCANFLOW_TRACKER_DB_URI": "postgresql://mlflow:DbPassw0rd-x1@db.example:5432/mlflow",
                "SCANFLOW_TRACKER_ARTIFACTS": "s3://bucket/mlflow", "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEY0001",
                "AWS_SECRET_ACCESS_KEY": "aws-Secret-Value-0002", "MLFLOW_TRACKING_PASSWORD": "tracking-Pw-0003"})
    secrets = secret_values(env)
    assert {PASSWORD, "DbPassw0rd-x1", "aws-Secret-Value-0002", "tracking-Pw-0003"} <= set(secrets)
    nb = project.nb("linear_chain")
    out = project.root / "export"
    for target, extra in (("k8s", []), ("argo", ["--image", "*=registry.example/scanflow/step:1"])):
        proc = subprocess.run([*scanflow_command(), "export", str(nb), "--to", target, "-o", str(out), *extra],
                              cwd=project.root, env=env, capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert not any(s in proc.stdout + proc.stderr for s in secrets)
    assert files_containing(out, secrets) == []
    manifests = next(out.glob("scanflow-*.yaml"))
    assert manifests.stat().st_mode & 0o777 == 0o600  # it holds the Secret (base64): its owner only
    import yaml

    docs = [d for f in sorted(out.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    secret_objects = [d for d in docs if d["kind"] == "Secret"]
    assert len(secret_objects) == 1  # the credentials the cluster needs live there (base64), nowhere else
    import base64

    stored = {k: base64.b64decode(v).decode() for k, v in secret_objects[0]["data"].items()}
    assert stored["aws-secret-access-key"] == "aws-Secret-Value-0002" and "DbPassw0rd-x1" in stored["backend-store-uri"]
    for doc in docs:
        if doc["kind"] == "Secret":
            continue
        text = json.dumps(doc)
        for secret in secrets + [base64.b64encode(s.encode()).decode() for s in secrets]:
            assert secret not in text, f"{doc['kind']}/{doc['metadata'].get('name')} carries a credential"
    workflow = next(d for d in docs if d["kind"] == "Workflow")
    refs = [e for t in workflow["spec"]["templates"] for e in (t.get("container") or {}).get("env", [])
            if "valueFrom" in e]
    assert refs and all("secretKeyRef" in e["valueFrom"] or "configMapKeyRef" in e["valueFrom"] for e in refs)
    assert os.environ.get("MLFLOW_TRACKING_URI") != tracking_uri  # the test process itself was never changed


def test_docker_steps_get_credentials_as_environment_only(docker_project: Any, docker_client: Any,
                                                          server: tuple[str, Path]) -> None:  # noqa: F811
    """The docker backend: the container gets the URI split into environment variables; the step
    notebook, the run store, the server's store and every byte of the step images hold no secret."""
    tracking_uri, server_folder = server
    docker_project.edit_cell(
        "diamond", "%%executor train",
        "%%executor train --inputs features labels stats --outputs model\nimport os\nimport mlflow\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "model = LogisticRegression(max_iter=200).fit(features, labels)\n"
        "mlflow.log_metric('accuracy', float(model.score(features, labels)))\n"
        "print('credentials as env:', os.environ.get('MLFLOW_TRACKING_USERNAME'),\n"
        "      bool(os.environ.get('MLFLOW_TRACKING_PASSWORD')), os.environ.get('MLFLOW_TRACKING_URI'))\n"
        "print('token:', os.environ.get('API_TOKEN'))")
    env = _env(docker_project, tracking_uri)
    env["SCANFLOW_DOCKER_ENV"] = "API_TOKEN"
    secrets = secret_values({"MLFLOW_TRACKING_URI": tracking_uri, "API_TOKEN": TOKEN})
    proc = subprocess.run([*scanflow_command(), "run", "diamond.ipynb", "--backend", "docker", "--json"],
                          cwd=docker_project.root, env=env, capture_output=True, text=True, timeout=1800,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    doc = json.loads(proc.stdout)
    run_dir = Path(doc["run_dir"])
    plain = tracking_uri.replace(f"{USER}:{PASSWORD}@", "")
    log = (run_dir / "train" / "log.txt").read_text()
    assert f"credentials as env: {USER} True {plain}" in log and "token: ***" in log
    assert redact_uri(tracking_uri) in (run_dir / "train" / "input.ipynb").read_text()

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name("diamond")
    assert experiment is not None
    tracked = client.search_runs([experiment.experiment_id], f"tags.`scanflow.run_id` = '{doc['run_id']}'")
    assert any("accuracy" in r.data.metrics for r in tracked), "the container could not track"

    assert files_containing(docker_project.root, secrets) == []
    assert files_containing(server_folder, secrets) == []
    assert not any(s in proc.stdout + proc.stderr for s in secrets)
    started = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    images = sorted({e["data"]["image"] for e in started if e["type"] == "step_started"})
    assert len(images) == 4
    try:
        assert _image_bytes_containing(docker_client, images, secrets) == []
    finally:  # the train image holds this test's step code: one-off
        for image in images:
            if "/diamond-train:" in image:
                docker_client.images.remove(image, force=True)


def _image_bytes_containing(client: Any, images: list[str], secrets: list[str]) -> list[str]:
    """`image: secret` for each secret found anywhere in `docker save IMAGE` (layers are plain tars)."""
    wanted = [s.encode() for s in secrets]
    overlap = max(len(s) for s in wanted)
    found = []
    for ref in images:
        tail = b""
        for chunk in client.images.get(ref).save(named=True):
            window = tail + chunk
            found += [f"{ref}: {s.decode()}" for s in wanted if s in window]
            tail = window[-overlap:]
    return sorted(set(found))
