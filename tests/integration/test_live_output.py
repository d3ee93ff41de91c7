"""A running step's output.ipynb shows the cells it already ran (rewritten at most every
`OUTPUT_EVERY_S` while it runs, and completely when it ends), real kernel and real run.

The step's second part blocks until a file appears; a watcher thread creates it only once the
first part's print is in output.ipynb (bounded: a missing write fails the test, never hangs it).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

BOUND_S = 120  # a bound against hanging, never a timing assertion


def test_cells_already_run_are_on_disk_while_the_step_still_runs(runner: Any, project: Any) -> None:
    release = project.root / "release"
    project.write_notebook("live", [
        "%%executor slow --outputs done\nprint('first part done')\n",
        "x = 1",
        f"%%executor slow\nimport os, time\nwhile not os.path.exists({str(release)!r}):\n    time.sleep(0.05)\n"
        "print('second part done')\ndone = True\n",
    ])
    seen: dict[str, Any] = {}

    def watch() -> None:
        deadline = time.monotonic() + BOUND_S
        while time.monotonic() < deadline and "ok" not in seen:
            for out in project.home.glob("runs/*/slow/output.ipynb"):
                try:
                    text = _printed(json.loads(out.read_text(encoding="utf-8")))
                except (OSError, ValueError):
                    continue  # never half a file: this is the not-yet-written case
                if "first part done" in text:
                    seen["ok"] = "second part done" not in text
            time.sleep(0.05)
        release.touch()

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        out = runner.run("live")
    finally:
        release.touch()
        watcher.join()
    assert out.statuses() == {"slow": "succeeded"}
    assert seen.get("ok") is True, "the first part's output was not in output.ipynb while the step ran"
    final = _printed(json.loads((out.step_dir("slow") / "output.ipynb").read_text(encoding="utf-8")))
    assert "first part done" in final and "second part done" in final


def _printed(nb: dict[str, Any]) -> str:
    return "".join("".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", [])
                   if o.get("output_type") == "stream")
