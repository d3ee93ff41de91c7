"""Pod Security `restricted`, the agent token and the NetworkPolicy, judged by a real API server.

The tutorial's environment (tracker + online service) and the agents example are deployed into
their team namespaces, which `deploy` labels to enforce `restricted`. The API server's PodSecurity
admission then decides: every Deployment's pod template, created as a Pod with `dryRun=All`, is
admitted; a privileged pod (and a template stripped of its securityContext) is refused by the same
namespace; the Deployments' real pods exist; the tutorial pipeline submitted as an Argo Workflow
gets its pods (Argo's `init`/`wait` containers included) admitted and finishes. kwok plays the
node, so no container runs: admission is what is tested here, not the images.
"""

from __future__ import annotations

import base64
import copy
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from scanflow_jupyter.kubernetes import environment as env
from scanflow_jupyter.kubernetes import manifests as mf
from scanflow_jupyter.kubernetes.client import Cluster, ClusterError, object_path
from scanflow_jupyter.kubernetes.workflow import WorkflowOptions, compile_workflow
from scanflow_jupyter.notebook.parser import parse_notebook
from scanflow_jupyter.runtime.runner import load_application
from tests.integration.test_k8s_deploy import (
    AGENTS_LOOP,
    READY_TIMEOUT,
    make_config,
    scanflow,
    storage_for,
)
from tests.k8s.fixture import k8s_cluster  # noqa: F401

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "tutorials" / "mnist" / "mnist.ipynb"
PLACEHOLDER_IMAGE = "scanflow/kwok-placeholder:never-pulled"  # kwok runs no containers
WORKFLOW_TIMEOUT = 180.0


@pytest.fixture(scope="module")
def envs(k8s_cluster) -> Iterator[dict[str, Any]]:  # noqa: F811
    """The tutorial's and the agents example's environments, each in its own restricted namespace."""
    cluster = Cluster(kubeconfig=str(k8s_cluster.kubeconfig))
    deployed: dict[str, Any] = {"cluster": cluster, "k8s": k8s_cluster, "envs": {}}
    volumes = []
    try:
        for key, notebook in (("tutorial", TUTORIAL), ("agents", AGENTS_LOOP)):
            team = f"psa-{key[:3]}-{uuid.uuid4().hex[:6]}"
            pvs = storage_for(cluster, team)  # static hostPath volumes (tracker + S3 server claims)
            volumes.append(pvs)
            klass = pvs.storage_class
            app = parse_notebook(notebook)
            config = make_config(k8s_cluster, team, klass)
            outcome = env.deploy(app, config, cluster=cluster)
            deployed["envs"][key] = {"app": app, "config": config, "team": team, "notebook": notebook,
                                     "ns": mf.namespace_name(app, config), "outcome": outcome}
        yield deployed
    finally:
        for e in deployed["envs"].values():
            env.undeploy(e["app"], e["config"], cluster=cluster)
        for pvs in volumes:
            pvs.close()
        cluster.close()


