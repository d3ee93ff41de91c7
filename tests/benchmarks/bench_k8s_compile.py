"""Benchmark: compiling a 100-step pipeline into Argo Workflow YAML vs dumping that same YAML.

Both sides start from the same parsed application (a 100-executor chain, generated like the
other pipeline benchmarks) in this process, warmed up once, measured interleaved. Scanflow:
`compile_workflow` + `dump_yaml`, i.e. what `scanflow export --to argo` and `--backend
kubernetes` pay once the images are known. Baseline: `yaml.safe_dump` of the very same Workflow
dict, the obvious way to write it. An informative row compares with what the local runner
writes for the same pipeline before any kernel starts (`compile_step` + `dumps` of the 100 step
notebooks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.benchmarks import notebooks as nbs
from tests.benchmarks.results import Row
from tests.benchmarks.util import median, timed

STEPS = 100


def _workflow(app: Any) -> dict[str, Any]:
    from scanflow_jupyter.kubernetes.workflow import WorkflowOptions, compile_workflow

    images = {ex.name: f"scanflow/bench-{ex.name}:0123456789ab" for ex in app.executors}
    return compile_workflow(app, WorkflowOptions(images=images, run_id="20261127T120000-abcdef"))


def _export(app: Any) -> str:
    from scanflow_jupyter.kubernetes.workflow import dump_yaml

    return dump_yaml(_workflow(app))


def _step_notebooks(app: Any) -> list[str]:
    from scanflow_jupyter.notebook.compile import compile_step, dumps

    return [dumps(compile_step(app, ex)) for ex in app.executors]


def k8s_compile(root: Path, reps: int) -> list[Row]:
    """Rows: compile + YAML vs yaml.safe_dump of the same dict (goal ≤ 1×); vs step notebooks (info)."""
    import yaml

    from scanflow_jupyter.runtime.runner import load_application

    path = nbs.scanflow_chain(root / "k8s-compile" / "chain100.ipynb", STEPS)
    app, _ = load_application(path)
    doc = _workflow(app)
    text = _export(app)
    _step_notebooks(app)
    yaml.safe_dump(doc, sort_keys=False)  # warm-up: imports, hera model classes
    ours, dumped, local = [], [], []
    for _ in range(max(reps, 5)):
        ours.append(timed(lambda: _export(app))[0])
        dumped.append(timed(lambda: yaml.safe_dump(doc, sort_keys=False))[0])
        local.append(timed(lambda: _step_notebooks(app))[0])
    a, b, c = median(ours), median(dumped), median(local)
    notes = [f"median of {len(ours)} interleaved in-process runs; Workflow YAML {len(text) / 1024:.0f} KiB",
             "dump_yaml uses libyaml's emitter (CSafeDumper) when PyYAML has it"]
    return [
        Row("k8s_compile_100", f"Argo Workflow of a {STEPS}-step chain (compile + YAML)", a, b,
            "yaml.safe_dump of the same Workflow", a / b, "fraction", 1.0, notes,
            {"export_s": ours, "safe_dump_s": dumped}, {"yaml_bytes": len(text)}),
        Row("k8s_compile_vs_step_notebooks", "Argo Workflow vs the local runner's 100 step notebooks", a, c,
            f"{STEPS} step notebooks (compile_step + dumps)", a / c, "fraction", None,
            ["informative: what each backend writes before anything runs"], {"step_notebooks_s": local}),
    ]
