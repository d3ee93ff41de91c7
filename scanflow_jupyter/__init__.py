"""Scanflow for Jupyter: notebooks whose magics declare pipeline steps, run as cached DAGs.

Importing this package is cheap on purpose: `%load_ext scanflow_jupyter` must not pull in
mlflow, papermill or nbformat. Heavy modules are imported where they are used.
"""

from scanflow_jupyter._deferred_imports import install as _defer_slow_imports

__version__ = "0.1.0"

_defer_slow_imports()  # jsonschema's rfc3987_syntax (≈0.9 s at import) waits until it is used


def load_ipython_extension(ipython):  # noqa: ANN001 - IPython's signature
    """Register the Scanflow magics (`%load_ext scanflow_jupyter`)."""
    from scanflow_jupyter.magics import register

    register(ipython)


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """The prebuilt JupyterLab extension (`jupyter labextension develop .` uses it)."""
    return [{"src": "labextension", "dest": "scanflow-jupyter"}]