def dry_run_pod(cluster: Cluster, ns: str, name: str, spec: dict[str, Any],
                labels: dict[str, str] | None = None) -> dict[str, Any]:
    """Create a Pod with server-side `dryRun=All`: every admission plugin judges it, nothing is stored."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
           "spec": spec}
    return cluster.request("POST", object_path("Pod", "v1", None, ns), body=pod, query=[("dryRun", "All")],
                           obj=f"Pod/{name}", action="creating")[1]


def deployments(e: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in env.plan(e["app"], e["config"]) if m["kind"] == "Deployment"]


def agent_token(cluster: Cluster, ns: str) -> str:
    secret = cluster.get("Secret", "v1", mf.AGENT_TOKEN_SECRET, ns)
    assert secret is not None, f"no Secret {mf.AGENT_TOKEN_SECRET} in {ns}"
    return base64.b64decode(secret["data"][mf.AGENT_TOKEN_KEY]).decode()


# --- the namespace --------------------------------------------------------------------------------


def test_team_namespaces_enforce_restricted(envs):
    for e in envs["envs"].values():
        labels = envs["cluster"].get("Namespace", "v1", e["ns"])["metadata"]["labels"]
        for mode in ("enforce", "warn", "audit"):
            assert labels.get(f"pod-security.kubernetes.io/{mode}") == "restricted", (e["ns"], labels)
            assert labels.get(f"pod-security.kubernetes.io/{mode}-version") == "latest", (e["ns"], labels)


def test_a_privileged_pod_is_refused_by_the_same_namespace(envs):
    # the negative control: without it, "admitted" below could mean "nothing is enforced"
    cluster, ns = envs["cluster"], envs["envs"]["tutorial"]["ns"]
    spec = {"containers": [{"name": "evil", "image": PLACEHOLDER_IMAGE, "securityContext": {"privileged": True}}],
            "hostNetwork": True, "volumes": [{"name": "root", "hostPath": {"path": "/"}}]}
    with pytest.raises(ClusterError) as info:
        dry_run_pod(cluster, ns, "privileged", spec)
    assert info.value.status == 403 and "violates PodSecurity" in str(info.value), str(info.value)


# --- every pod Scanflow makes ---------------------------------------------------------------------


def test_every_deployment_pod_template_is_admitted(envs):
    cluster = envs["cluster"]
    seen = []
    for key, e in envs["envs"].items():
        for d in deployments(e):
            template = d["spec"]["template"]
            created = dry_run_pod(cluster, e["ns"], f"dry-{d['metadata']['name']}", template["spec"],
                                  template["metadata"]["labels"])
            assert created["metadata"]["namespace"] == e["ns"]
            seen.append(f"{key}:{d['metadata']['name']}")
            # and the same template without its securityContexts is refused: they are what passes
            bare = copy.deepcopy(template["spec"])
            bare.pop("securityContext", None)
            for c in bare["containers"]:
                c.pop("securityContext", None)
            with pytest.raises(ClusterError, match="violates PodSecurity"):
                dry_run_pod(cluster, e["ns"], f"bare-{d['metadata']['name']}", bare)
    assert sorted(seen) == ["agents:monitor", "agents:planner", "agents:scanflow-s3", "agents:scanflow-tracker",
                            "tutorial:digits", "tutorial:monitor", "tutorial:planner", "tutorial:scanflow-s3",
                            "tutorial:scanflow-tracker"]  # the MNIST story's tutorial has a monitor and a planner


def test_deployments_get_their_pods_in_the_restricted_namespaces(envs):
    cluster = envs["cluster"]
    for e in envs["envs"].values():
        status = env.wait_ready(e["app"], e["config"], cluster, timeout=READY_TIMEOUT)
        not_ready = [o.to_dict() for o in status.objects if not o.ready and o.kind == "Deployment"]
        assert not not_ready, f"{e['ns']}: {not_ready}"
        for d in deployments(e):
            selector = ",".join(f"{k}={v}" for k, v in d["spec"]["selector"]["matchLabels"].items())
            pods = cluster.list("Pod", "v1", e["ns"], selector)
            assert pods, f"no pod of {mf.describe(d)}"
            assert pods[0]["spec"]["securityContext"]["runAsUser"] == mf.RUN_AS_USER


def test_the_tutorial_workflow_pods_are_admitted_and_the_workflow_finishes(envs):
    cluster, e = envs["cluster"], envs["envs"]["tutorial"]
    ns = e["ns"]
    workflow = tutorial_workflow(ns, "runs-ok")
    with run_store(cluster, ns, "runs-ok"):
        # the main container's pod, as a dry run (Argo adds its init/wait containers: next)
        main = next(t for t in workflow["spec"]["templates"] if "container" in t)
        patch = yaml.safe_load(workflow["spec"]["podSpecPatch"])
        spec = {"securityContext": workflow["spec"]["securityContext"], "volumes": workflow["spec"]["volumes"],
                "initContainers": [{**c, "image": PLACEHOLDER_IMAGE} for c in patch["initContainers"]],
                "containers": [{**main["container"], "name": "main"},
                               *({**c, "image": PLACEHOLDER_IMAGE} for c in patch["containers"])]}
        dry_run_pod(cluster, ns, "dry-step", spec)
        # the real thing: Argo's controller creates the pods in the restricted namespace
        done = submit_and_wait(cluster, workflow)
        assert done["status"]["phase"] == "Succeeded", json.dumps(done["status"], indent=1)[:3000]
        pods = cluster.list("Pod", "v1", ns, f"workflows.argoproj.io/workflow={done['metadata']['name']}")
        assert len(pods) == len(load_application(TUTORIAL)[0].executors)
        for pod in pods:
            containers = pod["spec"]["containers"] + pod["spec"].get("initContainers", [])
            assert {c["name"] for c in containers} >= {"init", "wait", "main"}
            for c in containers:
                assert c["securityContext"]["allowPrivilegeEscalation"] is False, (pod["metadata"]["name"], c["name"])


def test_a_workflow_without_the_security_contexts_is_refused(envs):
    # negative control for the test above: the same Workflow, stripped, gets no pod in this namespace
    cluster, ns = envs["cluster"], envs["envs"]["tutorial"]["ns"]
    workflow = tutorial_workflow(ns, "runs-bare")
    workflow["spec"].pop("securityContext")
    workflow["spec"].pop("podSpecPatch")
    for t in workflow["spec"]["templates"]:
        (t.get("container") or {}).pop("securityContext", None)
    with run_store(cluster, ns, "runs-bare"):
        name = workflow["metadata"]["name"]
        cluster.apply(workflow)
        deadline = time.monotonic() + WORKFLOW_TIMEOUT
        while True:
            wf = cluster.get("Workflow", "argoproj.io/v1alpha1", name, ns) or {}
            text = json.dumps(wf.get("status") or {})
            if "PodSecurity" in text or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert "violates PodSecurity" in text, text[:3000]
        assert cluster.list("Pod", "v1", ns, f"workflows.argoproj.io/workflow={name}") == []
        cluster.delete("Workflow", "argoproj.io/v1alpha1", name, ns)


def tutorial_workflow(ns: str, claim: str) -> dict[str, Any]:
    app, _ = load_application(TUTORIAL)
    run_id = f"psa-{uuid.uuid4().hex[:8]}"
    return compile_workflow(app, WorkflowOptions(images={"*": PLACEHOLDER_IMAGE}, namespace=ns, run_id=run_id,
                                                 store_claim=claim, service_account=mf.SERVICE_ACCOUNT))


class run_store:  # noqa: N801 - used as a context manager
    """A PVC named `claim` bound to its own static PV (kwok's cluster has no provisioner)."""

    def __init__(self, cluster: Cluster, ns: str, claim: str) -> None:
        self.cluster, self.ns, self.claim = cluster, ns, claim
        self.pv = f"{ns}-{claim}"[:63]

    def __enter__(self) -> run_store:
        self.cluster.apply({"apiVersion": "v1", "kind": "PersistentVolume",
                            "metadata": {"name": self.pv, "labels": {"scanflow.io/test": "k8s"}},
                            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                                     "storageClassName": "", "persistentVolumeReclaimPolicy": "Delete",
                                     "hostPath": {"path": f"/tmp/{self.pv}"}}})
        self.cluster.apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                            "metadata": {"name": self.claim, "namespace": self.ns},
                            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "", "volumeName": self.pv,
                                     "resources": {"requests": {"storage": "1Gi"}}}})
        return self

    def __exit__(self, *exc: Any) -> None:
        self.cluster.delete("PersistentVolumeClaim", "v1", self.claim, self.ns)
        self.cluster.delete("PersistentVolume", "v1", self.pv)


