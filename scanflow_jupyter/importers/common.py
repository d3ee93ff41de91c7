"""What every importer shares: steps being built, name inference, the notebook and its validation."""

from __future__ import annotations

import ast
import builtins
import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scanflow_jupyter.notebook import ipython_source

KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
_NAME_BAD = re.compile(r"[^A-Za-z0-9_-]+")


class ImportFailure(ValueError):
    """The source cannot be imported at all (exit 2): `text` says what and where, `fix` how."""

    def __init__(self, text: str, fix: str) -> None:
        super().__init__(f"{text} Fix: {fix}")
        self.text = text
        self.fix = fix


@dataclass
class Note:
    """Something that could not be carried over: where (a source cell, 1-based, or a node) and what."""

    where: str
    text: str


@dataclass
class Step:
    """An executor being built: its code parts, markdown kept above it and magic options."""

    name: str
    items: list[tuple[str, str]] = field(default_factory=list)  # ("code" | "markdown", text), in order
    requires: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    cpu: str | None = None
    memory: str | None = None
    gpu: int | None = None
    deps: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    image: str | None = None

    @property
    def parts(self) -> list[str]:
        return [text for kind, text in self.items if kind == "code" and text.strip()]

    @property
    def source(self) -> str:
        return "\n\n".join(p.strip("\n") for p in self.parts)

    def magic(self) -> str:
        words = [f"%%executor {self.name}"]
        for option, values in (("--requires", self.requires), ("--inputs", self.inputs),
                               ("--outputs", self.outputs), ("--deps", [_quote(d) for d in self.deps]),
                               ("--metrics", self.metrics)):
            if values:
                words.append(f"{option} {' '.join(values)}")
        for option, value in (("--cpu", self.cpu), ("--memory", self.memory), ("--gpu", self.gpu),
                              ("--image", _quote(self.image) if self.image else None)):
            if value is not None:
                words.append(f"{option} {value}")
        return " ".join(words)


@dataclass
class ImportResult:
    """The imported notebook and the notes on what was not carried over."""

    notebook: dict[str, Any]
    notes: list[Note]


def _quote(word: str) -> str:
    return word if re.fullmatch(r"[\w./*-]+", word) else "'" + word.replace("'", "'\\''") + "'"


def step_name(raw: str) -> str:
    """A valid Scanflow name from a Kale block / Elyra label / Ploomber task name."""
    slug = _NAME_BAD.sub("-", raw.strip()).strip("-_")[:63]
    return slug if slug[:1].isalpha() else f"step-{slug}"[:63]


