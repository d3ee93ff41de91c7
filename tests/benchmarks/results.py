"""One row of the benchmark table, its formatting, and the JSON document."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class Row:
    """`ratio` is what `goal` is compared with; `kind` says how it reads.

    kind "speedup": baseline / scanflow, goal is a minimum ("≥ 3×").
    kind "fraction": scanflow / baseline, goal is a maximum ("≤ 0.15×").
    kind "overhead": seconds per step above the floor, goal is a maximum ("≤ 0.15 s").
    `goal` None marks an informative figure.
    """

    key: str
    label: str
    scanflow_s: float
    baseline_s: float
    baseline_label: str
    ratio: float
    kind: str
    goal: float | None
    notes: list[str] = field(default_factory=list)
    samples: dict[str, list[float]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def met(self) -> bool | None:
        if self.goal is None:
            return None
        return self.ratio >= self.goal if self.kind == "speedup" else self.ratio <= self.goal

    def ratio_text(self) -> str:
        if self.kind == "speedup":
            return f"{self.ratio:.2f}× faster"
        if self.kind == "overhead":
            return f"{self.ratio:.3f} s/step"
        return f"{self.ratio:.3f}×"

    def goal_text(self) -> str:
        if self.goal is None:
            return "info"
        if self.kind == "speedup":
            return f"≥ {self.goal:g}×"
        if self.kind == "overhead":
            return f"≤ {self.goal:g} s/step"
        return f"≤ {self.goal:g}×"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["met"] = self.met
        data["ratio_text"] = self.ratio_text()
        data["goal_text"] = self.goal_text()
        return data


def fmt_s(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def table(rows: list[Row]) -> str:
    head = ("benchmark", "scanflow", "baseline", "ratio", "goal", "met?")
    body = [(r.label, fmt_s(r.scanflow_s), f"{fmt_s(r.baseline_s)} ({r.baseline_label})", r.ratio_text(),
             r.goal_text(), {True: "yes", False: "NO", None: "-"}[r.met]) for r in rows]
    widths = [max(len(line[i]) for line in [head, *body]) for i in range(len(head))]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(head), sep, *(line(b) for b in body)])


def environment() -> dict[str, Any]:
    versions = {}
    for name in ("papermill", "nbclient", "jupyter_client", "ipykernel", "mlflow", "numpy"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:  # noqa: BLE001
            versions[name] = None
    return {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(),
            "versions": versions}


def write_json(rows: list[Row], meta: dict[str, Any], path: Path | None = None) -> Path:
    path = path or RESULTS_DIR / "latest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "environment": environment(), **meta,
           "benchmarks": [r.to_dict() for r in rows]}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
