"""Regenerate the golden Argo Workflows: tests/golden/argo/<notebook stem>.yaml.

diamond, linear_chain and parameterised (from notebooks/) are compiled with
`kubernetes.workflow.compile_workflow` and fixed inputs (run id, image references, one
parameter override), then written with `dump_yaml`. tests/unit/test_argo_workflow.py compares
them byte for byte: run this after an intended change to the Workflow format, then review the diff.

    python scripts/regen_argo_golden.py           # write the files
    python scripts/regen_argo_golden.py --check   # exit 1 if any file is missing or stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden" / "argo"
NOTEBOOKS = ("diamond", "linear_chain", "parameterised")
RUN_ID = "20261127T120000-a1b2c3"
PARAMS = {"parameterised": {"n_rows": 7, "label": "golden"}}

sys.path.insert(0, str(ROOT))

from scanflow_jupyter.build.context import repository_name  # noqa: E402
from scanflow_jupyter.kubernetes.workflow import WorkflowOptions, compile_workflow, dump_yaml  # noqa: E402
from scanflow_jupyter.runtime.runner import load_application  # noqa: E402


def golden_text(stem: str) -> str:
    """The Workflow YAML of notebooks/<stem>.ipynb with the fixed golden inputs."""
    app, _ = load_application(ROOT / "notebooks" / f"{stem}.ipynb")
    images = {ex.name: f"{repository_name(app.name, ex.name)}:0123456789ab" for ex in app.executors}
    options = WorkflowOptions(images=images, run_id=RUN_ID, params=PARAMS.get(stem))
    return dump_yaml(compile_workflow(app, options))


def expected_files() -> dict[Path, str]:
    return {GOLDEN / f"{stem}.yaml": golden_text(stem) for stem in NOTEBOOKS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report differences; exit 1 if any")
    args = parser.parse_args(argv)
    expected = expected_files()
    changed = [p for p, text in expected.items() if not p.exists() or p.read_text(encoding="utf-8") != text]
    if args.check:
        for path in changed:
            print(f"differs or missing: {path.relative_to(ROOT)}")
        return 1 if changed else 0
    for path in changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(expected[path], encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    print(f"{len(expected)} golden Argo Workflows, {len(changed)} written.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
