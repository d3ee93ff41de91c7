"""Regenerate the golden step notebooks: tests/golden/<notebook stem>/<step>.ipynb.

For every example notebook in notebooks/, each executor is compiled with
`compile.compile_step` and written with `compile.dumps`. tests/unit/test_compile.py compares
these files byte for byte, so run this (`make golden`) after an intended change to the step
notebook format, then review the diff.

    python scripts/regen_golden.py           # write the files
    python scripts/regen_golden.py --check   # exit 1 if any file is missing, stale or extra
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
GOLDEN = ROOT / "tests" / "golden"

sys.path.insert(0, str(ROOT))

from scanflow_jupyter.notebook.compile import compile_step, dumps  # noqa: E402
from scanflow_jupyter.notebook.parser import parse_notebook  # noqa: E402
from scanflow_jupyter.notebook.validate import has_errors, validate  # noqa: E402


def expected_files() -> dict[Path, str]:
    """Golden path -> file text, for every step of every example notebook."""
    files: dict[Path, str] = {}
    for notebook in sorted(NOTEBOOKS.glob("*.ipynb")):
        app = parse_notebook(notebook)
        messages = validate(app)
        if has_errors(messages):
            problems = "\n  ".join(str(m) for m in messages if m.severity == "error")
            raise SystemExit(f"{notebook.relative_to(ROOT)} is not valid:\n  {problems}")
        for executor in app.executors:
            files[GOLDEN / notebook.stem / f"{executor.name}.ipynb"] = dumps(compile_step(app, executor))
    return files


def stale_files(expected: dict[Path, str]) -> list[Path]:
    """Golden step notebooks that no example notebook produces any more."""
    other_goldens = {"k8s", "argo"}  # manifests, Workflows and their fixture notebooks: not step notebooks
    return sorted(p for p in GOLDEN.glob("*/*.ipynb") if p not in expected and p.parent.name not in other_goldens)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report differences; exit 1 if any")
    args = parser.parse_args(argv)

    expected = expected_files()
    changed = [p for p, text in expected.items() if not p.exists() or p.read_text(encoding="utf-8") != text]
    stale = stale_files(expected)

    if args.check:
        for path in changed:
            print(f"differs or missing: {path.relative_to(ROOT)}")
        for path in stale:
            print(f"stale: {path.relative_to(ROOT)}")
        return 1 if changed or stale else 0

    for path in changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(expected[path], encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    for path in stale:
        path.unlink()
        print(f"removed {path.relative_to(ROOT)}")
        if not any(path.parent.iterdir()):
            path.parent.rmdir()
    print(f"{len(expected)} golden step notebooks, {len(changed)} written, {len(stale)} removed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
