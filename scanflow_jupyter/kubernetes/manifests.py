"""Pure functions: an `Application` and a `DeployConfig` -> the manifests of its team environment.

`build_manifests` returns plain dicts in dependency order (DESIGN.md §4): Namespace (labelled to
enforce Pod Security `restricted`), ServiceAccount, Role, RoleBinding, NetworkPolicy (agents and
tracker reachable only from the team namespace), Secrets (tracker credentials; the agent token
Secret without data: `environment.deploy` generates the token), ConfigMaps, PVCs, the S3 server
`scanflow-s3` (bucket `scanflow`: the run store and, with `postgres` storage, MLflow's artifacts),
PostgreSQL `scanflow-postgres` (`postgres` storage), the MLflow tracker (Deployment + ClusterIP
Service), one Deployment + Service per agent, and one Deployment + Service +
HorizontalPodAutoscaler per `%%service` (their specs in the ConfigMap `scanflow-services`). Every pod runs as a non-root numeric user
with no privilege escalation, no capabilities and the runtime's default seccomp profile.
Nothing here talks to a cluster; names that Kubernetes would refuse are left for `validation`
to report (object, field, fix).
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from scanflow_jupyter.build.context import image_ref, repository_name
from scanflow_jupyter.kubernetes.config import (
    AGENT_PORT,
    POSTGRES_PORT,
    POSTGRES_UID,
    S3_BUCKET,
    S3_PORT,
    SERVICE_PORT,
    SQLITE_ARTIFACTS,
    TRACKER_PORT,
    DeployConfig,
)
from scanflow_jupyter.model import Agent, Application, Service
from scanflow_jupyter.runtime.constants import ENV_CONFIGMAP, ENV_SECRET

Manifest = dict[str, Any]

LABEL_APP = "scanflow.io/app"
LABEL_TEAM = "scanflow.io/team"
SERVICE_ACCOUNT = "scanflow"
ROLE = "scanflow-runner"
SECRET = ENV_SECRET  # credentials of the environment (S3 keys, the tracker's database URI)
AGENTS_CONFIGMAP = "scanflow-agents"
TRACKER = "scanflow-tracker"  # Deployment + Service (port 5000) of the MLflow tracker
TRACKER_PVC = "mlflow-data"
AGENT_HOME = "/var/lib/scanflow"
AGENT_SPEC_DIR = "/etc/scanflow/agent"
SERVICE_COMMAND_MODULE = "scanflow_jupyter.services.server"
SERVICES_CONFIGMAP = "scanflow-services"  # `<service>.json`: the spec each service pod serves
SERVICE_SPEC_DIR = "/etc/scanflow/service"
SERVICE_POLL_S = 5.0  # how often service pods check their model alias in the tracker
AGENT_TOKEN_SECRET = "scanflow-agent-token"  # key `token`: generated at apply time, never in a manifest
AGENT_TOKEN_KEY = "token"
NETWORK_POLICY = "scanflow-team-only"
S3 = "scanflow-s3"  # Deployment + Service (port 9000) of the environment's S3 server
S3_PVC = "s3-data"
S3_DATA = "/data"
POSTGRES = "scanflow-postgres"  # Deployment + Service (port 5432) + Secret (key `password`, generated)
POSTGRES_PVC = "postgres-data"
POSTGRES_PASSWORD_KEY = "password"
POSTGRES_USER = "mlflow"
POSTGRES_DB = "mlflow"
POSTGRES_DATA = "/var/lib/postgresql/data"
STARTUP_CHECKS = 120  # startup probes: 120 x 5 s before a slow first start counts as failed
RUN_STORE = f"s3://{S3_BUCKET}/runs"  # SCANFLOW_RUN_STORE (the kubernetes backend's run store)
TRACKER_ARTIFACTS_S3 = f"s3://{S3_BUCKET}/mlflow"  # MLflow's artifacts with `postgres` storage
# Set on a manifest whose data keys `deploy` fills with random values when they are missing.
ANNOTATION_GENERATED = "scanflow.io/generated-keys"
# Pod Security `restricted` (https://kubernetes.io/docs/concepts/security/pod-security-standards/):
# every pod runs as this numeric non-root user (images may declare a named or no user) with HOME
# in /tmp and a user name in the environment (the uid has no passwd entry: getpass.getuser()
# fails, and MLflow would record runs without `mlflow.user`); the namespace enforces the profile.
RUN_AS_USER = 1000
POD_HOME = "/tmp"
POD_USER_ENV = {"HOME": POD_HOME, "USER": "scanflow", "LOGNAME": "scanflow"}
POD_SECURITY_LABELS = {f"pod-security.kubernetes.io/{mode}{suffix}": value
                       for mode in ("enforce", "warn", "audit")
                       for suffix, value in (("", "restricted"), ("-version", "latest"))}

# Kinds in the order they are applied (deleted in reverse); the namespace comes first.
KIND_ORDER = ("Namespace", "ServiceAccount", "Role", "RoleBinding", "NetworkPolicy", "Secret", "ConfigMap",
              "PersistentVolumeClaim", "Service", "Deployment", "HorizontalPodAutoscaler")

# What agents and pipelines need in their own namespace, and nothing more (no secrets, no
# cluster-scoped resources): read pods and logs, read their own ConfigMaps, run workflows (and
# let Argo's executor in their step pods report task results).
ROLE_RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["pods", "pods/log", "services", "endpoints"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [ENV_CONFIGMAP, AGENTS_CONFIGMAP],
     "verbs": ["get"]},
    {"apiGroups": ["argoproj.io"], "resources": ["workflows"], "verbs": ["create", "get", "list", "watch"]},
    # what Argo's executor (in step pods running as this ServiceAccount) reports results with
    {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]},
]


class ManifestError(ValueError):
    """The application cannot be turned into manifests (e.g. two parts map to one Kubernetes name)."""


def dns_label(text: str) -> str:
    """`text` lower-cased, with every character outside [a-z0-9-] turned into '-' (not truncated)."""
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]", "-", text.lower())).strip("-") or "x"


def team_of(app: Application, config: DeployConfig) -> str:
    return config.team or app.team or "default"


def namespace_name(app: Application, config: DeployConfig) -> str:
    """`scanflow-<app>-<team>` (or the configured namespace); validation checks its length."""
    return config.namespace or f"scanflow-{dns_label(app.name)}-{dns_label(team_of(app, config))}"


@dataclass
class Target:
    """One deployed part (tracker, agent, service) and its Kubernetes name."""

    name: str  # as written in the notebook
    kind: str  # "tracker" | "agent" | "service"
    k8s_name: str
    obj: Any = None


def targets(app: Application) -> list[Target]:
    """The tracker, agents and services with their Kubernetes names; ManifestError on a clash."""
    out = [Target(TRACKER, "tracker", TRACKER), Target(S3, "store", S3), Target(POSTGRES, "store", POSTGRES)]
    out += [Target(a.name, "agent", dns_label(a.name), a) for a in app.agents]
    out += [Target(s.name, "service", dns_label(s.name), s) for s in app.services]
    seen: dict[str, Target] = {}
    for t in out:
        other = seen.get(t.k8s_name)
        if other is not None:
            what = {"tracker": "the MLflow tracker", "store": f"the environment's {other.name}"}.get(
                other.kind, f"%%{other.kind} {other.name}")
            raise ManifestError(
                f"%%{t.kind} {t.name} and {what} both become the Kubernetes name '{t.k8s_name}' "
                "(names are lower-cased and '_' becomes '-'). Fix: rename one of them.")
        seen[t.k8s_name] = t
    return out


def labels(app: Application, config: DeployConfig, name: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/part-of": "scanflow",
        "app.kubernetes.io/managed-by": "scanflow",
        "app.kubernetes.io/component": component,
        LABEL_APP: dns_label(app.name),
        LABEL_TEAM: dns_label(team_of(app, config)),
    }


def selector(app: Application, config: DeployConfig, name: str, component: str) -> dict[str, str]:
    full = labels(app, config, name, component)
    return {k: full[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/component", LABEL_APP, LABEL_TEAM)}


def agent_urls(app: Application, config: DeployConfig) -> dict[str, str]:
    """Agent name -> its URL inside the cluster (service DNS `<agent>.<namespace>.svc`)."""
    ns = namespace_name(app, config)
    return {a.name: f"http://{dns_label(a.name)}.{ns}.svc:{AGENT_PORT}" for a in app.agents}


def tracking_uri(app: Application, config: DeployConfig) -> str:
    return f"http://{TRACKER}.{namespace_name(app, config)}.svc:{TRACKER_PORT}"


def s3_endpoint(app: Application, config: DeployConfig) -> str:
    """The object store's URL for pods: the bundled `scanflow-s3` Service, or the configured endpoint."""
    return config.s3_endpoint_url or f"http://{S3}.{namespace_name(app, config)}.svc:{S3_PORT}"


