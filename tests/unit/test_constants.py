"""Names shared across backends live in runtime/constants.py; modules that still keep a copy must agree with it."""

from __future__ import annotations

import subprocess
import sys

from scanflow_jupyter import redact
from scanflow_jupyter.build import builder
from scanflow_jupyter.data import step_io
from scanflow_jupyter.kubernetes import manifests, workflow
from scanflow_jupyter.runtime import constants, kubernetes_backend


def test_importers_use_the_shared_names() -> None:
    assert builder.STEP_NOTEBOOK is constants.STEP_NOTEBOOK and builder.STEP_COMMAND[-1] == constants.STEP_NOTEBOOK
    assert workflow.PARAM_ENV_PREFIX is constants.PARAM_ENV_PREFIX
    assert workflow.DEFAULT_CONFIG_MAP is constants.ENV_CONFIGMAP and workflow.DEFAULT_SECRET is constants.ENV_SECRET
    assert redact.MASK is constants.MASK and step_io.MASK is constants.MASK


def test_the_kubernetes_modules_use_the_shared_names_too() -> None:
    assert kubernetes_backend.STEP_NOTEBOOK is constants.STEP_NOTEBOOK
    assert kubernetes_backend.PARAM_ENV_PREFIX is constants.PARAM_ENV_PREFIX
    assert kubernetes_backend.ENV_CONFIGMAP is manifests.ENV_CONFIGMAP is constants.ENV_CONFIGMAP
    assert kubernetes_backend.ENV_SECRET is manifests.SECRET is constants.ENV_SECRET


def test_constants_import_nothing_of_ours() -> None:
    code = ("import sys\nimport scanflow_jupyter.runtime.constants\n"
            "ours = sorted(m for m in sys.modules if m.startswith('scanflow_jupyter'))\n"
            "assert ours == ['scanflow_jupyter', 'scanflow_jupyter._deferred_imports', 'scanflow_jupyter.runtime',"
            " 'scanflow_jupyter.runtime.constants'], ours\n")  # the package's __init__ defers slow imports (stdlib only)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
