"""`scanflow deploy --storage ephemeral` on the real test node (issue #10): no volume at all, the
S3 server answers with the keys deploy generated (and refuses others), the bucket `scanflow`
exists from the start, a re-deploy keeps the keys, and the tracker stores runs on its emptyDir.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scanflow_jupyter.kubernetes import environment as env
from scanflow_jupyter.kubernetes import manifests as mf
from scanflow_jupyter.kubernetes.client import Cluster
from scanflow_jupyter.kubernetes.config import DeployConfig
from scanflow_jupyter.notebook.parser import parse_notebook
from tests.integration.k8s_environment import cli, cluster_images, port_forward, s3_list
from tests.k8s.fixture import k8s_cluster  # noqa: F401

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DIAMOND = ROOT / "notebooks" / "diamond.ipynb"  # no agents, no services: the data plane only


@pytest.fixture(scope="module")
def eph_env(k8s_cluster: Any) -> Iterator[dict[str, Any]]:  # noqa: F811
    images = cluster_images(k8s_cluster)
    cluster = Cluster(kubeconfig=str(k8s_cluster.kubeconfig))
    team = f"eph-{uuid.uuid4().hex[:6]}"
    app = parse_notebook(DIAMOND)
    config = DeployConfig(kubeconfig=str(k8s_cluster.kubeconfig), team=team, storage_mode="ephemeral", **images)
    state = {"k8s": k8s_cluster, "cluster": cluster, "team": team, "images": images,
             "ns": mf.namespace_name(app, config)}
    try:
        state["deploy"] = cli(k8s_cluster, "deploy", str(DIAMOND), "--team", team, "--storage", "ephemeral",
                              "--wait", "240", "--json", images=images)
        yield state
    finally:
        env.undeploy(app, config, cluster=cluster, wait=120)
        cluster.close()


def keys(state: dict[str, Any]) -> dict[str, str]:
    data = state["cluster"].get("Secret", "v1", mf.SECRET, state["ns"])["data"]
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def test_ready_without_any_volume(eph_env: dict[str, Any]) -> None:
    proc = eph_env["deploy"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["ready"] is True, doc
    assert eph_env["cluster"].list("PersistentVolumeClaim", "v1", eph_env["ns"], "") == []
    names = {p["metadata"]["labels"]["app.kubernetes.io/name"]
             for p in eph_env["cluster"].list("Pod", "v1", eph_env["ns"], f"{mf.LABEL_TEAM}={eph_env['team']}")}
    assert names == {mf.TRACKER, mf.S3}
    cm = eph_env["cluster"].get("ConfigMap", "v1", mf.ENV_CONFIGMAP, eph_env["ns"])["data"]
    assert cm["SCANFLOW_RUN_STORE"] == "s3://scanflow/runs"
    assert cm["SCANFLOW_S3_ENDPOINT_URL"] == f"http://scanflow-s3.{eph_env['ns']}.svc:9000"


def test_the_bucket_answers_the_generated_keys_only(eph_env: dict[str, Any]) -> None:
    secret = keys(eph_env)
    access, key = secret["aws-access-key-id"], secret["aws-secret-access-key"]
    assert len(access) >= 32 and len(key) >= 32
    with port_forward(eph_env["k8s"], eph_env["ns"], mf.S3, 9000) as s3:
        assert s3_list(s3, "scanflow", "", access, key) == []  # the bucket exists, empty
        with pytest.raises(urllib.error.HTTPError) as refused:
            s3_list(s3, "scanflow", "", access, key + "x")
        assert refused.value.code == 403


def test_redeploy_keeps_the_generated_keys(eph_env: dict[str, Any]) -> None:
    before = keys(eph_env)
    proc = cli(eph_env["k8s"], "deploy", str(DIAMOND), "--team", eph_env["team"], "--storage", "ephemeral", "--json",
               images=eph_env["images"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["counts"] == {"unchanged": len(doc["objects"])}, doc
    assert keys(eph_env) == before
    assert before["aws-secret-access-key"] not in proc.stdout + proc.stderr


def test_tracker_stores_runs(eph_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    with port_forward(eph_env["k8s"], eph_env["ns"], mf.TRACKER, 5000) as url:
        client = MlflowClient(tracking_uri=url)
        run = client.create_run(client.create_experiment(f"eph-{uuid.uuid4().hex[:6]}"))
        client.log_metric(run.info.run_id, "loss", 0.25)
        (tmp_path / "notes.txt").write_text("kept on the emptyDir", encoding="utf-8")
        client.log_artifact(run.info.run_id, str(tmp_path / "notes.txt"))
        assert client.get_run(run.info.run_id).data.metrics == {"loss": 0.25}
        local = client.download_artifacts(run.info.run_id, "notes.txt", str(tmp_path / "back"))
        assert Path(local).read_text(encoding="utf-8") == "kept on the emptyDir"