def image_for(app: Application, config: DeployConfig, name: str) -> str:
    """The configured image of `name`, else the builder's repository with the configured tag."""
    if name in config.images:
        return config.images[name]
    return image_ref(repository_name(app.name, name), config.image_tag, config.registry)


# -- building blocks -----------------------------------------------------------------------------


def _meta(app: Application, config: DeployConfig, name: str, component: str, namespaced: bool = True,
          label_name: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespaced:
        meta["namespace"] = namespace_name(app, config)
    meta["labels"] = labels(app, config, label_name or name, component)
    return meta


def _container_security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}


def pod_security(volumes: bool = False) -> dict[str, Any]:
    """The pod-level securityContext of Pod Security `restricted` (fsGroup: volumes writable by the user)."""
    out: dict[str, Any] = {"runAsNonRoot": True, "runAsUser": RUN_AS_USER, "runAsGroup": RUN_AS_USER,
                           "seccompProfile": {"type": "RuntimeDefault"}}
    if volumes:
        out.update(fsGroup=RUN_AS_USER, fsGroupChangePolicy="OnRootMismatch")
    return out


def _user_env() -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in POD_USER_ENV.items()]


def _probe(path: str, port: str, initial: int, period: int, host: str | None = None) -> dict[str, Any]:
    get: dict[str, Any] = {"path": path, "port": port}
    if host:
        get["httpHeaders"] = [{"name": "Host", "value": host}]
    return {"httpGet": get, "initialDelaySeconds": initial, "periodSeconds": period, "timeoutSeconds": 3,
            "failureThreshold": 3}


