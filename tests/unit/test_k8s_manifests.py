"""Manifests of a Kubernetes team environment (DESIGN §4): golden files and structural rules."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml

from scanflow_jupyter.kubernetes import manifests as mf
from scanflow_jupyter.kubernetes.config import (
    POSTGRES_UID,
    ConfigError,
    DeployConfig,
    images_from_build_report,
)
from scanflow_jupyter.model import Agent, Application, Service
from scanflow_jupyter.notebook.parser import parse_notebook
from tests.conftest import load_script

ROOT = Path(__file__).resolve().parents[2]
REGEN_HINT = "run `python scripts/regen_k8s_golden.py` and review the diff"
REQUIRED_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by",
                   "app.kubernetes.io/component", "scanflow.io/app", "scanflow.io/team")


REGEN = load_script("regen_k8s_golden")


def _app(**kw) -> Application:
    return Application(name=kw.pop("name", "demo"), notebook="/somewhere/demo.ipynb", **kw)


def _config(**kw) -> DeployConfig:
    return DeployConfig(tracker_image=REGEN.TRACKER_IMAGE, **kw)


def _by(manifests, kind, name=None):
    found = [m for m in manifests if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)]
    assert found, f"no {kind} {name or ''} in {[mf.describe(m) for m in manifests]}"
    return found if name is None else found[0]


# --- golden files ------------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(REGEN.CASES))
def test_manifests_match_golden(case):
    path = REGEN.GOLDEN / f"{case}.yaml"
    assert path.exists(), f"missing golden file {path}: {REGEN_HINT}"
    assert mf.to_yaml(REGEN.case_manifests(case)) == path.read_text(encoding="utf-8"), REGEN_HINT


def test_no_extra_golden_files():
    assert REGEN.main(["--check"]) == 0, REGEN_HINT


def test_yaml_round_trips():
    manifests = REGEN.case_manifests("services")
    assert list(yaml.safe_load_all(mf.to_yaml(manifests))) == manifests


# --- the objects -------------------------------------------------------------------------------


def test_agents_loop_environment_objects():
    app = parse_notebook(ROOT / "notebooks" / "agents_loop.ipynb")
    manifests = mf.build_manifests(app, _config())
    ns = "scanflow-agents-loop-default"
    kinds = [(m["kind"], m["metadata"]["name"]) for m in manifests]
    assert kinds[0] == ("Namespace", ns)
    for expected in [("ServiceAccount", "scanflow"), ("Role", "scanflow-runner"), ("RoleBinding", "scanflow-runner"),
                     ("Secret", "scanflow-tracker"), ("ConfigMap", "scanflow-env"), ("ConfigMap", "scanflow-agents"),
                     ("PersistentVolumeClaim", "mlflow-data"), ("Deployment", "scanflow-tracker"),
                     ("Service", "scanflow-tracker"), ("Deployment", "scanflow-s3"), ("Service", "scanflow-s3"),
                     ("PersistentVolumeClaim", "s3-data"),
                     ("Deployment", "monitor"), ("Service", "monitor"), ("Deployment", "planner"),
                     ("Service", "planner")]:
        assert expected in kinds
    assert len(kinds) == len(set(kinds))
    for m in manifests[1:]:
        assert m["metadata"]["namespace"] == ns, mf.describe(m)


def test_every_object_and_pod_template_carries_the_labels():
    for case in REGEN.CASES:
        for m in REGEN.case_manifests(case):
            for where, labels in [("metadata", m["metadata"].get("labels", {}))] + (
                    [("template", m["spec"]["template"]["metadata"]["labels"])] if m["kind"] == "Deployment" else []):
                missing = [k for k in REQUIRED_LABELS if k not in labels]
                assert not missing, f"{case} {mf.describe(m)} {where} lacks {missing}"
                assert labels["app.kubernetes.io/part-of"] == "scanflow"
                assert labels["app.kubernetes.io/managed-by"] == "scanflow"


def test_kinds_are_applied_in_dependency_order():
    manifests = REGEN.case_manifests("services")
    ranks = [mf.KIND_ORDER.index(m["kind"]) for m in manifests]
    assert ranks == sorted(ranks)
    assert manifests[0]["kind"] == "Namespace"


def test_role_is_least_privilege():
    manifests = REGEN.case_manifests("agents_loop")
    assert not [m for m in manifests if m["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    role = _by(manifests, "Role", mf.ROLE)
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
        assert "secrets" not in rule["resources"]
        assert not {"delete", "deletecollection", "escalate", "bind", "impersonate"} & set(rule["verbs"])
    workflows = [r for r in role["rules"] if "workflows" in r["resources"]]
    assert workflows and workflows[0]["apiGroups"] == ["argoproj.io"] and "create" in workflows[0]["verbs"]
    binding = _by(manifests, "RoleBinding", mf.ROLE)
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": mf.ROLE}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": mf.SERVICE_ACCOUNT,
                                    "namespace": "scanflow-agents-loop-default"}]


def _pod_specs(manifests):
    return [(mf.describe(m), m["spec"]["template"]["spec"]) for m in manifests if m["kind"] == "Deployment"]


def test_every_pod_is_pod_security_restricted():
    # the rules as the unit-level mirror of what tests/integration/test_k8s_pod_security.py has the API server check
    for case in REGEN.CASES:
        for where, pod in _pod_specs(REGEN.case_manifests(case)):
            sc = pod["securityContext"]
            uid = POSTGRES_UID if where.startswith(f"Deployment/{mf.POSTGRES} ") else mf.RUN_AS_USER
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] == uid != 0, where
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC"), where
            assert not any("hostPath" in v for v in pod.get("volumes", [])), where
            for c in pod["containers"] + pod.get("initContainers", []):
                csc = c["securityContext"]
                assert csc["allowPrivilegeEscalation"] is False and csc["capabilities"] == {"drop": ["ALL"]}, where
                assert not csc.get("privileged") and "add" not in csc["capabilities"], where
                # a uid without a passwd entry: a writable HOME and a user name (getpass.getuser() fails)
                for var in ("HOME", "USER", "LOGNAME"):
                    assert {"name": var, "value": mf.POD_USER_ENV[var]} in c["env"], (where, var)
            if any("persistentVolumeClaim" in v for v in pod.get("volumes", [])):
                assert sc["fsGroup"] == uid, f"{where}: the volume must be writable"


def test_team_namespace_enforces_restricted():
    ns = REGEN.case_manifests("services")[0]
    assert ns["kind"] == "Namespace"
    for mode in ("enforce", "warn", "audit"):
        assert ns["metadata"]["labels"][f"pod-security.kubernetes.io/{mode}"] == "restricted"
        assert ns["metadata"]["labels"][f"pod-security.kubernetes.io/{mode}-version"] == "latest"


def test_agent_token_secret_has_no_value_and_agents_read_it_from_there():
    manifests = REGEN.case_manifests("agents_loop")
    token = _by(manifests, "Secret", mf.AGENT_TOKEN_SECRET)
    assert "data" not in token and "stringData" not in token  # generated by deploy, never exported
    assert mf.generated_keys(token) == [mf.AGENT_TOKEN_KEY]
    # the bundled S3 server's keys: generated by deploy too, never in a manifest
    tracker_secret = _by(manifests, "Secret", mf.SECRET)
    assert mf.generated_keys(tracker_secret) == ["aws-access-key-id", "aws-secret-access-key"]
    assert set(tracker_secret["data"]) == {"backend-store-uri"}
    ns = "scanflow-agents-loop-default"
    for name in ("monitor", "planner"):
        env = {e["name"]: e for e in _by(manifests, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["SCANFLOW_AGENT_TOKEN"] == {"name": "SCANFLOW_AGENT_TOKEN", "valueFrom": {
            "secretKeyRef": {"name": mf.AGENT_TOKEN_SECRET, "key": mf.AGENT_TOKEN_KEY}}}
        assert env["SCANFLOW_AGENT_ALLOWED_HOSTS"]["value"].split(",") == [
            name, f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local"]
    # no agents, no token
    assert not [m for m in mf.build_manifests(_app(), _config()) if m["metadata"]["name"] == mf.AGENT_TOKEN_SECRET]


def test_network_policy_admits_only_the_team_namespace_to_agents_and_tracker():
    manifests = REGEN.case_manifests("agents_loop")
    policy = _by(manifests, "NetworkPolicy", mf.NETWORK_POLICY)
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    assert spec["ingress"] == [{"from": [{"podSelector": {}}]}]  # pods of this namespace only
    selected = [m for m in manifests if m["kind"] == "Deployment"
                and all(m["spec"]["template"]["metadata"]["labels"].get(k) == v
                        for k, v in spec["podSelector"]["matchLabels"].items())
                and m["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
                in spec["podSelector"]["matchExpressions"][0]["values"]]
    assert sorted(m["metadata"]["name"] for m in selected) == ["monitor", "planner", mf.S3, mf.TRACKER]


def test_configmap_lists_uris_and_agent_dns_names():
    manifests = REGEN.case_manifests("agents_loop")
    data = _by(manifests, "ConfigMap", mf.ENV_CONFIGMAP)["data"]
    ns = "scanflow-agents-loop-default"
    assert data["MLFLOW_TRACKING_URI"] == f"http://scanflow-tracker.{ns}.svc:5000"
    assert json.loads(data["SCANFLOW_AGENT_URLS"]) == {"monitor": f"http://monitor.{ns}.svc:8080",
                                                       "planner": f"http://planner.{ns}.svc:8080"}
    assert data["SCANFLOW_AGENT_MONITOR_URL"] == f"http://monitor.{ns}.svc:8080"


def test_agent_deployment_runs_the_agent_service_with_probes():
    manifests = REGEN.case_manifests("agents_loop")
    dep = _by(manifests, "Deployment", "monitor")
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["command"][:3] == ["python", "-m", "scanflow_jupyter.agents.service"]
    for probe in (c["readinessProbe"], c["livenessProbe"]):  # the agent's only open route
        assert probe["httpGet"]["path"] == "/healthz"
        assert probe["httpGet"]["httpHeaders"] == [{"name": "Host", "value": "localhost"}]
    assert c["image"] == "scanflow/agents-loop-monitor:latest"
    assert pod["serviceAccountName"] == mf.SERVICE_ACCOUNT
    spec_json = _by(manifests, "ConfigMap", mf.AGENTS_CONFIGMAP)["data"]["monitor.json"]
    spec = json.loads(spec_json)
    assert spec["name"] == "monitor" and spec["app"] == "agents-loop" and "@sensor" in spec["source"]
    assert spec["notebook"] == "agents_loop.ipynb"  # no host path inside the cluster
    svc = _by(manifests, "Service", "monitor")
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    for k, v in svc["spec"]["selector"].items():
        assert dep["spec"]["template"]["metadata"]["labels"][k] == v


def test_images_come_from_the_build_or_the_registry():
    manifests = REGEN.case_manifests("agents_loop-registry")
    monitor = _by(manifests, "Deployment", "monitor")["spec"]["template"]["spec"]["containers"][0]
    planner = _by(manifests, "Deployment", "planner")["spec"]["template"]["spec"]["containers"][0]
    assert monitor["image"] == "registry.example:5000/scanflow/agents-loop-monitor:0123456789ab"
    assert planner["image"] == "registry.example:5000/scanflow/agents-loop-planner:latest"
    assert _by(manifests, "Namespace")[0]["metadata"]["name"] == "scanflow-agents-loop-ml-ops"


def test_online_service_has_deployment_service_and_hpa():
    manifests = REGEN.case_manifests("services")
    dep = _by(manifests, "Deployment", "scorer")
    assert "replicas" not in dep["spec"], "the autoscaler owns the replica count"
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["resources"]["requests"]["cpu"]
    hpa = _by(manifests, "HorizontalPodAutoscaler", "scorer")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["minReplicas"] == 2 and hpa["spec"]["maxReplicas"] == 6
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "scorer"}
    assert _by(manifests, "Service", "custom-api")  # '_' is not allowed in Kubernetes names


def _service_pod(manifests, name):
    return _by(manifests, "Deployment", name)["spec"]["template"]["spec"]


@pytest.mark.parametrize("case", ["services", "services-external"])
def test_service_pods_run_the_services_server_on_a_spec_from_the_configmap(case):
    from scanflow_jupyter.services.server import main as server_main
    from scanflow_jupyter.services.spec import ServiceSpec

    manifests = REGEN.case_manifests(case)
    specs = _by(manifests, "ConfigMap", mf.SERVICES_CONFIGMAP)["data"]
    assert sorted(specs) == ["custom-api.json", "scorer.json"]
    scorer = ServiceSpec.from_dict(json.loads(specs["scorer.json"]))
    assert (scorer.name, scorer.model, scorer.notebook) == ("scorer", "models:/churn@champion", "services.ipynb")
    custom = ServiceSpec.from_dict(json.loads(specs["custom-api.json"]))
    assert custom.model is None and "def predict" in custom.source
    assert json.loads(specs["scorer.json"])["options"] == {"poll_s": mf.SERVICE_POLL_S}
    for name in ("scorer", "custom-api"):
        pod = _service_pod(manifests, name)
        c = pod["containers"][0]
        assert c["command"][:3] == ["python", "-m", "scanflow_jupyter.services.server"]
        assert server_main.__module__ == c["command"][2]  # the module exists and has main()
        assert c["command"][c["command"].index("--spec") + 1] == f"{mf.SERVICE_SPEC_DIR}/spec.json"
        spec_volume = next(v for v in pod["volumes"] if v["name"] == "spec")
        assert spec_volume["configMap"] == {"name": mf.SERVICES_CONFIGMAP,
                                            "items": [{"key": f"{name}.json", "path": "spec.json"}]}
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            assert c[probe]["httpGet"]["path"] == "/health", probe  # 200 only once the model is loaded
        assert c["envFrom"] == [{"configMapRef": {"name": mf.ENV_CONFIGMAP}}]  # MLFLOW_TRACKING_URI, S3 endpoint
        env = {e["name"]: e for e in c["env"]}
        assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == mf.SECRET  # the inference log
        assert env["SCANFLOW_AGENT_TOKEN"]["valueFrom"]["secretKeyRef"]["optional"] is True
        assert f"{name}.{mf.namespace_name(parse_notebook(REGEN.CASES[case][0]), REGEN.config_for(REGEN.CASES[case][1]))}.svc" \
            in env["SCANFLOW_AGENT_ALLOWED_HOSTS"]["value"]
        home = next(m for m in c["volumeMounts"] if m["name"] == "home")
        assert home["mountPath"] == mf.AGENT_HOME  # SCANFLOW_HOME is writable (emptyDir)
        assert pod["securityContext"]["runAsNonRoot"] and c["securityContext"]["allowPrivilegeEscalation"] is False
        strategy = _by(manifests, "Deployment", name)["spec"]["strategy"]
        assert strategy["rollingUpdate"]["maxUnavailable"] == 0


def test_run_store_in_the_bundled_object_store_sends_the_inference_log_there():
    cm = _by(REGEN.case_manifests("services"), "ConfigMap", mf.ENV_CONFIGMAP)["data"]
    assert cm["SCANFLOW_RUN_STORE"].startswith("s3://") and cm["SCANFLOW_S3_ENDPOINT_URL"]
    external = _by(REGEN.case_manifests("services-external"), "ConfigMap", mf.ENV_CONFIGMAP)["data"]
    assert "SCANFLOW_RUN_STORE" not in external  # an external store holds no run store: the log stays in the pod


def test_sqlite_tracker_uses_a_pvc_and_external_store_does_not():
    local = REGEN.case_manifests("services")
    dep = _by(local, "Deployment", mf.TRACKER)
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    assert dep["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == mf.TRACKER_PVC
    secret = _by(local, "Secret", mf.SECRET)
    assert base64.b64decode(secret["data"]["backend-store-uri"]).decode() == "sqlite:////data/mlflow.db"
    external = REGEN.case_manifests("services-external")
    assert not [m for m in external if m["kind"] == "PersistentVolumeClaim"]
    env = _by(external, "Deployment", mf.TRACKER)["spec"]["template"]["spec"]["containers"][0]["env"]
    by_name = {e["name"]: e for e in env}
    assert by_name["BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"]["key"] == "backend-store-uri"
    assert by_name["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == mf.SECRET
    assert by_name["ARTIFACTS_DESTINATION"]["value"] == "s3://mlflow-artifacts/churn"


def test_credentials_only_in_the_secret():
    config = REGEN.config_for(REGEN.CASES["services-external"][1])
    secrets = config.credentials()
    assert "golden-db-password" in secrets and "golden-secret-key" in secrets
    for m in REGEN.case_manifests("services-external"):
        if m["kind"] == "Secret" and m["metadata"]["name"] == mf.SECRET:
            decoded = {k: base64.b64decode(v).decode() for k, v in m["data"].items()}
            assert decoded["backend-store-uri"] == REGEN.FAKE_DB_URI
            continue
        text = json.dumps(m)
        for value in secrets:
            assert value not in text, f"{value!r} leaks into {mf.describe(m)}"
    assert not any(v in json.dumps(config.public()) for v in secrets)


def test_name_clash_is_refused():
    app = _app(agents=[Agent("scanflow_tracker", 1, "")])
    with pytest.raises(mf.ManifestError, match="scanflow_tracker and the MLflow tracker both become the Kubernetes name .scanflow-tracker."):
        mf.build_manifests(app, _config())
    app = _app(agents=[Agent("scanflow-s3", 1, "")])
    with pytest.raises(mf.ManifestError, match="the environment's scanflow-s3"):
        mf.build_manifests(app, _config())
    app = _app(agents=[Agent("a_b", 1, "")], services=[Service("a-b", 2, "", model="models:/m@x")])
    with pytest.raises(mf.ManifestError, match="rename one"):
        mf.build_manifests(app, _config())


def test_namespace_names():
    assert mf.namespace_name(_app(name="Churn_Model", team="Data Science"), _config()) == \
        "scanflow-churn-model-data-science"
    assert mf.namespace_name(_app(), _config(namespace="mine")) == "mine"
    assert mf.namespace_name(_app(team="t1"), _config(team="other")) == "scanflow-demo-other"


# --- settings ----------------------------------------------------------------------------------


def test_config_from_env_and_overrides():
    env = {"SCANFLOW_K8S_CONTEXT": "ctx", "SCANFLOW_REGISTRY": "reg:5000", "SCANFLOW_TRACKER_DB_URI": REGEN.FAKE_DB_URI,
           "SCANFLOW_TRACKER_ARTIFACTS": "s3://b/p", "AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "key"}
    config = DeployConfig.from_env(env, context="other", namespace=None)
    assert config.context == "other" and config.registry == "reg:5000" and config.storage == "external"
    assert not config.needs_pvc
    assert set(config.secret_data()) == {"backend-store-uri", "aws-access-key-id", "aws-secret-access-key"}
    assert DeployConfig.from_env({}).storage == "sqlite"
    # AWS keys of the shell reach the cluster only when the tracker stores artifacts in S3
    shell = DeployConfig.from_env({"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "key"})
    assert shell.aws_access_key_id is None and set(shell.secret_data()) == {"backend-store-uri"}


@pytest.mark.parametrize("env, match", [
    ({"SCANFLOW_TRACKER_DB_URI": "not a uri"}, "not a URI"),
    ({"SCANFLOW_TRACKER_DB_URI": "sqlite:///x.db"}, "database server"),
    ({"SCANFLOW_TRACKER_ARTIFACTS": "/local/folder"}, "object-store URI"),
    ({"SCANFLOW_TRACKER_ARTIFACTS": "s3://b/p", "AWS_ACCESS_KEY_ID": "only-one"}, "set both"),
])
def test_config_refuses_bad_settings(env, match):
    with pytest.raises(ConfigError, match=match):
        DeployConfig.from_env(env)


def test_images_from_build_report():
    doc = {"steps": {"monitor": {"image": "r/scanflow/a-monitor:abc", "built": True}}}
    assert images_from_build_report(doc) == {"monitor": "r/scanflow/a-monitor:abc"}
    with pytest.raises(ConfigError, match="scanflow build"):
        images_from_build_report({"images": []})


def test_uris_bound_for_the_configmap_must_not_carry_credentials():
    with pytest.raises(ConfigError, match=r"MLFLOW_S3_ENDPOINT_URL carries credentials \(http://\*\*\*@minio:9000\)"):
        DeployConfig.from_env({"SCANFLOW_TRACKER_ARTIFACTS": "s3://b/p", "MLFLOW_S3_ENDPOINT_URL": "http://k:s3cr3t@minio:9000"})
    with pytest.raises(ConfigError, match="AWS_SECRET_ACCESS_KEY") as info:
        DeployConfig.from_env({"SCANFLOW_TRACKER_ARTIFACTS": "s3://key:s3cr3t@bucket/p"})
    assert "s3cr3t" not in str(info.value)


# -- the data plane (issue #10): S3 server, PostgreSQL, the env ConfigMap contract -----------------


def _env_of(deployment):
    return {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_env_configmap_names_the_run_store_and_the_object_store():
    manifests = REGEN.case_manifests("agents_loop")
    ns = "scanflow-agents-loop-default"
    data = _by(manifests, "ConfigMap", mf.ENV_CONFIGMAP)["data"]
    assert data["SCANFLOW_RUN_STORE"] == "s3://scanflow/runs"
    assert data["SCANFLOW_S3_ENDPOINT_URL"] == data["MLFLOW_S3_ENDPOINT_URL"] == f"http://scanflow-s3.{ns}.svc:9000"
    assert data["MLFLOW_TRACKING_URI"] == f"http://scanflow-tracker.{ns}.svc:5000"
    assert data["AWS_DEFAULT_REGION"] == "us-east-1"
    # an external object store: no bundled server, its endpoint instead, no run store guessed
    external = REGEN.case_manifests("services-external")
    assert not [m for m in external if m["metadata"]["name"] == mf.S3]
    data = _by(external, "ConfigMap", mf.ENV_CONFIGMAP)["data"]
    assert data["SCANFLOW_S3_ENDPOINT_URL"] == "http://minio.example:9000" and "SCANFLOW_RUN_STORE" not in data


def test_s3_server_reads_the_generated_keys_and_makes_the_bucket():
    manifests = REGEN.case_manifests("agents_loop")
    dep = _by(manifests, "Deployment", mf.S3)
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert "mkdir -p /data/scanflow && exec versitygw --port :9000 --health /health posix /data" in c["command"][-1]
    env = _env_of(dep)
    assert env["ROOT_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {"name": mf.SECRET, "key": "aws-access-key-id"}
    assert env["ROOT_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {"name": mf.SECRET,
                                                                          "key": "aws-secret-access-key"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/health", "port": "s3"}
    assert dep["spec"]["template"]["spec"]["volumes"] == [{"name": "data", "persistentVolumeClaim": {
        "claimName": mf.S3_PVC}}]
    svc = _by(manifests, "Service", mf.S3)
    assert svc["spec"]["ports"][0]["port"] == 9000


def test_postgres_storage_runs_postgres_and_artifacts_in_s3():
    manifests = REGEN.case_manifests("agents_loop-postgres")
    ns = "scanflow-agents-loop-default"
    password = _by(manifests, "Secret", mf.POSTGRES)
    assert "data" not in password and mf.generated_keys(password) == ["password"]
    assert "backend-store-uri" not in (_by(manifests, "Secret", mf.SECRET).get("data") or {})
    pg = _by(manifests, "Deployment", mf.POSTGRES)
    assert pg["spec"]["strategy"] == {"type": "Recreate"}
    assert _env_of(pg)["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": mf.POSTGRES, "key": "password"}
    assert _by(manifests, "PersistentVolumeClaim", mf.POSTGRES_PVC)
    assert _by(manifests, "Service", mf.POSTGRES)["spec"]["ports"][0]["port"] == 5432
    tracker = _by(manifests, "Deployment", mf.TRACKER)
    env = _env_of(tracker)
    names = [e["name"] for e in tracker["spec"]["template"]["spec"]["containers"][0]["env"]]
    assert names.index("POSTGRES_PASSWORD") < names.index("BACKEND_STORE_URI")  # $(POSTGRES_PASSWORD) expands
    assert env["BACKEND_STORE_URI"]["value"] == (
        f"postgresql+psycopg2://mlflow:$(POSTGRES_PASSWORD)@scanflow-postgres.{ns}.svc:5432/mlflow")
    assert env["ARTIFACTS_DESTINATION"]["value"] == "s3://scanflow/mlflow"
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["key"] == "aws-access-key-id"
    assert "--serve-artifacts" in tracker["spec"]["template"]["spec"]["containers"][0]["args"]
    # a first start migrates the database: a startup probe holds the liveness probe back
    for dep in (tracker, pg):
        startup = dep["spec"]["template"]["spec"]["containers"][0]["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 300, mf.describe(dep)
    assert not [m for m in manifests if m["metadata"]["name"] == mf.TRACKER_PVC]  # no tracker volume


def test_ephemeral_storage_has_no_claim():
    manifests = REGEN.case_manifests("agents_loop-ephemeral")
    assert not [m for m in manifests if m["kind"] == "PersistentVolumeClaim"]
    for name in (mf.S3, mf.TRACKER):
        volumes = _by(manifests, "Deployment", name)["spec"]["template"]["spec"]["volumes"]
        assert volumes == [{"name": "data", "emptyDir": {}}], name


def test_storage_setting_is_checked():
    assert DeployConfig.from_env({"SCANFLOW_K8S_STORAGE": "postgres"}).storage == "postgres"
    with pytest.raises(ConfigError, match=r"unknown tracker storage 'mysql'.*sqlite, postgres, ephemeral"):
        DeployConfig(storage_mode="mysql").check()
    with pytest.raises(ConfigError, match="SCANFLOW_TRACKER_DB_URI names another one"):
        DeployConfig(storage_mode="postgres", tracker_db_uri="postgresql://u:p@h/db").check()
    config = DeployConfig.from_env({"SCANFLOW_K8S_S3_IMAGE": "reg:1/s3:v", "SCANFLOW_K8S_POSTGRES_IMAGE": "reg:1/pg:15",
                                    "SCANFLOW_K8S_STORAGE": "postgres"})
    assert config.public()["s3_image"] == "reg:1/s3:v" and config.public()["postgres_image"] == "reg:1/pg:15"
    assert config.public()["credentials"] == ["aws-access-key-id", "aws-secret-access-key"]
