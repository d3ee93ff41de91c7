"""`scanflow deploy|undeploy|status` against the test cluster's real node (tests/k8s).

Each test deploys under its own team name, so namespaces never collide. The environment's pods
run for real: the tracker and S3 server from the images `cluster.sh build` pushed to the local
registry, the agents from images `scanflow build --push` makes (tests/integration/k8s_environment.py),
on static hostPath volumes (the cluster has no provisioner). Only the online services of
test_online_services_scale_with_their_autoscaler have no image of their own (no model is
registered here): tests/k8s/manifests/kwok-pool.yaml places those pods on the kwok pool.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scanflow_jupyter.kubernetes import environment as env
from scanflow_jupyter.kubernetes import manifests as mf
from scanflow_jupyter.kubernetes.client import Cluster
from scanflow_jupyter.kubernetes.config import DeployConfig, images_from_build_report
from scanflow_jupyter.kubernetes.validation import ManifestInvalid
from scanflow_jupyter.notebook.parser import parse_notebook
from tests.integration.k8s_environment import HostPathVolumes, agent_images, cluster_images
from tests.k8s.fixture import k8s_cluster  # noqa: F401

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
AGENTS_LOOP = ROOT / "notebooks" / "agents_loop.ipynb"
READY_TIMEOUT = 240.0
# for tests that need no running tracker (RBAC, leak checks): not local, so its pod goes to the kwok pool
TRACKER_IMAGE = "ghcr.io/mlflow/mlflow:v3.1.0"
NAMESPACED_KINDS = [*env.OWNED_KINDS, ("v1", "Pod"), ("discovery.k8s.io/v1", "EndpointSlice")]


def unique_team(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def storage_for(cluster: Cluster, team: str) -> HostPathVolumes:
    """Static hostPath volumes for the sqlite environment's claims (tracker + S3 server)."""
    return HostPathVolumes(cluster, team, 2)


def make_config(k8s: Any, team: str, storage_class: str | None = None, **kw: Any) -> DeployConfig:
    return DeployConfig(kubeconfig=str(k8s.kubeconfig), team=team, storage_class=storage_class,
                        **{**cluster_images(k8s), **kw})


def image_env(k8s: Any) -> dict[str, str]:
    """The SCANFLOW_K8S_*_IMAGE variables of the cluster's environment images (what the CLI reads)."""
    images = cluster_images(k8s)
    return {"SCANFLOW_K8S_TRACKER_IMAGE": images["tracker_image"], "SCANFLOW_K8S_S3_IMAGE": images["s3_image"],
            "SCANFLOW_K8S_POSTGRES_IMAGE": images["postgres_image"]}


def scanflow(*args: str, kubeconfig: Path, **extra_env: str) -> subprocess.CompletedProcess[str]:
    """The real CLI (`scanflow deploy|undeploy|status`)."""
    code = ("from scanflow_jupyter.cli import main; main()")
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("SCANFLOW_", "KUBECONFIG"))}
    environ["KUBECONFIG"] = str(kubeconfig)
    environ.update(extra_env)
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300,
                          env=environ, cwd=ROOT)


def leftovers(cluster: Cluster, ns: str, app: str, team: str) -> list[str]:
    selector = f"{mf.LABEL_APP}={app},{mf.LABEL_TEAM}={team}"
    found = []
    for api_version, kind in NAMESPACED_KINDS:
        found += [f"{kind}/{i['metadata']['name']}" for i in cluster.list(kind, api_version, ns, selector)
                  if not i["metadata"].get("deletionTimestamp")]
    return found


# --- one environment through its whole life --------------------------------------------------------


@pytest.fixture(scope="module")
def deployed(k8s_cluster, tmp_path_factory) -> Iterator[dict[str, Any]]:  # noqa: F811
    images_file = agent_images(k8s_cluster, tmp_path_factory.mktemp("agents-build"))
    cluster = Cluster(kubeconfig=str(k8s_cluster.kubeconfig))
    team = unique_team("life")
    volumes = storage_for(cluster, team)
    app = parse_notebook(AGENTS_LOOP)
    config = make_config(k8s_cluster, team, volumes.storage_class,
                         images=images_from_build_report(json.loads(images_file.read_text(encoding="utf-8"))))
    state = {"cluster": cluster, "app": app, "config": config, "team": team, "k8s": k8s_cluster,
             "ns": mf.namespace_name(app, config), "images_file": images_file}
    try:
        state["first"] = env.deploy(app, config, cluster=cluster)
        yield state
    finally:
        env.undeploy(app, config, cluster=cluster, wait=120)
        volumes.close()
        cluster.close()