def _service(app: Application, config: DeployConfig, name: str, component: str, port: int) -> Manifest:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": _meta(app, config, name, component),
            "spec": {"type": "ClusterIP", "selector": selector(app, config, name, component),
                     "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}]}}


def _deployment(app: Application, config: DeployConfig, name: str, component: str, pod: dict[str, Any],
                replicas: int | None = 1, strategy: str | None = None) -> Manifest:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector(app, config, name, component)},
        "template": {"metadata": {"labels": labels(app, config, name, component)}, "spec": pod},
    }
    if replicas is not None:  # None: an autoscaler owns the replica count
        spec["replicas"] = replicas
    if strategy:
        spec["strategy"] = {"type": strategy}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(app, config, name, component),
            "spec": spec}


# -- the objects -------------------------------------------------------------------------------


def namespace(app: Application, config: DeployConfig) -> Manifest:
    ns = namespace_name(app, config)
    meta = _meta(app, config, ns, "environment", namespaced=False)
    meta["labels"].update(POD_SECURITY_LABELS)
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def rbac(app: Application, config: DeployConfig) -> list[Manifest]:
    """ServiceAccount + namespaced Role (least privilege) + RoleBinding."""
    ns = namespace_name(app, config)
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(app, config, SERVICE_ACCOUNT, "rbac")},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": _meta(app, config, ROLE, "rbac"),
         "rules": [dict(rule) for rule in ROLE_RULES]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": _meta(app, config, ROLE, "rbac"),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROLE},
         "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": ns}]},
    ]


def secret(app: Application, config: DeployConfig) -> Manifest:
    """The tracker Secret: the given credentials; the bundled S3 server's keys are generated by deploy."""
    data = {k: base64.b64encode(v.encode()).decode() for k, v in sorted(config.secret_data().items())}
    meta = _meta(app, config, SECRET, "config")
    generated = config.generated_secret_keys()
    if generated:
        meta["annotations"] = {ANNOTATION_GENERATED: ",".join(generated)}
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": meta, "data": data}


def postgres_secret(app: Application, config: DeployConfig) -> Manifest:
    """PostgreSQL's password: generated at deploy time (no data here), never rotated."""
    meta = _meta(app, config, POSTGRES, "database")
    meta["annotations"] = {ANNOTATION_GENERATED: POSTGRES_PASSWORD_KEY}
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": meta}


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _s3_keys_env() -> list[dict[str, Any]]:
    return [_secret_env("AWS_ACCESS_KEY_ID", SECRET, "aws-access-key-id"),
            _secret_env("AWS_SECRET_ACCESS_KEY", SECRET, "aws-secret-access-key")]


