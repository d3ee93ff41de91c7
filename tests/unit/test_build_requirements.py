"""Requirement resolution of step images: imports found, pinned to this environment, layered."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest

from scanflow_jupyter.build.requirements import (
    as_executor,
    dependency_closure,
    distributions_for,
    imported_modules,
    resolve_application,
    resolve_step,
    runtime_layer,
    step_imports,
)
from scanflow_jupyter.model import Application, CodeBlock, Executor, Service
from scanflow_jupyter.notebook.parser import parse_notebook

REPO = Path(__file__).resolve().parents[2]


def test_imported_modules_cover_every_import_form() -> None:
    source = (
        "import os, numpy as np\n"
        "import sklearn.linear_model\n"
        "from pandas import DataFrame\n"
        "from . import local\n"
        "%matplotlib inline\n"
        "!pip list\n"
        "def f():\n"
        "    import scipy.stats\n"
        "try:\n"
        "    import torch\n"
        "except ImportError:\n"
        "    torch = None\n"
    )
    assert imported_modules(source) == [
        ("os", False), ("numpy", False), ("sklearn.linear_model", False), ("pandas", False),
        ("scipy.stats", False), ("torch", True),
    ]


def test_imported_modules_of_code_that_does_not_parse_are_found_line_by_line() -> None:
    assert imported_modules("import yaml\nfrom json import loads\nthis is not python(") == [("yaml", False), ("json", False)]


def test_an_import_outside_a_try_is_not_optional_even_if_also_inside_one() -> None:
    assert imported_modules("try:\n    import numpy\nexcept ImportError:\n    pass\nimport numpy\n") == [("numpy", False)]


def _app(setup: str, *executors: Executor) -> Application:
    return Application(name="demo", notebook="/tmp/demo.ipynb", setup=[CodeBlock(1, setup)] if setup else [],
                       executors=list(executors))


def test_step_imports_skip_the_standard_library_and_keep_where_they_come_from() -> None:
    ex = Executor("train", 3, "import json\nimport sklearn.linear_model\nimport mlflow")
    imports = step_imports(_app("import os\nimport numpy as np", ex), ex)
    assert [(m.module, m.where, m.cell) for m in imports] == [
        ("numpy", "setup", 1), ("sklearn.linear_model", "body", 3), ("mlflow", "body", 3)]


def test_modules_resolve_to_the_distribution_that_owns_them() -> None:
    assert distributions_for("sklearn.linear_model") == ["scikit-learn"]
    assert distributions_for("yaml") == ["PyYAML"]
    assert distributions_for("mlflow") == ["mlflow-skinny"]  # mlflow/__init__.py lives in mlflow-skinny
    assert distributions_for("scanflow_no_such_module") == []


def test_dependency_closure_follows_installed_requirements() -> None:
    closure = dependency_closure({"pandas": set()})
    assert {"pandas", "numpy", "python-dateutil", "six"} <= set(closure)
    assert closure["six"] == "python-dateutil"


def test_the_runtime_layer_pins_the_notebook_runtime_but_not_the_mlflow_server() -> None:
    lines = runtime_layer().lines()
    for dist in ("ipykernel", "nbclient", "nbformat", "cloudpickle", "xxhash", "mlflow-skinny", "papermill"):
        assert f"{dist}=={version(dist)}" in lines
    names = {line.split("==")[0] for line in lines}
    assert not names & {"mlflow", "scipy", "scikit-learn", "pandas", "sqlalchemy", "alembic", "scanflow-jupyter", "pip"}


def test_diamond_requirements_are_layered_and_pinned() -> None:
    reqs = resolve_application(parse_notebook(REPO / "notebooks" / "diamond.ipynb"))
    pinned = {d: f"{d}=={version(d)}" for d in ("numpy", "pandas", "pyarrow", "scikit-learn")}
    for step in ("load", "features", "stats"):
        assert [p.spec for p in reqs[step].direct] == [pinned["numpy"], pinned["pandas"], pinned["pyarrow"]]
        assert reqs[step].layer("step").lines() == []
    train = reqs["train"]
    assert pinned["scikit-learn"] in train.layer("step").lines()
    assert {"scipy", "joblib", "threadpoolctl"} <= {p.name for p in train.layer("step").pins}
    assert train.layer("setup").lines() == reqs["load"].layer("setup").lines()  # one shared layer
    assert "mlflow" not in {p.name for layer in train.layers for p in layer.pins}  # mlflow-skinny is the runtime's
    origins = {p.name: p.origin for p in train.direct}
    assert origins["pyarrow"] == "serializer for pandas" and origins["scikit-learn"] == "import sklearn"
    assert train.modules_to_check() == ["mlflow", "numpy", "pandas", "sklearn.linear_model"]


def test_requirements_of_the_magic_override_and_pin() -> None:
    ex = Executor("s", 2, "import pandas", requirements=["pandas==2.2.3", "requests", "scanflow-not-installed"])
    reqs = resolve_step(_app("", ex), ex)
    lines = reqs.layer("step").lines()
    assert "pandas==2.2.3" in lines and f"pandas=={version('pandas')}" not in lines
    assert f"requests=={version('requests')}" in lines  # a bare name is pinned to the installed version
    assert "scanflow-not-installed" in lines
    assert [m.code for m in reqs.messages] == ["unpinned-requirement"]


def test_an_import_nothing_provides_is_reported_with_the_fix() -> None:
    ex = Executor("s", 4, "import scanflow_no_such_module\ntry:\n    import scanflow_optional\nexcept ImportError:\n    pass")
    reqs = resolve_step(_app("", ex), ex)
    assert [(m.code, m.cell) for m in reqs.messages] == [("unresolved-import", 4)]
    assert "--requirements" in reqs.messages[0].fix
    assert reqs.modules_to_check() == ["scanflow_no_such_module"]


def test_a_step_inherits_the_serializer_libraries_of_its_producers() -> None:
    produce = Executor("produce", 1, "import pandas as pd\ndf = pd.DataFrame()", outputs=["df"])
    consume = Executor("consume", 2, "n = len(df)", inputs=["df"], outputs=["n"])
    reqs = resolve_step(_app("", produce, consume), consume)
    names = {p.name for p in reqs.direct}
    assert {"pandas", "pyarrow"} <= names


@pytest.mark.parametrize("include_setup", [True, False])
def test_services_and_agents_resolve_their_own_cell(include_setup: bool) -> None:
    service = Service("api", 5, "import sklearn\ndef predict(x):\n    return x")
    app = _app("import numpy")
    reqs = resolve_step(app, as_executor(service), include_setup=include_setup, kind="service")
    names = {p.name for p in reqs.direct}
    assert "scikit-learn" in names
    assert ("numpy" in names) is include_setup
    agent = resolve_step(app, as_executor(service), include_setup=False, kind="agent")
    assert {"croniter", "httpx", "scikit-learn"} <= {p.name for p in agent.direct}


def test_imports_inside_magics_are_found_as_the_kernel_runs_them() -> None:
    """`%time import x` and a `%%capture` body import for real; a `%%bash` body does not."""
    assert imported_modules("%time import yaml\nfiles = !ls\nfrom json import loads") == [("yaml", False), ("json", False)]
    assert imported_modules("%%capture out\nimport packaging\n!pip list") == [("packaging", False)]
    assert imported_modules("%%bash\nimport yaml") == []
