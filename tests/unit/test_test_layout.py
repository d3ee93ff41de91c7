"""The test folders are not packages (rootdir imports), so two test files with one basename stop
pytest's collection in a clean clone ("import file mismatch"); say which, before CI does."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_test_file_basenames_are_unique() -> None:
    seen: dict[str, list[str]] = defaultdict(list)
    for path in TESTS.rglob("test_*.py"):
        if "node_modules" in path.parts or (path.parent / "__init__.py").exists():
            continue  # a package's modules are imported by their dotted name
        seen[path.name].append(str(path.relative_to(TESTS)))
    clashes = {name: places for name, places in seen.items() if len(places) > 1}
    assert not clashes, f"rename one of each: {clashes}"