def _pvc(app: Application, config: DeployConfig, name: str, component: str, label_name: str) -> Manifest:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": config.storage_size}}}
    if config.storage_class:
        spec["storageClassName"] = config.storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": _meta(app, config, name, component, label_name=label_name), "spec": spec}


def _data_volume(config: DeployConfig, claim: str) -> dict[str, Any]:
    """A claim, or an emptyDir with `ephemeral` storage."""
    if config.storage == "ephemeral":
        return {"name": "data", "emptyDir": {}}
    return {"name": "data", "persistentVolumeClaim": {"claimName": claim}}


def s3_server(app: Application, config: DeployConfig) -> list[Manifest]:
    """The bundled S3 server (versitygw, posix backend: a bucket is a directory of its volume):
    PVC (emptyDir when ephemeral) + Deployment + Service `scanflow-s3` on port 9000. The root keys
    are the tracker Secret's; the bucket `scanflow` is made before the server starts."""
    command = (f"mkdir -p {S3_DATA}/{S3_BUCKET} && exec versitygw --port :{S3_PORT} --health /health "
               f"posix {S3_DATA}")
    container: dict[str, Any] = {
        "name": "s3", "image": config.s3_image, "command": ["/bin/sh", "-c", command],
        "ports": [{"name": "s3", "containerPort": S3_PORT, "protocol": "TCP"}],
        "env": [_secret_env("ROOT_ACCESS_KEY_ID", SECRET, "aws-access-key-id"),
                _secret_env("ROOT_SECRET_ACCESS_KEY", SECRET, "aws-secret-access-key"),
                {"name": "VGW_REGION", "value": "us-east-1"}, *_user_env()],
        "readinessProbe": _probe("/health", "s3", 2, 5),
        "livenessProbe": _probe("/health", "s3", 30, 20),
        "volumeMounts": [{"name": "data", "mountPath": S3_DATA}],
        "securityContext": _container_security(),
    }
    pod = {"serviceAccountName": SERVICE_ACCOUNT, "automountServiceAccountToken": False,
           "securityContext": pod_security(volumes=True), "containers": [container],
           "volumes": [_data_volume(config, S3_PVC)]}
    service = _service(app, config, S3, "object-store", S3_PORT)
    service["spec"]["ports"] = [{"name": "s3", "port": S3_PORT, "targetPort": "s3", "protocol": "TCP"}]
    out = [] if config.storage == "ephemeral" else [_pvc(app, config, S3_PVC, "object-store", S3)]
    return [*out, service, _deployment(app, config, S3, "object-store", pod, replicas=1, strategy="Recreate")]


def postgres(app: Application, config: DeployConfig) -> list[Manifest]:
    """PostgreSQL for the tracker (`postgres` storage): Secret (generated password) + PVC +
    Deployment + Service `scanflow-postgres` on 5432; runs as the image's postgres uid (999)."""
    container: dict[str, Any] = {
        "name": "postgres", "image": config.postgres_image,
        "ports": [{"name": "postgres", "containerPort": POSTGRES_PORT, "protocol": "TCP"}],
        "env": [{"name": "POSTGRES_USER", "value": POSTGRES_USER}, {"name": "POSTGRES_DB", "value": POSTGRES_DB},
                _secret_env("POSTGRES_PASSWORD", POSTGRES, POSTGRES_PASSWORD_KEY),
                {"name": "PGDATA", "value": f"{POSTGRES_DATA}/pgdata"}, *_user_env()],
        "readinessProbe": {"exec": {"command": ["pg_isready", "-h", "127.0.0.1", "-p", str(POSTGRES_PORT),
                                                "-U", POSTGRES_USER, "-d", POSTGRES_DB]},
                           "initialDelaySeconds": 2, "periodSeconds": 5, "timeoutSeconds": 3, "failureThreshold": 3},
        "livenessProbe": {"tcpSocket": {"port": "postgres"}, "initialDelaySeconds": 30, "periodSeconds": 20},
        "startupProbe": {"tcpSocket": {"port": "postgres"}, "initialDelaySeconds": 2, "periodSeconds": 5,
                         "failureThreshold": STARTUP_CHECKS},  # initdb on the first start
        "volumeMounts": [{"name": "data", "mountPath": POSTGRES_DATA}, {"name": "run", "mountPath": "/var/run/postgresql"}],
        "securityContext": _container_security(),
    }
    security = pod_security(volumes=True)
    security.update(runAsUser=POSTGRES_UID, runAsGroup=POSTGRES_UID, fsGroup=POSTGRES_UID)
    pod = {"serviceAccountName": SERVICE_ACCOUNT, "automountServiceAccountToken": False,
           "securityContext": security, "containers": [container],
           "volumes": [_data_volume(config, POSTGRES_PVC), {"name": "run", "emptyDir": {}}]}
    service = _service(app, config, POSTGRES, "database", POSTGRES_PORT)
    service["spec"]["ports"] = [{"name": "postgres", "port": POSTGRES_PORT, "targetPort": "postgres",
                                 "protocol": "TCP"}]
    return [postgres_secret(app, config), _pvc(app, config, POSTGRES_PVC, "database", POSTGRES), service,
            _deployment(app, config, POSTGRES, "database", pod, replicas=1, strategy="Recreate")]


