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
| tracker image | `SCANFLOW_K8S_TRACKER_IMAGE` | `ghcr.io/mlflow/mlflow:v<installed mlflow>` |
| S3 endpoint / keys | `MLFLOW_S3_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (read only when tracker artifacts are set) | none |

Credentials (the database URI, the S3 keys) only ever go into the environment's Secret; every
container reads them through `env[].valueFrom.secretKeyRef`. `public()` is what may be shown.
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
        """"sqlite" (sqlite + artifacts on a PVC) or "external" (database + object store)."""
        return "external" if self.tracker_db_uri else "sqlite"

    @property
    def needs_pvc(self) -> bool:
        return self.storage == "sqlite" or not self.tracker_artifacts

    def check(self) -> None:
        """Refuse settings that cannot work, before any manifest is made."""
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
        data = {"backend-store-uri": self.tracker_db_uri or SQLITE_URI}
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
                "s3_endpoint_url": self.s3_endpoint_url, "storage_class": self.storage_class,
                "storage_size": self.storage_size,
                "credentials": sorted(k for k in self.secret_data() if k != "backend-store-uri"
                                      or self.tracker_db_uri)}


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
