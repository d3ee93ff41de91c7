"""The real jupyter_server of tests/server (pytest-jupyter fixtures and hooks) for the REST fuzz corpus."""

from tests.server.conftest import *  # noqa: F403
from tests.server.conftest import _isolated_env  # noqa: F401 - autouse: no SCANFLOW_HOME / MLFLOW_TRACKING_URI