def agent_token_secret(app: Application, config: DeployConfig) -> Manifest:
    """The agents' shared bearer token: a Secret WITHOUT data here; `deploy` creates it with a random
    `token` when it is missing and never rotates it (so nothing that prints manifests shows it)."""
    meta = _meta(app, config, AGENT_TOKEN_SECRET, "agent")
    meta["annotations"] = {ANNOTATION_GENERATED: AGENT_TOKEN_KEY}
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": meta}


def network_policy(app: Application, config: DeployConfig) -> Manifest:
    """Agents, the tracker and the data stores accept connections only from pods of the team namespace."""
    match = {k: v for k, v in labels(app, config, "", "").items() if k in (LABEL_APP, LABEL_TEAM)}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": _meta(app, config, NETWORK_POLICY, "network"),
            "spec": {"podSelector": {"matchLabels": match, "matchExpressions": [
                         {"key": "app.kubernetes.io/component", "operator": "In", "values": ["agent", "tracker", "object-store", "database"]}]},
                     "policyTypes": ["Ingress"],
                     "ingress": [{"from": [{"podSelector": {}}]}]}}


def env_configmap(app: Application, config: DeployConfig) -> Manifest:
    """URIs and names every container may read (never credentials)."""
    ns = namespace_name(app, config)
    urls = agent_urls(app, config)
    data = {
        "MLFLOW_TRACKING_URI": tracking_uri(app, config),
        "SCANFLOW_APP": app.name,
        "SCANFLOW_TEAM": team_of(app, config),
        "SCANFLOW_NAMESPACE": ns,
        "SCANFLOW_AGENT_URLS": json.dumps(urls, sort_keys=True),
        "SCANFLOW_HOME": AGENT_HOME,
    }
    for agent in app.agents:
        data[f"SCANFLOW_AGENT_{re.sub(r'[^A-Z0-9]', '_', agent.name.upper())}_URL"] = urls[agent.name]
    for svc in app.services:
        data[f"SCANFLOW_SERVICE_{re.sub(r'[^A-Z0-9]', '_', svc.name.upper())}_URL"] = \
            f"http://{dns_label(svc.name)}.{ns}.svc:{SERVICE_PORT}"
    endpoint = s3_endpoint(app, config)
    data.update(MLFLOW_S3_ENDPOINT_URL=endpoint, SCANFLOW_S3_ENDPOINT_URL=endpoint, AWS_DEFAULT_REGION="us-east-1")
    if config.bundled_s3:
        data["SCANFLOW_RUN_STORE"] = RUN_STORE
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(app, config, ENV_CONFIGMAP, "config"),
            "data": dict(sorted(data.items()))}


def agents_configmap(app: Application, config: DeployConfig) -> Manifest:
    """One `<agent>.json` spec per agent (what `python -m scanflow_jupyter.agents.service` loads)."""
    from scanflow_jupyter.agents.loader import agent_spec

    def spec(a: Agent) -> str:
        doc = agent_spec(a, app)
        doc["notebook"] = PurePosixPath(str(app.notebook).replace("\\", "/")).name  # no host paths in-cluster
        return json.dumps(doc, indent=1, sort_keys=True, default=str)

    data = {f"{dns_label(a.name)}.json": spec(a) for a in app.agents}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(app, config, AGENTS_CONFIGMAP, "agent"),
            "data": data}


