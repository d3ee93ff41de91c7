"""Names shared by the backends, the image builder and step code (standard library only: cheap to import).

Each was defined in several modules with "= other.module.NAME" comments; they live here now.
"""

from __future__ import annotations

STEP_NOTEBOOK = "/opt/scanflow/step.ipynb"  # the step notebook baked into every step image
PARAM_ENV_PREFIX = "SCANFLOW_PARAM_"  # a Kubernetes step's pipeline parameter NAME arrives as env SCANFLOW_PARAM_NAME
ENV_CONFIGMAP = "scanflow-env"  # the team environment's ConfigMap (tracking URI, S3 endpoint)
ENV_SECRET = "scanflow-tracker"  # the team environment's Secret (aws-access-key-id, ...)
MASK = "***"  # what a redacted secret is replaced with