def test_first_deploy_creates_every_object(deployed):
    outcome = deployed["first"]
    expected = [(m["kind"], m["metadata"]["name"]) for m in env.plan(deployed["app"], deployed["config"])]
    assert [(o.kind, o.name) for o in outcome.objects] == expected
    assert {o.action for o in outcome.objects} == {"created"}, outcome.to_dict()
    assert outcome.namespace == f"scanflow-agents-loop-{deployed['team']}"


def test_environment_becomes_ready(deployed):
    status = env.wait_ready(deployed["app"], deployed["config"], deployed["cluster"], timeout=READY_TIMEOUT)
    not_ready = [o.to_dict() for o in status.objects if not o.ready]
    assert status.ready, f"not ready after {READY_TIMEOUT} s: {not_ready}"
    deployments = [o for o in status.objects if o.kind == "Deployment"]
    assert {o.name for o in deployments} == {mf.TRACKER, mf.S3, "monitor", "planner"}
    for d in deployments:
        obj = deployed["cluster"].get("Deployment", "apps/v1", d.name, deployed["ns"])
        conditions = {c["type"]: c["status"] for c in obj["status"]["conditions"]}
        assert conditions.get("Available") == "True", (d.name, obj["status"])


def test_status_cli_shows_readiness(deployed):
    env.wait_ready(deployed["app"], deployed["config"], deployed["cluster"], timeout=READY_TIMEOUT)
    proc = scanflow("status", str(AGENTS_LOOP), "--team", deployed["team"], "--json",
                    kubeconfig=deployed["k8s"].kubeconfig, **image_env(deployed["k8s"]))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ready"] and doc["namespace"] == deployed["ns"]
    monitor = next(o for o in doc["objects"] if o["kind"] == "Deployment" and o["name"] == "monitor")
    assert monitor["ready"] and monitor["detail"].startswith("1/1 ready")
    text = scanflow("status", str(AGENTS_LOOP), "--team", deployed["team"], kubeconfig=deployed["k8s"].kubeconfig,
                    **image_env(deployed["k8s"]))
    assert text.returncode == 0 and f"namespace {deployed['ns']}: ready" in text.stdout


def test_agent_services_have_cluster_ips_endpoints_and_dns_names(deployed):
    cluster, ns = deployed["cluster"], deployed["ns"]
    env.wait_ready(deployed["app"], deployed["config"], cluster, timeout=READY_TIMEOUT)
    cm = cluster.get("ConfigMap", "v1", mf.ENV_CONFIGMAP, ns)
    urls = json.loads(cm["data"]["SCANFLOW_AGENT_URLS"])
    assert cm["data"]["MLFLOW_TRACKING_URI"] == f"http://scanflow-tracker.{ns}.svc:5000"
    for agent in ("monitor", "planner"):
        assert urls[agent] == f"http://{agent}.{ns}.svc:8080"
        svc = cluster.get("Service", "v1", agent, ns)
        assert svc["spec"]["clusterIP"] not in (None, "", "None")
        slices = cluster.list("EndpointSlice", "discovery.k8s.io/v1", ns, f"kubernetes.io/service-name={agent}")
        addresses = [a for s in slices for e in s.get("endpoints") or [] for a in e.get("addresses", [])]
        assert addresses, f"service {agent} has no endpoints: {slices}"


def test_second_deploy_changes_nothing(deployed):
    env.wait_ready(deployed["app"], deployed["config"], deployed["cluster"], timeout=READY_TIMEOUT)
    proc = scanflow("deploy", str(AGENTS_LOOP), "--team", deployed["team"], "--json",
                    "--images", str(deployed["images_file"]), kubeconfig=deployed["k8s"].kubeconfig,
                    SCANFLOW_K8S_STORAGE_CLASS=deployed["config"].storage_class, **image_env(deployed["k8s"]))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["counts"] == {"unchanged": len(deployed["first"].objects)}, doc