def submit_and_wait(cluster: Cluster, workflow: dict[str, Any]) -> dict[str, Any]:
    meta = workflow["metadata"]
    cluster.apply(workflow)
    deadline = time.monotonic() + WORKFLOW_TIMEOUT
    while True:
        wf = cluster.get("Workflow", "argoproj.io/v1alpha1", meta["name"], meta["namespace"]) or {}
        phase = (wf.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed", "Error") or time.monotonic() > deadline:
            return wf
        time.sleep(1)


# --- the agent token and the NetworkPolicy --------------------------------------------------------


def test_agent_token_secret_is_random_and_agents_read_it(envs):
    cluster, e = envs["cluster"], envs["envs"]["agents"]
    token = agent_token(cluster, e["ns"])
    assert len(token) >= 32
    for name in ("monitor", "planner"):
        d = cluster.get("Deployment", "apps/v1", name, e["ns"])
        env_vars = {v["name"]: v for v in d["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env_vars["SCANFLOW_AGENT_TOKEN"]["valueFrom"]["secretKeyRef"] == {
            "name": mf.AGENT_TOKEN_SECRET, "key": mf.AGENT_TOKEN_KEY}
        assert f"{name}.{e['ns']}.svc" in env_vars["SCANFLOW_AGENT_ALLOWED_HOSTS"]["value"].split(",")
        assert token not in json.dumps(d)
    # each team its own token (the tutorial has agents too: a token of its own, not the same one)
    other = envs["envs"]["tutorial"]["ns"]
    assert agent_token(cluster, other) != token


def test_redeploy_keeps_the_token(envs):
    cluster, e = envs["cluster"], envs["envs"]["agents"]
    before = agent_token(cluster, e["ns"])
    outcome = env.deploy(e["app"], e["config"], cluster=cluster)
    actions = {(o.kind, o.name): o.action for o in outcome.objects}
    assert actions[("Secret", mf.AGENT_TOKEN_SECRET)] == "unchanged"
    assert agent_token(cluster, e["ns"]) == before
    dry = env.deploy(e["app"], e["config"], cluster=cluster, dry_run=True)
    assert before not in json.dumps(dry.to_dict())
    assert agent_token(cluster, e["ns"]) == before


def test_a_deleted_token_is_generated_again(envs):
    cluster, e = envs["cluster"], envs["envs"]["agents"]
    before = agent_token(cluster, e["ns"])
    cluster.delete("Secret", "v1", mf.AGENT_TOKEN_SECRET, e["ns"])
    outcome = env.deploy(e["app"], e["config"], cluster=cluster)
    assert {(o.kind, o.name): o.action for o in outcome.objects}[("Secret", mf.AGENT_TOKEN_SECRET)] == "created"
    assert agent_token(cluster, e["ns"]) != before
    # the exported Secret applied as it is (no data, as `kubectl apply` of the export leaves it): filled in
    cluster.delete("Secret", "v1", mf.AGENT_TOKEN_SECRET, e["ns"])
    exported = next(m for m in env.plan(e["app"], e["config"]) if m["metadata"]["name"] == mf.AGENT_TOKEN_SECRET)
    cluster.apply(exported)
    assert not (cluster.get("Secret", "v1", mf.AGENT_TOKEN_SECRET, e["ns"]) or {}).get("data")
    outcome = env.deploy(e["app"], e["config"], cluster=cluster)
    assert {(o.kind, o.name): o.action for o in outcome.objects}[("Secret", mf.AGENT_TOKEN_SECRET)] == "configured"
    assert len(agent_token(cluster, e["ns"])) >= 32


def test_token_never_in_export_status_or_dry_run_output(envs):
    cluster, e, kubeconfig = envs["cluster"], envs["envs"]["agents"], envs["k8s"].kubeconfig
    token = agent_token(cluster, e["ns"])
    env.wait_ready(e["app"], e["config"], cluster, timeout=READY_TIMEOUT)  # `status` exits 0 only when ready
    outputs = {
        "export": scanflow("export", str(e["notebook"]), "--to", "k8s", "--team", e["team"], kubeconfig=kubeconfig),
        "status": scanflow("status", str(e["notebook"]), "--team", e["team"], "--json", kubeconfig=kubeconfig),
        "dry-run": scanflow("deploy", str(e["notebook"]), "--team", e["team"], "--dry-run", "--json",
                            kubeconfig=kubeconfig, SCANFLOW_K8S_STORAGE_CLASS=e["config"].storage_class),
    }
    for what, proc in outputs.items():
        assert proc.returncode == 0, (what, proc.stdout + proc.stderr)
        assert token not in proc.stdout + proc.stderr, f"the agent token leaks into `scanflow {what}`"
        assert base64.b64encode(token.encode()).decode() not in proc.stdout + proc.stderr, what
    exported = list(yaml.safe_load_all(outputs["export"].stdout))
    secret = next(m for m in exported if m["kind"] == "Secret" and m["metadata"]["name"] == mf.AGENT_TOKEN_SECRET)
    assert "data" not in secret
    status = json.loads(outputs["status"].stdout)
    assert any(o["kind"] == "Secret" and o["name"] == mf.AGENT_TOKEN_SECRET and o["exists"] for o in status["objects"])
    assert agent_token(cluster, e["ns"]) == token  # the dry run rotated nothing


def test_network_policy_limits_agent_and_tracker_ingress_to_the_namespace(envs):
    cluster = envs["cluster"]
    for e in envs["envs"].values():
        policy = cluster.get("NetworkPolicy", "networking.k8s.io/v1", mf.NETWORK_POLICY, e["ns"])
        assert policy is not None, f"no NetworkPolicy in {e['ns']}"
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        assert policy["spec"]["ingress"] == [{"from": [{"podSelector": {}}]}]
        selector = policy["spec"]["podSelector"]
        # the pods it selects, as the API server's label selection finds them
        expr = selector["matchExpressions"][0]
        query = ",".join([*(f"{k}={v}" for k, v in selector["matchLabels"].items()),
                          f"{expr['key']} in ({','.join(expr['values'])})"])
        env.wait_ready(e["app"], e["config"], cluster, timeout=READY_TIMEOUT)
        names = {p["metadata"]["labels"]["app.kubernetes.io/name"] for p in cluster.list("Pod", "v1", e["ns"], query)}
        agents = {mf.dns_label(a.name) for a in e["app"].agents}
        assert names == {mf.TRACKER, mf.S3, *agents}, names  # not the online services: they serve outside callers