def tracker(app: Application, config: DeployConfig) -> list[Manifest]:
    """PVC (unless everything is external) + MLflow server Deployment + ClusterIP Service."""
    ns = namespace_name(app, config)
    out: list[Manifest] = []
    if config.storage == "postgres":
        artifacts = config.tracker_artifacts or TRACKER_ARTIFACTS_S3
        # +psycopg2: SQLAlchemy 2.1 defaults to psycopg 3, the tracker image has psycopg2
        db = f"postgresql+psycopg2://{POSTGRES_USER}:$(POSTGRES_PASSWORD)@{POSTGRES}.{ns}.svc:{POSTGRES_PORT}/{POSTGRES_DB}"
        env: list[dict[str, Any]] = [_secret_env("POSTGRES_PASSWORD", POSTGRES, POSTGRES_PASSWORD_KEY),
                                     {"name": "BACKEND_STORE_URI", "value": db}]
    else:
        artifacts = config.tracker_artifacts or SQLITE_ARTIFACTS
        env = [_secret_env("BACKEND_STORE_URI", SECRET, "backend-store-uri")]
    env += [{"name": "ARTIFACTS_DESTINATION", "value": artifacts}, *_user_env(),
            # MLflow 3's job runner (huey consumers, ~1 GB): Scanflow submits no server-side jobs
            {"name": "MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "value": "false"}]
    if artifacts.startswith("s3://"):
        env += _s3_keys_env()
        env += [{"name": "MLFLOW_S3_ENDPOINT_URL",
                 "valueFrom": {"configMapKeyRef": {"name": ENV_CONFIGMAP, "key": "MLFLOW_S3_ENDPOINT_URL"}}},
                {"name": "AWS_DEFAULT_REGION", "value": "us-east-1"}]
    elif "aws-access-key-id" in config.secret_data():
        env += _s3_keys_env()
    allowed = ",".join([TRACKER, f"{TRACKER}:*", f"{TRACKER}.{ns}*", "localhost*", "127.0.0.1*"])
    container: dict[str, Any] = {
        "name": TRACKER, "image": config.tracker_image,
        "command": ["mlflow", "server"],
        "args": ["--host", "0.0.0.0", "--port", str(TRACKER_PORT), "--workers", "1",
                 "--backend-store-uri", "$(BACKEND_STORE_URI)", "--serve-artifacts",
                 "--artifacts-destination", "$(ARTIFACTS_DESTINATION)", "--allowed-hosts", allowed],
        "ports": [{"name": "http", "containerPort": TRACKER_PORT, "protocol": "TCP"}],
        "env": env,
        "readinessProbe": _probe("/health", "http", 5, 10, host="localhost"),
        "livenessProbe": _probe("/health", "http", 30, 20, host="localhost"),
        # the first start migrates the database (minutes on a busy node): no liveness kill before it answers
        "startupProbe": {**_probe("/health", "http", 5, 5, host="localhost"), "failureThreshold": STARTUP_CHECKS},
        "securityContext": _container_security(),
    }
    resources = config.tracker_resources.to_manifest()
    if resources:
        container["resources"] = resources
    pod: dict[str, Any] = {"serviceAccountName": SERVICE_ACCOUNT, "automountServiceAccountToken": False,
                           "securityContext": pod_security(volumes=config.needs_pvc), "containers": [container]}
    if config.needs_pvc:
        out.append(_pvc(app, config, TRACKER_PVC, "tracker", TRACKER))
        container["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
        pod["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": TRACKER_PVC}}]
    elif config.storage == "ephemeral":
        container["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
        pod["volumes"] = [{"name": "data", "emptyDir": {}}]
        pod["securityContext"] = pod_security(volumes=True)
    out.append(_service(app, config, TRACKER, "tracker", TRACKER_PORT))
    out.append(_deployment(app, config, TRACKER, "tracker", pod, replicas=1,
                           strategy="Recreate" if config.needs_pvc else None))
    return out


def agent_hosts(app: Application, config: DeployConfig, a: Agent) -> list[str]:
    """The Host names of agent `a`'s Service (what its peers may call it by)."""
    name, ns = dns_label(a.name), namespace_name(app, config)
    return [name, f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local"]


def agent(app: Application, config: DeployConfig, a: Agent) -> list[Manifest]:
    """Deployment + Service of one agent (its HTTP service on port 8080, probes on the open /healthz;
    every other route needs the bearer token of the `scanflow-agent-token` Secret)."""
    name = dns_label(a.name)
    container: dict[str, Any] = {
        "name": "agent", "image": image_for(app, config, a.name),
        "command": ["python", "-m", "scanflow_jupyter.agents.service", "--spec", f"{AGENT_SPEC_DIR}/spec.json",
                    "--host", "0.0.0.0", "--port", str(AGENT_PORT), "--state-dir", f"{AGENT_HOME}/state"],
        "ports": [{"name": "http", "containerPort": AGENT_PORT, "protocol": "TCP"}],
        "envFrom": [{"configMapRef": {"name": ENV_CONFIGMAP}}],
        "env": [{"name": "SCANFLOW_AGENT", "value": a.name}, {"name": "PYTHONUNBUFFERED", "value": "1"},
                *_user_env(),
                {"name": "SCANFLOW_AGENT_TOKEN",
                 "valueFrom": {"secretKeyRef": {"name": AGENT_TOKEN_SECRET, "key": AGENT_TOKEN_KEY}}},
                {"name": "SCANFLOW_AGENT_ALLOWED_HOSTS", "value": ",".join(agent_hosts(app, config, a))},
                # the object store's keys: the `new_predictions` trigger reads the services' inference logs
                *(_s3_keys_env() if config.bundled_s3 or "aws-access-key-id" in config.secret_data() else [])],
        "readinessProbe": _probe("/healthz", "http", 3, 10, host="localhost"),
        "livenessProbe": _probe("/healthz", "http", 30, 20, host="localhost"),
        "volumeMounts": [{"name": "spec", "mountPath": AGENT_SPEC_DIR, "readOnly": True},
                         {"name": "home", "mountPath": AGENT_HOME}],
        "securityContext": _container_security(),
    }
    resources = config.agent_resources.to_manifest()
    if resources:
        container["resources"] = resources
    pod = {"serviceAccountName": SERVICE_ACCOUNT, "securityContext": pod_security(volumes=True),
           "containers": [container],
           "volumes": [{"name": "spec", "configMap": {"name": AGENTS_CONFIGMAP,
                                                      "items": [{"key": f"{name}.json", "path": "spec.json"}]}},
                       {"name": "home", "emptyDir": {}}]}
    return [_service(app, config, name, "agent", AGENT_PORT),
            _deployment(app, config, name, "agent", pod, replicas=1)]


def services_configmap(app: Application, config: DeployConfig) -> Manifest:
    """One `<service>.json` per `%%service`: the spec `python -m scanflow_jupyter.services.server` serves
    (the same ServiceSpec as `scanflow services up`; custom code carries the notebook's setup cells)."""
    from scanflow_jupyter.services.spec import ServiceSpec

    setup = "\n\n".join(block.source for block in app.setup)
    notebook = PurePosixPath(str(app.notebook).replace("\\", "/")).name  # no host paths in-cluster

    def spec(s: Service) -> str:
        source = (setup + "\n\n" + s.source) if setup and not s.model else s.source
        doc = ServiceSpec(name=s.name, app=app.name, notebook=notebook, cell=s.cell, source=source,
                          model=s.model).to_dict()
        doc["options"] = {"poll_s": SERVICE_POLL_S}
        return json.dumps(doc, indent=1, sort_keys=True)

    data = {f"{dns_label(s.name)}.json": spec(s) for s in app.services}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(app, config, SERVICES_CONFIGMAP, "service"),
            "data": data}


def service_hosts(app: Application, config: DeployConfig, s: Service) -> list[str]:
    """The Host names of service `s`'s Service (loopback names are always allowed)."""
    name, ns = dns_label(s.name), namespace_name(app, config)
    return [name, f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local"]


def online_service(app: Application, config: DeployConfig, s: Service) -> list[Manifest]:
    """Deployment + Service + HorizontalPodAutoscaler (autoscaling/v2) of one `%%service`: the pods run
    `python -m scanflow_jupyter.services.server` (as `scanflow serve` does locally) on the spec of the
    `scanflow-services` ConfigMap, with the environment's tracker (`MLFLOW_TRACKING_URI`: models and
    the alias poller) and object store (the inference log, when the bundled S3 server holds the run
    store); ready once the model is loaded (`/health`)."""
    name = dns_label(s.name)
    command = ["python", "-m", SERVICE_COMMAND_MODULE, "--spec", f"{SERVICE_SPEC_DIR}/spec.json",
               "--host", "0.0.0.0", "--port", str(SERVICE_PORT)]
    env: list[dict[str, Any]] = [
        {"name": "SCANFLOW_SERVICE", "value": s.name}, {"name": "PYTHONUNBUFFERED", "value": "1"}, *_user_env(),
        # POST /reload needs the agents' token (optional: an environment without agents has no such Secret)
        {"name": "SCANFLOW_AGENT_TOKEN",
         "valueFrom": {"secretKeyRef": {"name": AGENT_TOKEN_SECRET, "key": AGENT_TOKEN_KEY, "optional": True}}},
        {"name": "SCANFLOW_AGENT_ALLOWED_HOSTS", "value": ",".join(service_hosts(app, config, s))}]
    if config.bundled_s3 or "aws-access-key-id" in config.secret_data():
        env += _s3_keys_env()
    container: dict[str, Any] = {
        "name": "service", "image": image_for(app, config, s.name), "command": command,
        "ports": [{"name": "http", "containerPort": SERVICE_PORT, "protocol": "TCP"}],
        "envFrom": [{"configMapRef": {"name": ENV_CONFIGMAP}}],
        "env": env,
        "readinessProbe": _probe("/health", "http", 2, 5),
        "livenessProbe": _probe("/health", "http", 30, 20),
        # the first load downloads the model from the tracker: no liveness kill before it is loaded
        "startupProbe": {**_probe("/health", "http", 2, 5), "failureThreshold": STARTUP_CHECKS},
        "volumeMounts": [{"name": "spec", "mountPath": SERVICE_SPEC_DIR, "readOnly": True},
                         {"name": "home", "mountPath": AGENT_HOME}],
        "securityContext": _container_security(),
    }
    resources = config.service_resources.to_manifest()
    if resources:
        container["resources"] = resources
    pod = {"serviceAccountName": SERVICE_ACCOUNT, "automountServiceAccountToken": False,
           "securityContext": pod_security(volumes=True), "containers": [container],
           "volumes": [{"name": "spec", "configMap": {"name": SERVICES_CONFIGMAP,
                                                      "items": [{"key": f"{name}.json", "path": "spec.json"}]}},
                       {"name": "home", "emptyDir": {}}]}
    replicas = max(1, s.replicas)
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
           "metadata": _meta(app, config, name, "service"),
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                    "minReplicas": replicas, "maxReplicas": max(replicas * config.hpa_max_factor, replicas),
                    "metrics": [{"type": "Resource", "resource": {
                        "name": "cpu", "target": {"type": "Utilization",
                                                  "averageUtilization": config.hpa_cpu_utilization}}}]}}
    deployment = _deployment(app, config, name, "service", pod, replicas=None)
    # a rollout starts the new pod and waits for its /health before it stops an old one
    deployment["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    return [_service(app, config, name, "service", SERVICE_PORT), deployment, hpa]


def build_manifests(app: Application, config: DeployConfig) -> list[Manifest]:
    """Every object of the team environment, in the order they must be applied."""
    targets(app)  # refuse name clashes first
    out = [namespace(app, config), *rbac(app, config), network_policy(app, config), secret(app, config),
           env_configmap(app, config)]
    if app.agents:
        out += [agent_token_secret(app, config), agents_configmap(app, config)]
    if app.services:
        out.append(services_configmap(app, config))
    if config.bundled_s3:
        out += s3_server(app, config)
    if config.storage == "postgres":
        out += postgres(app, config)
    out += tracker(app, config)
    for a in app.agents:
        out += agent(app, config, a)
    for s in app.services:
        out += online_service(app, config, s)
    return order(out)


def generated_keys(m: Manifest) -> list[str]:
    """The data keys `deploy` generates for manifest `m` (the agent token Secret), else []."""
    text = ((m.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_GENERATED, "")
    return [k for k in text.split(",") if k]


def order(manifests: list[Manifest]) -> list[Manifest]:
    """Stable sort by `KIND_ORDER` (unknown kinds, e.g. Argo Workflows, last)."""
    rank = {kind: i for i, kind in enumerate(KIND_ORDER)}
    return sorted(manifests, key=lambda m: rank.get(m.get("kind", ""), len(KIND_ORDER)))


def describe(m: Manifest) -> str:
    """`Kind/name` (with the namespace when there is one) for messages."""
    meta = m.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{m.get('kind', '?')}/{meta.get('name', '?')}" + (f" (namespace {ns})" if ns else "")


def to_yaml(manifests: list[Manifest]) -> str:
    """One multi-document YAML text (what `scanflow export --to k8s` writes)."""
    from scanflow_jupyter.kubernetes.yaml_text import dump_all

    return dump_all(manifests)
