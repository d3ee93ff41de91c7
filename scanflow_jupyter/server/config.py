"""Settings of the server extension: `c.Scanflow.<trait> = ...` in jupyter_server_config.py."""

from __future__ import annotations

from traitlets import Bool, Unicode
from traitlets.config import Configurable


class Scanflow(Configurable):
    """Scanflow server extension settings (empty string = not set).

    These are the defaults of the sidebar's requests: a user setting sent with a request wins over
    the trait, the trait over the server's environment (see scanflow_jupyter.server.settings).
    """

    tracking_uri = Unicode(
        "", config=True,
        help="MLflow tracking URI of the Runs view (default: $MLFLOW_TRACKING_URI, else "
             "sqlite:///<root>/.scanflow/mlflow.db). Also given to the runs started from the UI.",
    )
    default_backend = Unicode("local", config=True, help="Backend preselected in the sidebar.")
    registry = Unicode("", config=True, help="Image registry for `scanflow build --push`.")
    kube_context = Unicode("", config=True, help="kubeconfig context (default: the current one).")
    namespace = Unicode("", config=True, help="Kubernetes namespace (default: scanflow-<app>-<team>).")
    base_image = Unicode("", config=True, help="Base image of step images (`scanflow build --base`).")
    warm_worker = Bool(
        True, config=True,
        help="Keep a `scanflow run` process ready (runner imported, kernel zygote started) so a Run from "
             "the sidebar starts at once; False: each run starts a fresh process.",
    )

    def to_dict(self) -> dict[str, str | None]:
        """The settings as the `GET config` route shows them (unset → null)."""
        names = ("tracking_uri", "default_backend", "registry", "kube_context", "namespace", "base_image")
        return {name: (getattr(self, name) or None) for name in names}