def test_undeploy_leaves_nothing_behind(deployed):
    cluster, ns = deployed["cluster"], deployed["ns"]
    app, team = "agents-loop", deployed["team"]
    assert leftovers(cluster, ns, app, team)
    proc = scanflow("undeploy", str(AGENTS_LOOP), "--team", team, "--json", "--wait", "180",
                    kubeconfig=deployed["k8s"].kubeconfig)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    deleted = {(o["kind"], o["name"]) for o in doc["objects"] if o["action"] == "deleted"}
    assert ("Namespace", ns) in deleted and ("Deployment", "monitor") in deleted and ("Role", mf.ROLE) in deleted
    assert leftovers(cluster, ns, app, team) == []
    namespace = cluster.get("Namespace", "v1", ns)
    assert namespace is None or namespace["status"].get("phase") == "Terminating"
    again = scanflow("undeploy", str(AGENTS_LOOP), "--team", team, "--json", kubeconfig=deployed["k8s"].kubeconfig)
    assert again.returncode == 0
    assert {o["action"] for o in json.loads(again.stdout)["objects"]} <= {"absent", "deleted"}


# --- refusals ---------------------------------------------------------------------------------------


def test_invalid_manifest_is_refused_before_anything_is_applied(k8s_cluster, tmp_path):  # noqa: F811
    cluster = Cluster(kubeconfig=str(k8s_cluster.kubeconfig))
    app = parse_notebook(AGENTS_LOOP)
    # a bad quantity in the settings: refused, and not even the namespace exists afterwards
    team = unique_team("badq")
    config = make_config(k8s_cluster, team)
    config.agent_resources.memory_limit = "2GB"
    with pytest.raises(ManifestInvalid) as info:
        env.deploy(app, config, cluster=cluster)
    problem = info.value.problems[0]
    assert problem.object.startswith("Deployment/monitor")
    assert problem.field == "spec.template.spec.containers[0].resources.limits.memory"
    assert cluster.get("Namespace", "v1", mf.namespace_name(app, config)) is None
    # a name too long for a namespace, through the CLI: exit 2, object + field named, nothing applied
    long_team = "t" * 50
    proc = scanflow("deploy", str(AGENTS_LOOP), "--team", long_team, "--json", kubeconfig=k8s_cluster.kubeconfig)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert any(p["object"].startswith("Namespace/scanflow-agents-loop-ttt") and p["field"] == "metadata.name"
               for p in doc["problems"])
    assert cluster.get("Namespace", "v1", f"scanflow-agents-loop-{long_team}") is None
    cluster.close()


def test_server_errors_name_object_and_field(k8s_cluster):  # noqa: F811
    cluster = Cluster(kubeconfig=str(k8s_cluster.kubeconfig))
    app = parse_notebook(AGENTS_LOOP)
    team = unique_team("apierr")
    config = make_config(k8s_cluster, team)
    try:
        # a value the schema accepts but the API server refuses
        manifests = env.plan(app, config)
        svc = next(m for m in manifests if m["kind"] == "Service" and m["metadata"]["name"] == "monitor")
        svc["spec"]["ports"][0]["port"] = 70000
        with pytest.raises(env.ApplyFailed) as info:
            env.apply_manifests(manifests, cluster, app=app.name, team=team)
        err = info.value
        assert err.object.startswith("Service/monitor") and err.field == "spec.ports[0].port", str(err)
        assert "65535" in str(err) and "Fix:" in str(err)
        assert [o.action for o in err.outcome.objects if o.kind == "Namespace"] == ["created"]
        # an immutable field changed on an existing object
        env.deploy(app, config, cluster=cluster)
        manifests = env.plan(app, config)
        dep = next(m for m in manifests if m["kind"] == "Deployment" and m["metadata"]["name"] == "monitor")
        dep["spec"]["selector"]["matchLabels"]["extra"] = "x"
        dep["spec"]["template"]["metadata"]["labels"]["extra"] = "x"
        with pytest.raises(env.ApplyFailed) as info:
            env.apply_manifests(manifests, cluster, app=app.name, team=team)
        assert info.value.object.startswith("Deployment/monitor")
        assert info.value.field == "spec.selector" and "immutable" in str(info.value), str(info.value)
    finally:
        env.undeploy(app, config, cluster=cluster)
        cluster.close()


def test_unreachable_cluster_is_exit_1(tmp_path):
    config = tmp_path / "kubeconfig"
    config.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "nowhere",
        "clusters": [{"name": "nowhere", "cluster": {"server": "https://127.0.0.1:9"}}],
        "contexts": [{"name": "nowhere", "context": {"cluster": "nowhere", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "x"}}]}))
    proc = scanflow("deploy", str(AGENTS_LOOP), "--team", "nowhere", kubeconfig=config)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "does not answer" in proc.stderr and "Fix:" in proc.stderr


