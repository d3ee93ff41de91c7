"""The Scanflow jupyter_server extension: REST API under `<base_url>scanflow/api/`.

Enabled by `jupyter-config/jupyter_server_config.d/scanflow_jupyter.json` (installed with the
package). Settings: `c.Scanflow.<trait>` (see `scanflow_jupyter.server.config.Scanflow`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["ScanflowExtension"]

MLFLOW_CLIENTS = 8  # tracking URIs whose MLflow client is kept


class ScanflowExtension:
    """Per-server state shared by the handlers (`settings["scanflow"]`)."""

    def __init__(self, root: Path, config: Any) -> None:
        from scanflow_jupyter.server.jobs import JobManager
        from scanflow_jupyter.server.run_manager import RunManager
        from scanflow_jupyter.tracking import scanflow_home

        self.root = Path(root).resolve()
        self.config = config
        self.home = scanflow_home(self.root)
        env = {"MLFLOW_TRACKING_URI": config.tracking_uri} if config.tracking_uri else {}
        self.runs = RunManager(self.root, self.home, env, warm=config.warm_worker)
        self.jobs = JobManager(self.root, self.home, env)
        self._mlflow: dict[str, Any] = {}
        from scanflow_jupyter.server.mlflow_ui import MlflowUi

        self.mlflow_ui = MlflowUi(self.home)  # the "Open in MLflow" links' UI, started on demand

    def tracking_uri(self, user: str = "") -> str:
        """The user's setting, else the trait, else $MLFLOW_TRACKING_URI, else the project's sqlite store."""
        from scanflow_jupyter.tracking import default_tracking_uri

        return (user or self.config.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
                or default_tracking_uri(self.home))

    def mlflow(self, user_uri: str = "") -> Any:
        """The MLflow views of the effective tracking URI (a few clients are kept, newest last)."""
        from scanflow_jupyter.server.mlflow_api import MlflowService

        uri = self.tracking_uri(user_uri)
        service = self._mlflow.pop(uri, None) or MlflowService(uri)
        self._mlflow[uri] = service
        while len(self._mlflow) > MLFLOW_CLIENTS:
            self._mlflow.pop(next(iter(self._mlflow)))
        return service


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "scanflow_jupyter.server"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Register the handlers and the shared state."""
    from scanflow_jupyter._ast_guard import install as guard_ast
    from scanflow_jupyter.server.config import Scanflow

    guard_ast()  # handlers validate notebooks on executor threads
    from scanflow_jupyter.server.handlers import routes

    config = Scanflow(config=serverapp.config, parent=serverapp)
    ext = ScanflowExtension(Path(serverapp.root_dir), config)
    web_app = serverapp.web_app
    web_app.settings["scanflow"] = ext
    from scanflow_jupyter.server.mlflow_ui import stop_with_server

    stop_with_server(serverapp, ext.mlflow_ui.stop)
    stop_with_server(serverapp, ext.runs.stop_warm)  # an idle warm worker (also dies with the process)
    # the sidebar sends its tracking_uri setting as a query parameter: the access log must not show it
    scrubbed = list(web_app.settings.get("extra_log_scrub_param_keys") or [])
    web_app.settings["extra_log_scrub_param_keys"] = [*scrubbed, "tracking_uri"]
    web_app.add_handlers(".*$", routes(web_app.settings["base_url"]))
    serverapp.log.info("Scanflow API at %sscanflow/api/ (root %s, run store %s)",
                       web_app.settings["base_url"], ext.root, ext.home / "runs")


# jupyter_server < 2 / notebook-style names
load_jupyter_server_extension = _load_jupyter_server_extension
