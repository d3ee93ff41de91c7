"""A `%%service --model models:/clf@champion` on the test cluster's real node (issue #12 item 4).

The service image is built here (`scanflow build --step clf`, scikit-learn and skops — MLflow 3 saves sklearn models with skops — from the notebook's
`%%setup`) and pushed to the cluster's registry; a team environment (`ephemeral` storage) is
deployed in a namespace of its own; two sklearn models are registered in the environment's tracker
through a port-forward; then the full app is deployed and the service pods (`python -m
scanflow_jupyter.services.server`) load `clf@champion` from that tracker. Through a port-forward
to the Service: `/health`, `/predict` with `dataframe_split`, then the alias moves to version 2 while
a client loop keeps predicting — `/metadata` shows version 2 and not one request failed — and the
inference log's parts are in the environment's object store. Undeployed at the end.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from scanflow_jupyter.kubernetes import environment as env
from scanflow_jupyter.kubernetes import manifests as mf
from scanflow_jupyter.kubernetes.client import Cluster
from scanflow_jupyter.kubernetes.config import DeployConfig, images_from_build_report
from scanflow_jupyter.notebook.parser import parse_notebook
from tests.conftest import notebook_dict, scanflow_command
from tests.integration.k8s_environment import (
    cluster_images,
    port_forward,
    s3_list,
    unavailable,
    wait_for,
)
from tests.k8s.fixture import k8s_cluster  # noqa: F401
from tests.services_support import Http, mlflow_globals_restored, register_models, set_alias

pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]

FRAME = {"columns": ["f1", "f2"], "data": [[2.0, 0.0], [-2.0, 0.0]]}
V1, V2 = [1, 0], [0, 1]  # version 1 predicts f1 > 0, version 2 the opposite (services_support)
CELLS = ["%%setup\nimport pandas\nimport skops\nimport sklearn", "%%service clf --model models:/clf@champion"]


def _build(k8s: Any, work: Path) -> dict[str, str]:
    """The service image, built from the offline Debian base and pushed to the cluster's registry."""
    from scanflow_jupyter.build.base import ensure_base_image
    from scanflow_jupyter.build.builder import EngineUnavailable, docker_client

    try:
        base, _built, _seconds = ensure_base_image(docker_client())
    except EngineUnavailable as exc:
        unavailable(f"the service image needs the Docker Engine: {exc}")
    proc = subprocess.run([*scanflow_command(), "build", "serving_k8s.ipynb", "--step", "clf", "--base", base,
                           "--push", k8s.registry, "--json"], capture_output=True, text=True, timeout=1800, cwd=work,
                          env={**os.environ, "SCANFLOW_HOME": str(work / ".scanflow")})
    assert proc.returncode == 0, f"scanflow build failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return images_from_build_report(json.loads(proc.stdout))