def test_online_services_scale_with_their_autoscaler(k8s_cluster):  # noqa: F811
    cluster = Cluster(kubeconfig=str(k8s_cluster.kubeconfig))
    team = unique_team("hpa")
    volumes = storage_for(cluster, team)
    app = parse_notebook(ROOT / "tests" / "golden" / "k8s" / "services.ipynb")
    config = make_config(k8s_cluster, team, volumes.storage_class)
    ns = mf.namespace_name(app, config)
    try:
        env.deploy(app, config, cluster=cluster)
        # the autoscaler (minReplicas 2), not the Deployment, owns the replica count of `scorer`
        deadline = time.monotonic() + READY_TIMEOUT
        while cluster.get("Deployment", "apps/v1", "scorer", ns)["spec"].get("replicas") != 2:
            assert time.monotonic() < deadline, "the autoscaler did not scale `scorer` to minReplicas 2"
            time.sleep(1)
        status = env.wait_ready(app, config, cluster, timeout=READY_TIMEOUT)
        assert status.ready, [o.to_dict() for o in status.objects if not o.ready]
        scorer = next(o for o in status.objects if o.kind == "Deployment" and o.name == "scorer")
        assert scorer.detail.startswith("2/2 ready")
        hpa = cluster.get("HorizontalPodAutoscaler", "autoscaling/v2", "scorer", ns)
        assert hpa["spec"]["minReplicas"] == 2 and hpa["spec"]["maxReplicas"] == 6
        assert cluster.get("Service", "v1", "custom-api", ns)["spec"]["clusterIP"]
        # a re-deploy does not fight the autoscaler: nothing changes, still 2 replicas
        again = env.deploy(app, config, cluster=cluster)
        assert again.counts() == {"unchanged": len(again.objects)}, again.to_dict()
        assert cluster.get("Deployment", "apps/v1", "scorer", ns)["spec"]["replicas"] == 2
    finally:
        env.undeploy(app, config, cluster=cluster, wait=120)
        volumes.close()
        cluster.close()


def test_existing_namespace_is_used_but_never_deleted(k8s_cluster):  # noqa: F811
    cluster = Cluster(kubeconfig=str(k8s_cluster.kubeconfig))
    app = parse_notebook(AGENTS_LOOP)
    ns = unique_team("theirs")
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    other = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "not-ours", "namespace": ns},
             "data": {"k": "v"}}
    cluster.apply(other)
    config = make_config(k8s_cluster, "guest", namespace=ns)
    try:
        outcome = env.deploy(app, config, cluster=cluster)
        assert outcome.objects[0].to_dict() == {"kind": "Namespace", "name": ns, "namespace": None, "action": "kept"}
        assert "scanflow.io/app" not in (cluster.get("Namespace", "v1", ns)["metadata"].get("labels") or {})
        assert cluster.get("Deployment", "apps/v1", "monitor", ns) is not None
        gone = env.undeploy(app, config, cluster=cluster)
        assert ("Namespace", "kept") in {(o.kind, o.action) for o in gone.objects}
        assert leftovers(cluster, ns, "agents-loop", "guest") == []
        assert cluster.get("Namespace", "v1", ns)["status"]["phase"] == "Active"
        assert cluster.get("ConfigMap", "v1", "not-ours", ns) is not None
    finally:
        cluster.delete("Namespace", "v1", ns)
        cluster.close()


def test_dry_run_reports_but_changes_nothing(k8s_cluster):  # noqa: F811
    cluster = Cluster(kubeconfig=str(k8s_cluster.kubeconfig))
    app = parse_notebook(AGENTS_LOOP)
    team = unique_team("dry")
    config = make_config(k8s_cluster, team)
    ns = mf.namespace_name(app, config)
    try:
        first = env.deploy(app, config, cluster=cluster, dry_run=True)
        assert first.dry_run and set(first.counts()) == {"created"}
        assert cluster.get("Namespace", "v1", ns) is None
        env.deploy(app, config, cluster=cluster)
        changed = make_config(k8s_cluster, team, registry="registry.example:5000")
        preview = env.deploy(app, changed, cluster=cluster, dry_run=True)
        actions = {(o.kind, o.name): o.action for o in preview.objects}
        assert actions[("Deployment", "monitor")] == "configured" and actions[("Service", "monitor")] == "unchanged"
        image = cluster.get("Deployment", "apps/v1", "monitor", ns)["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image == "scanflow/agents-loop-monitor:latest"
    finally:
        env.undeploy(app, config, cluster=cluster)
        cluster.close()
