"""Broken notebooks and magic lines, with the exact message each must produce.

`BAD_CASES` is a list of `(case_id, source, code, cell)`:

* `source` is either a list of cell specs (built into a notebook by `materialize`) or a
  `Path` to a raw file under `cases/` (or to a file that does not exist);
* `code` is the `Message.code` of the error the case is about;
* `cell` is its notebook cell index (`None` for notebook-level findings).

A cell spec is a string (a code cell with that source) or a dict with `source` and optional
`tags` and `cell_type`. `EXPECTED_TEXT[case_id]` is the exact `Message.text` (`{path}` stands
for the resolved notebook path). `EXTRA_ERRORS[case_id]` lists the other errors, as
`(code, cell)`, that the case produces today; every case not listed there must produce exactly
one error. Reuse: `path = materialize(source, tmp_path)` gives a notebook file for any case.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CASES_DIR = Path(__file__).resolve().parent / "cases"
NOTEBOOK_NAME = "case.ipynb"  # so the default application name is "case"

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
METADATA = {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}}

CellSpec = str | dict[str, Any]
Source = list[CellSpec] | Path


def build_notebook(cells: list[CellSpec], metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """An nbformat 4.5 notebook dict with one cell per spec (ids cell-0, cell-1, ...)."""
    out = []
    for index, spec in enumerate(cells):
        spec = {"source": spec} if isinstance(spec, str) else spec
        cell_type = spec.get("cell_type", "code")
        cell: dict[str, Any] = {
            "cell_type": cell_type,
            "id": f"cell-{index}",
            "metadata": {"tags": list(spec["tags"])} if spec.get("tags") else {},
            "source": spec["source"],
        }
        if cell_type == "code":
            cell.update(execution_count=None, outputs=[])
        out.append(cell)
    return {
        "cells": out,
        "metadata": METADATA if metadata is None else metadata,
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def write_notebook(
    directory: Path,
    cells: list[CellSpec],
    name: str = NOTEBOOK_NAME,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write `build_notebook(cells)` to `directory/name` and return its path."""
    path = Path(directory) / name
    path.write_text(json.dumps(build_notebook(cells, metadata), indent=1) + "\n", encoding="utf-8")
    return path


def materialize(source: Source, directory: Path) -> Path:
    """The notebook file of a case: raw files are used in place, cell lists are written."""
    if isinstance(source, Path):
        return source
    return write_notebook(directory, source)


def expected_text(case_id: str, path: Path) -> str:
    """`EXPECTED_TEXT[case_id]` with `{path}` filled in."""
    return EXPECTED_TEXT[case_id].replace("{path}", str(Path(path).resolve()))


# A valid executor, added to cases that would otherwise also report "no-executors".
OK = "%%executor ok\nresult = 1"
PARAMS = {"source": "n = 1", "tags": ["parameters"]}

