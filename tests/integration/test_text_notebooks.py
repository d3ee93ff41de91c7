"""`scanflow run` on jupytext notebooks: a percent `.py` and a MyST `.md` version of
notebooks/linear_chain.ipynb run as pipelines and give the same outputs as the `.ipynb`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def _outputs(run_dir: Path) -> dict[str, Any]:
    return {step: json.loads((run_dir / step / "outputs" / f"{var}.json").read_text(encoding="utf-8"))
            for step, var in (("extract", "readings"), ("transform", "scaled"), ("report", "summary"))}


def test_percent_py_and_myst_md_run_like_the_ipynb(project, require) -> None:  # noqa: ANN001
    jupytext = require("jupytext")
    nb = jupytext.read(project.nb("linear_chain"))
    jupytext.write(nb, project.root / "chain_pct.py", fmt="py:percent")
    jupytext.write(nb, project.root / "chain_myst.md", fmt="md:myst")
    results = {}
    for name in ("linear_chain.ipynb", "chain_pct.py", "chain_myst.md"):
        code, doc = project.cli_json("run", name, "--json", "--no-cache")
        assert code == 0 and doc["status"] == "succeeded", (name, doc)
        assert {s["status"] for s in doc["steps"].values()} == {"succeeded"}, (name, doc)
        results[name] = _outputs(Path(doc["run_dir"]))
    assert results["chain_pct.py"] == results["linear_chain.ipynb"] == results["chain_myst.md"]
    assert results["chain_pct.py"]["report"]["max"] == 90
    code, doc = project.cli_json("inspect", "chain_pct.py", "--json")
    assert code == 0 and doc["valid"] and doc["order"] == ["extract", "transform", "report"], doc
