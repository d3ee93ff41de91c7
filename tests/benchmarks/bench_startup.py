"""Benchmark 5: `%load_ext scanflow_jupyter` vs `import mlflow`, each in a fresh process.

Each process first starts an IPython InteractiveShell (untimed), then times only the
`load_ext` (or the `import mlflow`) with time.perf_counter. `load_ext` must not pull in heavy
modules; the ones it did import are reported.
"""

from __future__ import annotations

from pathlib import Path

from tests.benchmarks.results import Row
from tests.benchmarks.util import PYTHON, BenchError, median, run_json

HEAVY = ("mlflow", "papermill", "nbformat", "nbclient", "jsonschema", "jupyter_client", "numpy",
         "pandas", "pyarrow", "sqlalchemy", "rich", "click")

_SCRIPT = """
import json, sys, time
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
before = set(sys.modules)
start = time.perf_counter()
{op}
seconds = time.perf_counter() - start
new = {{m.partition(".")[0] for m in set(sys.modules) - before}}
print(json.dumps({{"seconds": seconds, "heavy": sorted(new & set({heavy!r}))}}))
"""

LOAD_EXT = 'shell.run_line_magic("load_ext", "scanflow_jupyter")\nassert "executor" in shell.magics_manager.magics["cell"]'
IMPORT_MLFLOW = "import mlflow"


def _once(op: str) -> dict:
    out = run_json([PYTHON, "-c", _SCRIPT.format(op=op, heavy=HEAVY)], cwd=Path.cwd())
    if "seconds" not in out:
        raise BenchError(f"startup probe printed {out}")
    return out


def load_ext(reps: int) -> list[Row]:
    ext, mlf, heavy = [], [], set()
    for _ in range(reps):  # interleaved
        out = _once(LOAD_EXT)
        ext.append(out["seconds"])
        heavy.update(out["heavy"])
        mlf.append(_once(IMPORT_MLFLOW)["seconds"])
    e, m = median(ext), median(mlf)
    notes = [f"median of {reps} fresh `python -c` processes each (IPython InteractiveShell started first, untimed)",
             "heavy modules imported by load_ext: " + (", ".join(sorted(heavy)) or "none")]
    return [Row("load_ext_vs_import_mlflow", "`%load_ext scanflow_jupyter` vs `import mlflow`", e, m,
                "import mlflow", e / m, "fraction", 0.25, notes, {"load_ext_s": ext, "import_mlflow_s": mlf},
                {"heavy_modules_loaded": sorted(heavy)})]