def code_cell(source: str, tags: list[str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"tags": tags} if tags else {}
    return {"cell_type": "code", "execution_count": None, "metadata": meta, "outputs": [], "source": source}


def markdown_cell(source: str) -> dict[str, Any]:
    return {"cell_type": "markdown", "metadata": {}, "source": source}


def new_notebook(cells: list[dict[str, Any]]) -> dict[str, Any]:
    return {"cells": cells, "metadata": {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def header_cell(app_name: str) -> dict[str, Any]:
    return code_cell(f"%load_ext scanflow_jupyter\n%scanflow_app {step_name(app_name)}")


@functools.cache
def supports_continuation() -> bool:
    """Whether Scanflow's parser reads a later `%%executor NAME` cell as the next part of step NAME."""
    from scanflow_jupyter.notebook.parser import parse_notebook_dict

    nb = new_notebook([code_cell("%%executor a\nx = 1"), code_cell("%%executor a\ny = 2")])
    app = parse_notebook_dict(nb, "continuation-probe.ipynb")
    return len(app.executors) == 1 and "y = 2" in app.executors[0].source and not app.messages


def executor_cells(step: Step, continuation: bool | None = None) -> list[dict[str, Any]]:
    """The step as notebook cells: with continuation cells (when the parser reads them), each
    part stays a cell (`%%executor NAME` alone on later parts) with its markdown in between;
    otherwise the markdown goes above one `%%executor` cell holding all parts."""
    if continuation is None:
        continuation = supports_continuation()
    if not continuation:
        return [*(markdown_cell(t) for k, t in step.items if k == "markdown"),
                code_cell(step.magic() + "\n" + step.source)]
    cells: list[dict[str, Any]] = []
    first = True
    for kind, text in step.items:
        if kind == "markdown":
            cells.append(markdown_cell(text))
        elif text.strip():
            cells.append(code_cell((step.magic() if first else f"%%executor {step.name}") + "\n" + text.strip("\n")))
            first = False
    if first:
        cells.append(code_cell(step.magic() + "\n"))
    return cells


def _tree(source: str) -> ast.Module | None:
    """The code's analysis tree (`notebook.ipython_source`: `x = !ls` assigns x), None if unreadable."""
    try:
        return ipython_source.parse(source)
    except (SyntaxError, ValueError, RecursionError):
        return None


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda,
           ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def bound_names(node: ast.AST) -> set[str]:
    """Global names a statement (or module) binds: assignments, imports, defs, loop/with targets —
    not the local names of functions, classes, lambdas and comprehensions."""
    names: set[str] = set()
    todo = [node]
    while todo:
        n = todo.pop()
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            names.add(n.id)
        elif isinstance(n, ast.alias):
            names.add((n.asname or n.name).split(".")[0])
        elif isinstance(n, ast.Global):
            names.update(n.names)
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(n.name)
            todo += [*n.decorator_list, *getattr(n, "bases", [])]
            names |= {g for b in n.body for x in ast.walk(b) if isinstance(x, ast.Global) for g in x.names}
        elif n is node or not isinstance(n, _SCOPES):
            todo += list(ast.iter_child_nodes(n))
    return names


def defined_names(source: str) -> set[str]:
    tree = _tree(source)
    return bound_names(tree) if tree else set()


def free_names(source: str) -> list[str]:
    """Names the code reads before it binds them itself (in statement order), as Kale infers them."""
    tree = _tree(source)
    if tree is None:
        return []
    bound: set[str] = set()
    free: dict[str, None] = {}
    for stmt in tree.body:
        local = set()
        for n in ast.walk(stmt):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                local |= {a.arg for a in ast.walk(n.args) if isinstance(a, ast.arg)}
            elif isinstance(n, ast.comprehension):
                local |= bound_names(n.target)
        for n in ast.walk(stmt):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id not in bound and n.id not in local:
                free.setdefault(n.id)
        bound |= bound_names(stmt)
    return list(free)


def infer_io(steps: list[Step], known: set[str]) -> None:
    """Inputs: names a step reads that an earlier step defines (nearest producer above wins);
    the producer gets them as outputs. `known` (setup, parameters, builtins) is never passed."""
    skip = known | set(dir(builtins)) | {"get_ipython", "display", "In", "Out", ipython_source.MAGIC_CALL}
    defined: list[set[str]] = [defined_names(s.source) for s in steps]
    for i, step in enumerate(steps):
        for name in free_names(step.source):
            if name in skip:
                continue
            producer = next((j for j in range(i - 1, -1, -1) if name in defined[j]), None)
            if producer is None:
                continue
            step.inputs.append(name)
            if name not in steps[producer].outputs:
                steps[producer].outputs.append(name)


def cell_source(cell: dict[str, Any]) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def read_json(path: Path, what: str, fix: str) -> Any:
    if not path.is_file():
        raise ImportFailure(f"{what} {path} does not exist.", "check the path.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ImportFailure(f"{path} is not a readable {what}: {exc}.", fix) from exc


def read_ipynb(path: Path) -> dict[str, Any]:
    nb = read_json(path, "notebook", "give an .ipynb file saved by Jupyter (nbformat 4).")
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise ImportFailure(f"{path} has no 'cells' list, so it is not a notebook.", "give an .ipynb file saved by Jupyter.")
    return nb


def percent_cells(text: str) -> list[dict[str, Any]]:
    """Cells of a jupytext percent-format script (`# %%`, `# %% [markdown]`, `tags=[...]`)."""
    cells: list[dict[str, Any]] = []
    kind, tags, lines = "code", [], []  # type: ignore[var-annotated]

    def flush() -> None:
        body = "\n".join(lines).strip("\n")
        if kind == "markdown":
            body = "\n".join(ln[2:] if ln.startswith("# ") else ln.lstrip("#") for ln in body.split("\n"))
        if body.strip() or tags:
            cells.append(markdown_cell(body) if kind == "markdown" else code_cell(body, list(tags)))

    for line in text.split("\n"):
        m = re.match(r"^# %%(.*)$", line)
        if m:
            flush()
            head = m.group(1)
            kind = "markdown" if "[markdown]" in head else "code"
            t = re.search(r"tags\s*=\s*(\[[^\]]*\])", head)
            tags = json.loads(t.group(1).replace("'", '"')) if t else []
            lines = []
        else:
            lines.append(line)
    flush()
    return cells


def finish(result: ImportResult, out: Path) -> list[Any]:
    """Write the notebook to `out` and return Scanflow's validation messages for it."""
    from scanflow_jupyter.notebook.parser import parse_notebook
    from scanflow_jupyter.notebook.validate import validate

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result.notebook, indent=1) + "\n", encoding="utf-8")
    app = parse_notebook(out)
    return list(validate(app))