# (case_id, source, code, cell, exact text); split into BAD_CASES / EXPECTED_TEXT below.
_CASES: list[tuple[str, Source, str, int | None, str]] = [
    # --- reading the file (parser.read_notebook_json) ------------------------------------
    ("notebook-not-found", CASES_DIR / "does_not_exist.ipynb", "notebook-not-found", None,
     "notebook {path} does not exist."),
    ("not-json", CASES_DIR / "not_json.ipynb", "not-a-notebook", None,
     "not_json.ipynb is not valid notebook JSON (Expecting property name enclosed in double quotes: line 3 column 43 (char 56))."),
    ("empty-file", CASES_DIR / "empty_file.ipynb", "not-a-notebook", None,
     "empty_file.ipynb is not valid notebook JSON (Expecting value: line 1 column 1 (char 0))."),
    ("json-list", CASES_DIR / "json_list.ipynb", "not-a-notebook", None,
     "json_list.ipynb has no 'cells' list, so it is not a notebook."),
    ("no-cells", CASES_DIR / "no_cells.ipynb", "not-a-notebook", None,
     "no_cells.ipynb has no 'cells' list, so it is not a notebook."),
    ("cells-not-a-list", CASES_DIR / "cells_not_a_list.ipynb", "not-a-notebook", None,
     "cells_not_a_list.ipynb has no 'cells' list, so it is not a notebook."),
    # A real nbformat 3 file has "worksheets" instead of "cells": the version is checked first.
    ("nbformat3", CASES_DIR / "nbformat3.ipynb", "old-nbformat", None,
     "nbformat3.ipynb declares nbformat 3; the whole number 4 is required."),
    ("nbformat3-with-cells", CASES_DIR / "nbformat3_with_cells.ipynb", "old-nbformat", None,
     "nbformat3_with_cells.ipynb declares nbformat 3; the whole number 4 is required."),
    # A folder (here the cases folder itself) instead of a file.
    ("directory", CASES_DIR, "not-a-notebook", None,
     "{path} is not a file."),
    # --- notebook metadata (parser.parse_notebook_dict) ----------------------------------
    ("no-kernelspec", CASES_DIR / "no_kernelspec.ipynb", "no-kernelspec", None,
     "the notebook has no kernelspec, so no step knows which kernel to start."),
    ("kernelspec-without-name", CASES_DIR / "kernelspec_without_name.ipynb", "no-kernelspec", None,
     "the notebook has no kernelspec, so no step knows which kernel to start."),
    ("not-python", CASES_DIR / "r_kernel.ipynb", "not-python", None,
     "the notebook's kernel language is R; Scanflow steps run Python."),
    # Notebooks Scanflow wrote (metadata.scanflow), opened or run as if they were the pipeline.
    ("run-record", CASES_DIR / "run_record.ipynb", "generated-notebook", None,
     "this notebook is the record of run 20261204-231500-ab12 of tutorial.ipynb (written by \"Open run as "
     "notebook\"), not a pipeline: its cells load that run's parameters and outputs."),
    ("step-notebook", CASES_DIR / "step_notebook.ipynb", "generated-notebook", None,
     "this notebook is step 'extract' of linear_chain.ipynb as Scanflow generated it (a step's input.ipynb "
     "or output.ipynb), not a pipeline."),
    # --- magic arguments (magic_args.parse_magic_line) -----------------------------------
    ("retries-negative", ["%%executor a --retries -1\nx = 1", OK], "bad-arguments", 0,
     "%%executor: argument --retries: must be 0 or more, got -1."),
    ("retries-not-a-number", ["%%executor a --retries abc\nx = 1", OK], "bad-arguments", 0,
     "%%executor: argument --retries: invalid whole-number value: 'abc'."),
    ("timeout-zero", ["%%executor a --timeout 0\nx = 1", OK], "bad-arguments", 0,
     "%%executor: argument --timeout: must be a finite positive number of seconds, got 0."),
    # inf is refused; the wording ("positive") does not say why (see the reply / test_parser).
    ("timeout-infinite", ["%%executor a --timeout inf\nx = 1", OK], "bad-arguments", 0,
     "%%executor: argument --timeout: must be a finite positive number of seconds, got inf."),
    ("timeout-not-a-number", ["%%executor a --timeout soon\nx = 1", OK], "bad-arguments", 0,
     "%%executor: argument --timeout: invalid number-of-seconds value: 'soon'."),
    ("gpu-fraction", ["%%executor a --gpu 1.5\nx = 1", OK], "bad-arguments", 0,
     "%%executor: argument --gpu: invalid whole-number value: '1.5'."),
    ("option-without-value", ["%%executor a --inputs\nx = 1", OK], "bad-arguments", 0,
     "%%executor: argument --inputs: expected at least one argument."),
    # Abbreviations are disabled: --re is not a prefix of --requires/--requirements/--retries.
    ("abbreviated-option", ["%%executor a --re 1\nx = 1", OK], "unknown-option", 0,
     "%%executor: unknown option --re."),
    ("unknown-option", ["%%executor a --foo 1\nx = 1", OK], "unknown-option", 0,
     "%%executor: unknown option --foo."),
    ("executor-missing-name", ["%%executor\nx = 1", OK], "bad-arguments", 0,
     "%%executor: the following arguments are required: name."),
    ("executor-extra-positional", ["%%executor a b\nx = 1", OK], "unexpected-arguments", 0,
     "%%executor: unexpected argument(s) b."),
    ("executor-bad-quoting", ["%%executor 'a\nx = 1", OK], "bad-quoting", 0,
     "%%executor: no closing quotation."),
    ("setup-with-arguments", ["%%setup numpy\nimport numpy", OK], "unexpected-arguments", 0,
     "%%setup takes no arguments, got 'numpy'."),
    ("params-with-arguments", ["%%params --n 3\nn = 1", OK], "unexpected-arguments", 0,
     "%%params takes no arguments, got '--n 3'."),
    ("service-replicas-zero", ["%%service s --replicas 0\ndef predict(inputs):\n    return inputs", OK],
     "bad-arguments", 0, "%%service: argument --replicas: must be 1 or more, got 0."),
    ("agent-bad-template", ["%%agent watcher --template bogus\nx = 1", OK], "bad-arguments", 0,
     "%%agent: argument --template: invalid choice: 'bogus' (choose from 'monitor', 'analyzer', 'planner', 'executor')."),
    ("app-missing-name", ["%scanflow_app", OK], "bad-arguments", 0,
     "%scanflow_app: the following arguments are required: name."),
    ("app-bad-quoting", ['%scanflow_app "my-app', OK], "bad-quoting", 0,
     "%scanflow_app: no closing quotation."),
    # --- names (validate._check_names) -------------------------------------------------
    ("duplicate-executor-agent", ["%%executor a\nx = 1", "%%agent a\ny = 2"], "duplicate-name", 1,
     "the name 'a' is already used in cell 1."),
    ("duplicate-executor-service", ["%%executor a\nx = 1", "%%service a --model models:/m/1"],
     "duplicate-name", 1, "the name 'a' is already used in cell 1."),
    ("bad-executor-name", ["%%executor 1st\nx = 1"], "bad-name", 0,
     "executor name '1st' is not valid (letters, digits, '-' and '_', starting with a letter, at most 63)."),
    ("bad-service-name", ["%%service my.svc --model models:/m/1", OK], "bad-name", 0,
     "service name 'my.svc' is not valid (letters, digits, '-' and '_', starting with a letter, at most 63)."),
    ("executor-name-too-long", ["%%executor " + "a" * 64 + "\nx = 1"], "bad-name", 0,
     "executor name '" + "a" * 64 + "' is not valid (letters, digits, '-' and '_', starting with a letter, at most 63)."),
    # --- dependencies (validate._check_executor, _check_cycles) -------------------------
    ("unknown-dependency-did-you-mean", ["%%executor train\nx = 1", "%%executor score --requires trian\ny = 2"],
     "unknown-dependency", 1, "executor 'score' requires 'trian', but no executor has that name."),
    ("unknown-dependency", ["%%executor a\nx = 1", "%%executor b --requires zzz\ny = 2"],
     "unknown-dependency", 1, "executor 'b' requires 'zzz', but no executor has that name."),
    ("self-dependency", ["%%executor a --requires a\nx = 1"], "self-dependency", 0,
     "executor 'a' requires itself."),
    ("requires-service", ["%%service s --model models:/m@champion", "%%executor a --requires s\nx = 1"],
     "requires-non-executor", 1, "executor 'a' requires 's', which is a service or agent, not an executor."),
    ("requires-agent", ["%%agent watcher\nx = 1", "%%executor a --requires watcher\ny = 2"],
     "requires-non-executor", 1, "executor 'a' requires 'watcher', which is a service or agent, not an executor."),
    ("cycle-of-2", ["%%executor a --requires b\nx = 1", "%%executor b --requires a\ny = 2"], "cycle", 0,
     "the steps form a cycle: a -> b -> a."),
    ("cycle-of-3", ["%%executor a --requires b\nx = 1", "%%executor b --requires c\ny = 2",
                    "%%executor c --requires a\nz = 3"], "cycle", 0,
     "the steps form a cycle: a -> c -> b -> a."),
    # an input comes from the nearest producer above: a "data cycle" is an input produced below
    ("cycle-through-data", ["%%executor a --inputs y --outputs x\nx = y", "%%executor b --inputs x --outputs y\ny = x"],
     "input-produced-below", 0, "executor 'a' (cell 1) needs input 'y', but its only producer, 'b', is below it (cell 2); "
     "an input comes from the nearest producer above, as in a top-to-bottom run."),
    # --- data passing (validate._check_executor) ----------------------------------------
    ("input-without-producer", ["%%executor a --inputs features\nx = features"], "input-without-producer", 0,
     "executor 'a' needs input 'features', but no executor lists it in --outputs."),
    ("input-is-parameter", [PARAMS, "%%executor a --inputs n\nx = n"], "input-is-parameter", 1,
     "executor 'a' lists pipeline parameter 'n' in --inputs."),
    ("input-produced-below", ["%%executor c --inputs x\ny = x", "%%executor a --outputs x\nx = 1"],
     "input-produced-below", 0, "executor 'c' (cell 1) needs input 'x', but its only producer, 'a', is below it (cell 2); "
     "an input comes from the nearest producer above, as in a top-to-bottom run."),
    ("continuation-options", ["%%executor a --outputs x\nx = 1", "%%executor a --outputs y\ny = 2"],
     "continuation-options", 1, "cell 2 starts with %%executor a with options, but step 'a' begins in cell 1: "
     "a later cell with the same name continues that step and takes no options."),
    ("output-not-assigned", ["%%executor a --outputs model\nmodle = 1"], "output-not-assigned", 0,
     "executor 'a' declares output 'model' but its code never assigns it."),
    ("output-shadows-parameter", [PARAMS, "%%executor a --outputs n\nn = 2"], "output-shadows-parameter", 1,
     "executor 'a' outputs 'n', which is also a pipeline parameter."),
    # Repeated list options accumulate: 'x' (first --outputs) is kept, so it must be assigned.
    ("repeated-outputs-accumulate", ["%%executor a --outputs x --outputs y\ny = 1"], "output-not-assigned", 0,
     "executor 'a' declares output 'x' but its code never assigns it."),
    ("repeated-inputs-accumulate", ["%%executor a --outputs x\nx = 1", "%%executor b --inputs x --inputs ghost\ny = x + ghost"],
     "input-without-producer", 1, "executor 'b' needs input 'ghost', but no executor lists it in --outputs."),
    # '#' inside a word is part of it (only a word starting with '#' starts a comment).
    ("hash-inside-word", ["%%executor a --outputs x#y\nx = 1"], "bad-variable", 0,
     "executor 'a': 'x#y' is not a Python variable name."),
    ("variable-starts-with-digit", ["%%executor a --outputs 2x\ny = 1"], "bad-variable", 0,
     "executor 'a': '2x' is not a Python variable name."),
    ("variable-with-dash", ["%%executor a --outputs x\nx = 1", "%%executor b --inputs train-df\ny = 1"],
     "bad-variable", 1, "executor 'b': 'train-df' is not a Python variable name."),
    ("variable-is-keyword", ["%%executor a --outputs class\ny = 1"], "bad-variable", 0,
     "executor 'a': 'class' is not a Python variable name."),
    ("reserved-variable", ["%%executor a --outputs _scanflow\n_scanflow = 1"], "reserved-name", 0,
     "executor 'a': '_scanflow' is a name Scanflow reserves."),
    ("reserved-parameter", [{"source": "__scanflow__ = 1", "tags": ["parameters"]}, OK], "reserved-name", 0,
     "parameter '__scanflow__' uses a name Scanflow reserves."),
    # --- resources, images, requirements, services --------------------------------------
    ("cpu-not-a-quantity", ["%%executor a --cpu two\nx = 1"], "bad-quantity", 0,
     "executor 'a': --cpu 'two' is not a CPU quantity."),
    ("cpu-zero", ["%%executor a --cpu 0m\nx = 1"], "bad-quantity", 0,
     "executor 'a': --cpu '0m' is not a CPU quantity."),
    ("memory-2GB", ["%%executor a --memory 2GB\nx = 1"], "bad-quantity", 0,
     "executor 'a': --memory '2GB' is not a memory quantity."),
    ("memory-not-a-quantity", ["%%executor a --memory lots\nx = 1"], "bad-quantity", 0,
     "executor 'a': --memory 'lots' is not a memory quantity."),
    ("bad-image", ["%%executor a --image Python:3.11\nx = 1"], "bad-image", 0,
     "executor 'a': --image 'Python:3.11' is not a valid image reference."),
    ("bad-requirement", ["%%executor a --requirements 'pandas>>2'\nx = 1"], "bad-requirement", 0,
     "executor 'a': --requirements 'pandas>>2' is not a valid requirement (Expected semicolon "
     "(after name with no version specifier) or end)."),
    ("bad-model-uri", ["%%service s --model my-model", OK], "bad-model-uri", 0,
     "service 's': --model 'my-model' is not a model URI."),
    ("service-without-model", ["%%service s\nthreshold = 0.5", OK], "service-without-model", 0,
     "service 's' has neither --model nor a `predict` function."),
    # --- Python code of the cells (validate._check_code, parser._parse_parameters) -------
    ("setup-syntax-error", ["%%setup\nimport os\nx = (", OK], "syntax-error", 0,
     "syntax error in setup cell, line 3 of the cell: '(' was never closed."),
    ("executor-syntax-error", ["%%executor a\nx = 1\ny = = 2"], "syntax-error", 0,
     "syntax error in executor 'a', line 3 of the cell: invalid syntax."),
    ("agent-syntax-error", ["%%agent watcher\ndef check(:\n    pass", OK], "syntax-error", 0,
     "syntax error in agent 'watcher', line 2 of the cell: invalid syntax."),
    ("service-syntax-error", ["%%service s --model models:/m@c\ndef predict(x)\n    return x", OK],
     "syntax-error", 0, "syntax error in service 's', line 2 of the cell: expected ':'."),
    ("parameters-syntax-error", [{"source": "n = 1\nm = (", "tags": ["parameters"]}, OK], "syntax-error", 0,
     "syntax error in the parameters cell, line 2: '(' was never closed."),
    ("parameter-not-literal", [{"source": "n = 1\nrows = load_rows()", "tags": ["parameters"]}, OK],
     "non-literal-parameter", 0, "parameter 'rows' (line 2) is not a literal: load_rows()."),
    # %%params line numbers count the magic line: 'm' is on line 3 of the cell.
    ("params-magic-not-literal", ["%%params\nn = 1\nm = n * 2", OK], "non-literal-parameter", 0,
     "parameter 'm' (line 3) is not a literal: n * 2."),
    ("parameters-not-assignment", [{"source": "n = 1\nprint(n)", "tags": ["parameters"]}, OK],
     "non-literal-parameter", 0, "line 2 of the parameters cell is not an assignment."),
    ("parameters-tuple-target", [{"source": "a, b = 1, 2", "tags": ["parameters"]}, OK],
     "non-literal-parameter", 0, "line 1 of the parameters cell assigns to something other than one name."),
    ("two-parameters-cells", [PARAMS, "%%params\nm = 2", OK], "duplicate-parameters", 1,
     "a second parameters cell (first is cell 1)."),
    # --- application and magics (parser) -------------------------------------------------
    ("duplicate-app", ["%scanflow_app one", OK, "%scanflow_app two"], "duplicate-app", 2,
     "%scanflow_app appears again (first in cell 1)."),
    ("bad-app-name", ["%scanflow_app 1app", OK], "bad-app-name", 0,
     "application name '1app' is not valid (letters, digits, '-' and '_', starting with a letter, at most 63)."),
    ("bad-team-name", ["%scanflow_app my-app --team 'data science'", OK], "bad-team-name", 0,
     "team name 'data science' is not valid (letters, digits, '-' and '_', starting with a letter, at most 63)."),
    ("misspelled-executor", ["%%exector a\nx = 1", OK], "unknown-magic", 0,
     "unknown cell magic %%exector."),
    ("misspelled-line-magic", ["%load_ext scanflow_jupyter\n%scanflow_ap demo", OK], "unknown-magic", 0,
     "unknown line magic %scanflow_ap."),
    ("magic-after-blank-line", ["\n%%executor a\nx = 1"], "magic-not-first-line", 0,
     "%%executor is not on the cell's first line (blank lines above it)."),
    ("second-magic-in-cell", ["%%executor a\nx = 1\n%%executor b\ny = 2"], "magic-not-first-line", 0,
     "%%executor on line 3 of the cell; a cell magic must be the cell's first line."),
    ("magic-after-comment", ["# train the model\n%%executor a\nx = 1", OK], "magic-not-first-line", 0,
     "%%executor on line 2 of the cell; a cell magic must be the cell's first line."),
    ("no-executors", ["%load_ext scanflow_jupyter", "x = 1", {"cell_type": "markdown", "source": "%%executor a"}],
     "no-executors", None, "the notebook declares no %%executor cell, so there is nothing to run."),
    # A broken executor line is the only error: "no-executors" is not added on top of it.
    ("only-executor-line-broken", ["%%executor a --foo 1\nx = 1"], "unknown-option", 0,
     "%%executor: unknown option --foo."),
    ("empty-notebook", [], "no-executors", None,
     "the notebook declares no %%executor cell, so there is nothing to run."),
    # --- --deps (cache key ingredients that must exist) ------------------------------------
    ("deps-missing-file", ["%%executor a --deps data/absent.csv\nx = 1"], "missing-deps", 0,
     "executor 'a': --deps data/absent.csv matches no file in the notebook's folder."),
    ("deps-glob-matches-nothing", [OK, "%%executor a --deps 'data/*.parquet'\nx = 1"], "missing-deps", 1,
     "executor 'a': --deps data/*.parquet matches no file in the notebook's folder."),
]

BAD_CASES: list[tuple[str, Source, str, int | None]] = [c[:4] for c in _CASES]
EXPECTED_TEXT: dict[str, str] = {c[0]: c[4] for c in _CASES}

EXTRA_ERRORS: dict[str, list[tuple[str, int | None]]] = {
    # A bad --inputs name is also reported as having no producer, with the fix "add
    # `--outputs train-df`", which would be a bad name too (see test_validate.py, strict xfail).
    "variable-with-dash": [("input-without-producer", 1)],
}