@pytest.fixture(scope="module")
def served(k8s_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:  # noqa: F811
    work = tmp_path_factory.mktemp("k8s-services")
    nb = work / "serving_k8s.ipynb"
    nb.write_text(json.dumps(notebook_dict(CELLS), indent=1) + "\n", encoding="utf-8")
    images = {**cluster_images(k8s_cluster)}
    service_images = _build(k8s_cluster, work)
    app = parse_notebook(nb)
    team = f"svc-{uuid.uuid4().hex[:6]}"
    config = DeployConfig(kubeconfig=str(k8s_cluster.kubeconfig), team=team, storage_mode="ephemeral",
                          images=service_images, **images)
    cluster = Cluster(kubeconfig=str(k8s_cluster.kubeconfig))
    ns = mf.namespace_name(app, config)
    state: dict[str, Any] = {"k8s": k8s_cluster, "cluster": cluster, "ns": ns, "app": app, "config": config}
    try:
        # the environment without the service first: the model must be in its tracker before a pod loads it
        bare = replace(app, services=[])
        env.deploy(bare, config, cluster=cluster)
        ready = env.wait_ready(bare, config, cluster, timeout=300)
        assert ready.ready, f"the environment did not become ready: {ready}"
        with port_forward(k8s_cluster, ns, mf.TRACKER, 5000) as tracker:
            state["versions"] = _register(tracker)
        env.deploy(app, config, cluster=cluster)
        ready = env.wait_ready(app, config, cluster, timeout=600)
        assert ready.ready, f"the service did not become ready: {ready}\n{_logs(k8s_cluster, ns)}"
        yield state
    finally:
        env.undeploy(app, config, cluster=cluster, wait=180)
        cluster.close()
        shutil.rmtree(work, ignore_errors=True)


def _register(tracker: str) -> list[str]:
    """Two versions of `clf` in the environment's tracker, `champion` on the first; MLflow's global URIs
    and the variables they export put back (this runs in a module fixture, before the per-test reset)."""
    proxied = ("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD")
    with mlflow_globals_restored(proxied):
        # an MLflow 3 client outside the cluster must not use presigned URLs naming scanflow-s3 (README)
        os.environ.update(MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD="false", MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD="false")
        versions = register_models(tracker, "clf", versions=2)
        set_alias(tracker, "clf", "champion", versions[0])
        return versions


def _logs(k8s: Any, ns: str) -> str:
    proc = subprocess.run([str(k8s.bin_dir / "kubectl"), "--kubeconfig", str(k8s.kubeconfig), "-n", ns, "logs",
                           "deploy/clf", "--tail", "40"], capture_output=True, text=True, timeout=60)
    return proc.stdout + proc.stderr


def test_the_service_pod_serves_the_champion_and_swaps_without_failed_requests(served: dict[str, Any]) -> None:
    k8s, ns = served["k8s"], served["ns"]
    v1, v2 = served["versions"]
    with port_forward(k8s, ns, "clf", 8080) as url:
        http = Http(url)
        assert wait_for(lambda: http.get("/health")[0] == 200, "GET /health 200", timeout=120)
        status, doc = http.post("/predict", {"dataframe_split": FRAME})
        assert (status, doc) == (200, {"predictions": V1}), doc
        assert http.post("/predict", {"dataframe_split": {"columns": ["f1"], "data": "x"}})[0] in (400, 422)
        assert http.get("/metadata")[1]["version"] == v1

        answers: list[Any] = []
        stop = threading.Event()

        def loop() -> None:
            client = Http(url)
            while not stop.is_set():
                status, doc = client.post("/predict", {"dataframe_split": FRAME}, timeout=30)
                answers.append((status, doc.get("predictions") if isinstance(doc, dict) else doc))

        worker = threading.Thread(target=loop, daemon=True)
        worker.start()
        try:
            with port_forward(k8s, ns, mf.TRACKER, 5000) as tracker:
                set_alias(tracker, "clf", "champion", v2)
            wait_for(lambda: http.get("/metadata")[1].get("version") == v2, "the pod serving version 2", timeout=120)
            count = len(answers)
            wait_for(lambda: len(answers) > count + 5, "answers after the swap", timeout=60)
        finally:
            stop.set()
            worker.join(60)
        failed = [a for a in answers if a[0] != 200]
        assert not failed, f"{len(failed)} of {len(answers)} requests failed during the swap: {failed[:3]}"
        assert {tuple(p) for _, p in answers} <= {tuple(V1), tuple(V2)}
        assert answers[-1][1] == V2 and answers[0][1] == V1

    secret = served["cluster"].get("Secret", "v1", mf.SECRET, ns)["data"]
    access, key = (base64.b64decode(secret[k]).decode() for k in ("aws-access-key-id", "aws-secret-access-key"))
    with port_forward(k8s, ns, mf.S3, 9000) as s3:
        parts = wait_for(lambda: s3_list(s3, "scanflow", "services/clf/", access, key),
                         "inference log parts in s3://scanflow/services/clf/", timeout=60)
    assert all(p.startswith("services/clf/part-") and p.endswith(".parquet") for p in parts), parts
