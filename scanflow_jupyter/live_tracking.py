"""MLflow in the live kernel: after `%load_ext scanflow_jupyter`, fluent MLflow calls
(`mlflow.log_metric`, `mlflow.start_run`, autolog) go to the project's store and the app's
experiment, as the pipeline's do, instead of MLflow's default `./mlflow.db` / `Default`.

* Store: `sqlite:///<SCANFLOW_HOME or cwd/.scanflow>/mlflow.db` (created or upgraded like the
  CLI's, `tracking_store.ensure_sqlite_store`), artifacts under `.scanflow/mlartifacts/<app>`.
* Experiment: the `%scanflow_app` name, else the notebook's name (`default_app_name`).
* Runs started here are tagged `scanflow.interactive=true` (an MLflow run-context provider).
* The user's choice wins: nothing is changed when `MLFLOW_TRACKING_URI` is set or
  `mlflow.set_tracking_uri` was called before; `MLFLOW_EXPERIMENT_NAME` / `_ID` keep the experiment.

Loading the extension does not import mlflow: when mlflow is not imported yet, a one-shot
import hook configures it right after the user's `import mlflow`.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
from collections.abc import Callable
from typing import Any

INTERACTIVE_TAG = "scanflow.interactive"

_configured_uri: str | None = None  # the store this module pointed MLflow at
_user_experiment = False  # MLFLOW_EXPERIMENT_NAME/_ID set by the user (mlflow.set_experiment sets _ID too)
_app_name: Callable[[], str | None] = lambda: None  # noqa: E731 - replaced by activate()


def _warn(text: str) -> None:
    print(f"scanflow: {text}", file=sys.stderr)


def activate(app_name: Callable[[], str | None]) -> None:
    """Route this kernel's MLflow calls to the project (see module doc); `app_name()` gives the
    experiment name at the time MLflow is configured."""
    global _app_name, _user_experiment
    _app_name = app_name
    if _configured_uri is None:
        _user_experiment = bool(os.environ.get("MLFLOW_EXPERIMENT_NAME") or os.environ.get("MLFLOW_EXPERIMENT_ID"))
    if os.environ.get("MLFLOW_TRACKING_URI") and _configured_uri is None:
        return  # the user (or the runner, in a step kernel) chose the store
    if "mlflow" in sys.modules:
        _configure()
    elif not any(isinstance(f, _MlflowImportHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _MlflowImportHook())


def app_renamed() -> None:
    """`%scanflow_app` ran: move later runs to the new experiment (if this module configured MLflow)."""
    if _configured_uri is not None:
        _set_experiment()


def _configure() -> None:
    """Point MLflow at the project's store; never breaks the user's code (warns instead)."""
    global _configured_uri
    try:
        from mlflow.tracking._tracking_service import utils as tracking_utils

        if _configured_uri is None and tracking_utils.is_tracking_uri_set():
            return  # mlflow.set_tracking_uri(...) or MLFLOW_TRACKING_URI: the user's choice
        import mlflow

        from scanflow_jupyter.tracking import default_tracking_uri, scanflow_home
        from scanflow_jupyter.tracking_store import ensure_sqlite_store

        home = scanflow_home()
        uri = default_tracking_uri(home)
        ensure_sqlite_store(uri)
        mlflow.set_tracking_uri(uri)
        _configured_uri = uri
        _register_context_provider()
        _set_experiment()
    except Exception as exc:  # noqa: BLE001 - tracking setup must not break `import mlflow`
        _warn(f"could not point MLflow at the project's store ({type(exc).__name__}: {exc}); "
              "MLflow uses its own default. Fix: check that .scanflow/ is writable, or set "
              "MLFLOW_TRACKING_URI before %load_ext.")


def _set_experiment() -> None:
    if _user_experiment:
        return  # the user chose the experiment
    name = _app_name()
    if not name or _configured_uri is None:
        return
    import mlflow

    from scanflow_jupyter.tracking import Recorder, default_artifact_root, scanflow_home

    # the Recorder creates the experiment as a pipeline run would (artifacts in .scanflow/mlartifacts/<app>)
    exp_id = Recorder(_configured_uri, default_artifact_root(scanflow_home())).experiment_id(name)
    mlflow.set_experiment(experiment_id=exp_id)


def _register_context_provider() -> None:
    from mlflow.tracking.context.abstract_context import RunContextProvider
    from mlflow.tracking.context.registry import _run_context_provider_registry

    class InteractiveRunContext(RunContextProvider):
        """Tags runs started in the live kernel, while they go to the store set by Scanflow."""

        def in_context(self) -> bool:
            import mlflow

            return _configured_uri is not None and mlflow.get_tracking_uri() == _configured_uri

        def tags(self) -> dict[str, str]:
            return {INTERACTIVE_TAG: "true"}

    if not any(type(p).__name__ == "InteractiveRunContext" for p in _run_context_provider_registry):
        _run_context_provider_registry.register(InteractiveRunContext)


class _MlflowImportHook(importlib.abc.MetaPathFinder):
    """Configures MLflow right after the first `import mlflow`, then removes itself."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "mlflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader = spec.loader
        original = loader.exec_module

        def exec_module(module: Any) -> None:
            original(module)
            _configure()

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec
