"""Settings of a Kubernetes team environment: where it goes, which images, how MLflow stores data.

Every value comes from (highest first) an explicit argument, an environment variable, a default:

| setting | variable | default |
| --- | --- | --- |
| kubeconfig file(s) | `KUBECONFIG` (read by the `kubernetes` package; `a:b` merges) | `~/.kube/config` |
| kubeconfig context | `SCANFLOW_K8S_CONTEXT` | the kubeconfig's current context |
| namespace | `SCANFLOW_K8S_NAMESPACE` | `scanflow-<app>-<team>` |
| image registry | `SCANFLOW_REGISTRY` | none (`scanflow/<app>-<name>:<tag>` as built) |
| tracker database | `SCANFLOW_TRACKER_DB_URI` (e.g. `postgresql://u:p@host/db`) | sqlite on a PVC |
| tracker artifacts | `SCANFLOW_TRACKER_ARTIFACTS` (e.g. `s3://bucket/prefix`) | the PVC |
| PVC storage class | `SCANFLOW_K8S_STORAGE_CLASS` | the cluster's default |
| tracker storage | `SCANFLOW_K8S_STORAGE`: `sqlite`, `postgres` or `ephemeral` | `sqlite` |
| tracker image | `SCANFLOW_K8S_TRACKER_IMAGE` | `ghcr.io/mlflow/mlflow:v<installed mlflow>` |
| S3 server image | `SCANFLOW_K8S_S3_IMAGE` | `versity/versitygw:v1.8.0` |
| PostgreSQL image | `SCANFLOW_K8S_POSTGRES_IMAGE` | `postgres:15` |
| S3 endpoint / keys | `MLFLOW_S3_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (read only when tracker artifacts are set) | none |

Credentials (the database URI, the S3 keys) only ever go into the environment's Secret; every
container reads them through `env[].valueFrom.secretKeyRef`. `public()` is what may be shown.
Unless an external S3 endpoint is set, the environment runs its own S3 server (`scanflow-s3`)
whose keys, like the PostgreSQL password of `postgres` storage, are generated at deploy time.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

TRACKER_PORT = 5000
AGENT_PORT = 8080
SERVICE_PORT = 8080
DEFAULT_TAG = "latest"
SQLITE_URI = "sqlite:////data/mlflow.db"
SQLITE_ARTIFACTS = "/data/artifacts"
S3_PORT = 9000
S3_BUCKET = "scanflow"  # created by the S3 server's container at start
POSTGRES_PORT = 5432
POSTGRES_UID = 999  # the postgres user of Debian's (and the official) PostgreSQL images
STORAGE_MODES = ("sqlite", "postgres", "ephemeral")
DEFAULT_S3_IMAGE = "versity/versitygw:v1.8.0"
DEFAULT_POSTGRES_IMAGE = "postgres:15"


class ConfigError(ValueError):
    """A deploy setting is wrong; the message says which one and how to fix it."""


def _mlflow_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mlflow")
    except PackageNotFoundError:
        return "3.1.0"


@dataclass
class ComponentResources:
    """Requests and limits of one kind of container (Kubernetes quantities)."""

    cpu_request: str | None = None
    memory_request: str | None = None
    cpu_limit: str | None = None
    memory_limit: str | None = None

    def to_manifest(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for key, value in (("requests", {"cpu": self.cpu_request, "memory": self.memory_request}),
                           ("limits", {"cpu": self.cpu_limit, "memory": self.memory_limit})):
            kept = {k: str(v) for k, v in value.items() if v is not None}
            if kept:
                out[key] = kept
        return out


@dataclass
class DeployConfig:
    """Where and how one application's team environment is deployed."""

    context: str | None = None
    kubeconfig: str | None = None
    namespace: str | None = None
    team: str | None = None
    registry: str | None = None
    images: dict[str, str] = field(default_factory=dict)  # name -> full image reference
    image_tag: str = DEFAULT_TAG
    tracker_image: str = ""
    storage_mode: str | None = None  # sqlite (default) | postgres | ephemeral
    s3_image: str = DEFAULT_S3_IMAGE
    postgres_image: str = DEFAULT_POSTGRES_IMAGE
    tracker_db_uri: str | None = None  # credential: Secret only
    tracker_artifacts: str | None = None
    s3_endpoint_url: str | None = None
    aws_access_key_id: str | None = None  # credential: Secret only
    aws_secret_access_key: str | None = None  # credential: Secret only
    storage_class: str | None = None
    storage_size: str = "5Gi"
    agent_resources: ComponentResources = field(default_factory=lambda: ComponentResources(
        "50m", "128Mi", None, "512Mi"))
    tracker_resources: ComponentResources = field(default_factory=lambda: ComponentResources(
        "100m", "256Mi", None, "1Gi"))
    service_resources: ComponentResources = field(default_factory=lambda: ComponentResources(
        "100m", "256Mi", None, "1Gi"))
    hpa_max_factor: int = 3
    hpa_cpu_utilization: int = 70

    def __post_init__(self) -> None:
        if not self.tracker_image:
            self.tracker_image = f"ghcr.io/mlflow/mlflow:v{_mlflow_version()}"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> DeployConfig:
        """Settings from the environment, then `overrides` (None values are ignored)."""
        env = dict(os.environ if env is None else env)

        def pick(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        values: dict[str, Any] = {
            "context": pick("SCANFLOW_K8S_CONTEXT"),
            "namespace": pick("SCANFLOW_K8S_NAMESPACE"),
            "registry": pick("SCANFLOW_REGISTRY"),
            "tracker_image": pick("SCANFLOW_K8S_TRACKER_IMAGE") or "",
            "storage_mode": pick("SCANFLOW_K8S_STORAGE"),
            "s3_image": pick("SCANFLOW_K8S_S3_IMAGE") or DEFAULT_S3_IMAGE,
            "postgres_image": pick("SCANFLOW_K8S_POSTGRES_IMAGE") or DEFAULT_POSTGRES_IMAGE,
            "tracker_db_uri": pick("SCANFLOW_TRACKER_DB_URI"),
            "tracker_artifacts": pick("SCANFLOW_TRACKER_ARTIFACTS"),
            "storage_class": pick("SCANFLOW_K8S_STORAGE_CLASS"),
        }
        if values["tracker_artifacts"]:  # the shell's AWS keys go to the cluster only for the tracker's store
            values.update(s3_endpoint_url=pick("MLFLOW_S3_ENDPOINT_URL"), aws_access_key_id=pick("AWS_ACCESS_KEY_ID"),
                          aws_secret_access_key=pick("AWS_SECRET_ACCESS_KEY"))
        values.update({k: v for k, v in overrides.items() if v is not None})
        config = cls(**values)
        config.check()
        return config

    # -- derived settings

    @property
    def storage(self) -> str:
        """"sqlite" (sqlite + artifacts on a PVC), "postgres" (PostgreSQL + the S3 server, in the
        namespace), "ephemeral" (sqlite, artifacts and objects on emptyDir volumes) or "external"
        (SCANFLOW_TRACKER_DB_URI: a database server of your own)."""
        return "external" if self.tracker_db_uri else (self.storage_mode or "sqlite")

    @property
    def needs_pvc(self) -> bool:
        """True if the tracker itself needs a PersistentVolumeClaim."""
        if self.storage in ("postgres", "ephemeral"):
            return False
        return self.storage == "sqlite" or not self.tracker_artifacts

    @property
    def bundled_s3(self) -> bool:
        """True if the environment runs its own S3 server (no external endpoint configured)."""
        return not self.s3_endpoint_url

    def generated_secret_keys(self) -> list[str]:
        """Keys of the tracker Secret that deploy generates: the bundled S3 server's keys, unless given."""
        if self.bundled_s3 and not self.aws_access_key_id:
            return ["aws-access-key-id", "aws-secret-access-key"]
        return []

    def check(self) -> None:
        """Refuse settings that cannot work, before any manifest is made."""
        if self.storage_mode is not None and self.storage_mode not in STORAGE_MODES:
            raise ConfigError(f"unknown tracker storage '{self.storage_mode}' (--storage / SCANFLOW_K8S_STORAGE). "
                              f"Fix: use one of {', '.join(STORAGE_MODES)}.")
        if self.storage_mode in ("postgres", "ephemeral") and self.tracker_db_uri:
            raise ConfigError(f"--storage {self.storage_mode} runs the tracker's database in the environment, but "
                              "SCANFLOW_TRACKER_DB_URI names another one. Fix: unset one of them.")
        if self.storage_mode == "postgres" and self.tracker_artifacts and not self.s3_endpoint_url:
            raise ConfigError("--storage postgres keeps artifacts in the environment's S3 server, but "
                              "SCANFLOW_TRACKER_ARTIFACTS names another store without MLFLOW_S3_ENDPOINT_URL. "
                              "Fix: unset SCANFLOW_TRACKER_ARTIFACTS, or set MLFLOW_S3_ENDPOINT_URL too.")
        if self.tracker_db_uri and not re.match(r"^[a-z][a-z0-9+]*://", self.tracker_db_uri):
            raise ConfigError("the tracker database URI (SCANFLOW_TRACKER_DB_URI) is not a URI. "
                              "Fix: use e.g. postgresql://USER:PASSWORD@HOST:5432/mlflow.")
        if self.tracker_db_uri and self.tracker_db_uri.startswith("sqlite"):
            raise ConfigError("SCANFLOW_TRACKER_DB_URI must name a database server (postgresql://...); "
                              "the default sqlite store on a PVC needs no setting. Fix: unset it.")
        if self.tracker_artifacts and not re.match(r"^(s3|gs|wasbs|hdfs)://", self.tracker_artifacts):
            raise ConfigError(f"tracker artifacts '{self.tracker_artifacts}' must be an object-store URI. "
                              "Fix: use e.g. s3://bucket/mlflow (or leave it unset for the PVC).")
        from scanflow_jupyter.redact import redact_uri

        for name, value in (("MLFLOW_S3_ENDPOINT_URL", self.s3_endpoint_url),
                            ("SCANFLOW_TRACKER_ARTIFACTS", self.tracker_artifacts)):
            if value and redact_uri(value) != value:  # these go into the ConfigMap, readable by every pod
                raise ConfigError(f"{name} carries credentials ({redact_uri(value)}): it would be stored in a "
                                  "ConfigMap. Fix: remove them from the URI and set AWS_ACCESS_KEY_ID / "
                                  "AWS_SECRET_ACCESS_KEY, which go into the environment's Secret.")
        if bool(self.aws_access_key_id) != bool(self.aws_secret_access_key):
            raise ConfigError("only one of AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY is set. "
                              "Fix: set both (or neither, when the cluster grants S3 access itself).")
        if self.hpa_max_factor < 1:
            raise ConfigError("hpa_max_factor must be at least 1.")
        for name, ref in self.images.items():
            if not ref or any(c.isspace() for c in ref):
                raise ConfigError(f"image of '{name}' is empty or contains spaces: {ref!r}.")

    def secret_data(self) -> dict[str, str]:
        """Key -> value of the environment's Secret (credentials only live here)."""
        data = {} if self.storage == "postgres" else {"backend-store-uri": self.tracker_db_uri or SQLITE_URI}
        if self.aws_access_key_id and self.aws_secret_access_key:
            data["aws-access-key-id"] = self.aws_access_key_id
            data["aws-secret-access-key"] = self.aws_secret_access_key
        return data

    def credentials(self) -> list[str]:
        """Every secret value (also the password inside the database URI), for leak checks."""
        values = [v for v in (self.tracker_db_uri, self.aws_access_key_id, self.aws_secret_access_key) if v]
        if self.tracker_db_uri:
            match = re.match(r"^[^:]+://[^:/@]*:([^@]+)@", self.tracker_db_uri)
            if match:
                values.append(match.group(1))
        return values

    def public(self) -> dict[str, Any]:
        """The settings without credential values (what `--json` output and logs may show)."""
        return {"context": self.context, "namespace": self.namespace, "team": self.team,
                "registry": self.registry, "images": dict(self.images), "tracker_image": self.tracker_image,
                "storage": self.storage, "tracker_artifacts": self.tracker_artifacts,
                "s3_image": self.s3_image if self.bundled_s3 else None,
                "postgres_image": self.postgres_image if self.storage == "postgres" else None,
                "s3_endpoint_url": self.s3_endpoint_url, "storage_class": self.storage_class,
                "storage_size": self.storage_size,
                "credentials": sorted({k for k in self.secret_data() if k != "backend-store-uri"
                                       or self.tracker_db_uri} | set(self.generated_secret_keys()))}


def images_from_build_report(doc: dict[str, Any]) -> dict[str, str]:
    """Name -> image reference from the JSON printed by `scanflow build --json`."""
    steps = doc.get("steps") if isinstance(doc, dict) else None
    if not isinstance(steps, dict):
        raise ConfigError("the images file is not the output of `scanflow build --json` (no 'steps' object). "
                          "Fix: scanflow build NOTEBOOK --push REGISTRY --json > images.json")
    out = {}
    for name, entry in steps.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("image"), str):
            raise ConfigError(f"the images file has no image for '{name}'.")
        out[name] = entry["image"]
    return out
