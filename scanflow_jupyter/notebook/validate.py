"""One validation engine for the CLI, the magics and the sidebar: `validate(app)`.

Returns every finding at once (parse-time messages first, then whole-notebook checks),
each with its severity, notebook cell, what is wrong and how to fix it.
"""

from __future__ import annotations

import ast
import builtins
import functools
import keyword
import re

from scanflow_jupyter.model import Application, Executor, Message
from scanflow_jupyter.notebook import ipython_source
from scanflow_jupyter.quantities import cpu_problem, memory_hint, memory_problem

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
IMAGE_RE = re.compile(
    r"^(?:[a-zA-Z0-9.-]+(?::\d+)?/)?[a-z0-9]+(?:[._-]{1,2}[a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:[._-]{1,2}[a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)
MODEL_URI_RE = re.compile(r"^(models:/[^/@]+(/\d+|@[\w-]+)|runs:/[0-9a-f]+/.+|[a-z0-9+]+://.+)$")
RESERVED_NAMES = {"__scanflow__", "_scanflow"}
KERNEL_NAMES = {"display", "get_ipython", "In", "Out", "exit", "quit", "__file__", ipython_source.MAGIC_CALL}


def has_errors(messages: list[Message]) -> bool:
    """True if any message is an error (warnings never block a run)."""
    return any(m.severity == "error" for m in messages)


def validate(app: Application) -> list[Message]:
    """All findings for `app`: errors block running it, warnings do not."""
    msgs = list(app.messages)
    generated = [m for m in msgs if m.code == "generated-notebook"]
    if generated:  # a run record or step notebook: what it is and which notebook to open is all there is to say
        return generated
    magic_errors = {"bad-arguments", "unknown-option", "unexpected-arguments", "bad-quoting", "unknown-magic"}
    if not app.executors and not app.services and not app.agents and not any(m.code in magic_errors for m in msgs):
        msgs.append(Message("error", "no-executors", "the notebook declares no %%executor cell, so there is nothing to run.",
                            "start a cell with `%%executor NAME` (after `%load_ext scanflow_jupyter`)."))
    if not NAME_RE.match(app.name):
        msgs.append(Message("error", "bad-app-name", f"application name '{app.name}' is not valid (letters, digits, '-' and '_', starting with a letter, at most 63).",
                            "name it with `%scanflow_app my-app` or rename the notebook file.", app.app_cell))
    if not NAME_RE.match(app.team):
        msgs.append(Message("error", "bad-team-name", f"team name '{app.team}' is not valid (letters, digits, '-' and '_', starting with a letter, at most 63).",
                            "rename it, e.g. `%scanflow_app my-app --team data-science`.", app.app_cell))
    for name in app.parameters:
        if name in RESERVED_NAMES:
            msgs.append(Message("error", "reserved-name", f"parameter '{name}' uses a name Scanflow reserves.",
                                "rename the parameter.", app.parameters_cell))
    msgs += _check_names(app)
    msgs += _check_code(app)
    for ex in app.executors:
        msgs += _check_executor(app, ex)
    msgs += _check_cycles(app)
    msgs += _check_exploration(app)
    for svc in app.services:
        if svc.model and not MODEL_URI_RE.match(svc.model):
            msgs.append(Message("error", "bad-model-uri", f"service '{svc.name}': --model '{svc.model}' is not a model URI.",
                                "use models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/PATH.", svc.cell))
        if not svc.model and "predict" not in _defined_names(svc.source):
            msgs.append(Message("error", "service-without-model", f"service '{svc.name}' has neither --model nor a `predict` function.",
                                "add --model models:/NAME@champion, or define `def predict(inputs): ...` in the cell.", svc.cell))
    return msgs


def _check_names(app: Application) -> list[Message]:
    msgs: list[Message] = []
    seen: dict[str, int] = {}
    for kind, items in (("executor", app.executors), ("service", app.services), ("agent", app.agents)):
        for item in items:
            if not NAME_RE.match(item.name):
                msgs.append(Message("error", "bad-name", f"{kind} name '{item.name}' is not valid (letters, digits, '-' and '_', starting with a letter, at most 63).",
                                    f"rename it, e.g. %%{kind} {_slug(item.name)}.", item.cell))
            if item.name in seen:
                msgs.append(Message("error", "duplicate-name", f"the name '{item.name}' is already used in cell {seen[item.name] + 1}.",
                                    "give every executor, service and agent its own name.", item.cell))
            else:
                seen[item.name] = item.cell
    return msgs


def _slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-_") or "step"
    return slug if slug[0].isalpha() else f"step-{slug}"


def _check_code(app: Application) -> list[Message]:
    msgs: list[Message] = []
    blocks = [("setup cell", b.cell, b.source) for b in app.setup]
    blocks += [(f"executor '{e.name}'", part.cell, part.source) for e in app.executors for part in e.code_parts()]
    blocks += [(f"service '{s.name}'", s.cell, s.source) for s in app.services]
    blocks += [(f"agent '{a.name}'", a.cell, a.source) for a in app.agents]
    for what, cell, source in blocks:
        try:
            ipython_source.parse(source)
        except SyntaxError as exc:
            line = (exc.lineno or 0) + 1  # +1: the magic line
            msgs.append(Message("error", "syntax-error", f"syntax error in {what}, line {line} of the cell: {exc.msg}.",
                                "fix the Python syntax of that line.", cell))
    for ex in app.executors:
        if not ex.source.strip():
            msgs.append(Message("warning", "empty-executor", f"executor '{ex.name}' has no code.",
                                "write the step's code below the %%executor line, or delete the cell.", ex.cell))
    return msgs


def _check_executor(app: Application, ex: Executor) -> list[Message]:
    msgs: list[Message] = []
    index = app.index()  # built once per application: checking every executor stays linear
    executors, producers = index.by_name.keys(), index.producers
    others = {s.name for s in app.services} | {a.name for a in app.agents}
    for dep in ex.requires:
        if dep == ex.name:
            msgs.append(Message("error", "self-dependency", f"executor '{ex.name}' requires itself.",
                                f"remove '{dep}' from --requires.", ex.cell))
        elif dep in others:
            msgs.append(Message("error", "requires-non-executor", f"executor '{ex.name}' requires '{dep}', which is a service or agent, not an executor.",
                                "--requires names executors only; services and agents are deployed, not run as steps.", ex.cell))
        elif dep not in executors:
            msgs.append(Message("error", "unknown-dependency", f"executor '{ex.name}' requires '{dep}', but no executor has that name.",
                                _did_you_mean(dep, executors - {ex.name}, "fix the name in --requires"), ex.cell))
    for option, values in (("--requires", ex.requires), ("--inputs", ex.inputs), ("--outputs", ex.outputs)):
        dupes = sorted({v for v in values if values.count(v) > 1})
        if dupes:
            msgs.append(Message("warning", "duplicate-value", f"executor '{ex.name}' lists {', '.join(dupes)} more than once in {option}.",
                                "list each name once.", ex.cell))
    for var in ex.inputs + ex.outputs:
        if not var.isidentifier() or keyword.iskeyword(var):
            msgs.append(Message("error", "bad-variable", f"executor '{ex.name}': '{var}' is not a Python variable name.",
                                "--inputs and --outputs take variable names such as `model` or `train_df`.", ex.cell))
        elif var in RESERVED_NAMES:
            msgs.append(Message("error", "reserved-name", f"executor '{ex.name}': '{var}' is a name Scanflow reserves.",
                                "rename the variable.", ex.cell))
    for var in dict.fromkeys(ex.inputs):
        makers = [p for p in producers.get(var, []) if p != ex.name]
        if app.producer_above(ex, var) is not None:
            continue
        below = [app.executor(p) for p in makers]
        if below:
            first = min(below, key=lambda e: e.cell)
            msgs.append(Message("error", "input-produced-below", f"executor '{ex.name}' (cell {ex.cell + 1}) needs input '{var}', but its only producer, "
                                f"'{first.name}', is below it (cell {first.cell + 1}); an input comes from the nearest producer above, as in a top-to-bottom run.",
                                f"move the %%executor {first.name} cell above cell {ex.cell + 1}, or move %%executor {ex.name} below cell {first.cell + 1}.", ex.cell))
        elif var in app.parameters:
            msgs.append(Message("error", "input-is-parameter", f"executor '{ex.name}' lists pipeline parameter '{var}' in --inputs.",
                                f"remove '{var}' from --inputs: parameters are available in every step.", ex.cell))
        else:
            msgs.append(Message("error", "input-without-producer", f"executor '{ex.name}' needs input '{var}', but no executor lists it in --outputs.",
                                f"add `--outputs {var}` to the executor above it that computes it.", ex.cell))
    if ex.outputs:
        assigned = _defined_names(ex.source)
        for var in ex.outputs:
            if var.isidentifier() and not keyword.iskeyword(var) and var not in assigned:
                msgs.append(Message("error", "output-not-assigned", f"executor '{ex.name}' declares output '{var}' but its code never assigns it.",
                                    f"assign `{var} = ...` in the cell or remove it from --outputs.", ex.cell))
            if var in app.parameters:
                msgs.append(Message("error", "output-shadows-parameter", f"executor '{ex.name}' outputs '{var}', which is also a pipeline parameter.",
                                    "rename the output or the parameter.", ex.cell))
    msgs += _check_resources(ex)
    if ex.image is not None and not IMAGE_RE.match(ex.image):
        msgs.append(Message("error", "bad-image", f"executor '{ex.name}': --image '{ex.image}' is not a valid image reference.",
                            "use REGISTRY/NAME:TAG, e.g. --image python:3.11-slim.", ex.cell))
    msgs += _check_requirements(ex)
    msgs += _check_deps(app, ex)
    msgs += _check_undefined(app, ex)
    return msgs


def _check_deps(app: Application, ex: Executor) -> list[Message]:
    """Every `--deps` entry must name an existing file or folder, or a glob that matches files."""
    if not ex.deps:
        return []
    from scanflow_jupyter.runtime.cache import deps_match, project_root

    root = project_root(app)
    return [
        Message("error", "missing-deps", f"executor '{ex.name}': --deps {pattern} matches no file in the notebook's folder.",
                f"create it, fix the path (relative to {root}), or remove it from --deps on %%executor {ex.name}.", ex.cell)
        for pattern in ex.deps if not deps_match(root, pattern)
    ]


def _check_resources(ex: Executor) -> list[Message]:
    msgs = []
    cpu, memory = ex.resources.cpu, ex.resources.memory
    if cpu is not None and cpu_problem(cpu):
        msgs.append(Message("error", "bad-quantity", f"executor '{ex.name}': --cpu '{cpu}' is not a CPU quantity.",
                            "use cores or millicores, e.g. --cpu 2, --cpu 0.5 or --cpu 500m.", ex.cell))
    if memory is not None and memory_problem(memory):
        msgs.append(Message("error", "bad-quantity", f"executor '{ex.name}': --memory '{memory}' is not a memory quantity.",
                            memory_hint(memory), ex.cell))
    return msgs


def _check_requirements(ex: Executor) -> list[Message]:
    msgs = []
    for req in ex.requirements:  # (no requirements: packaging is not even imported, ≈0.1 s)
        problem = _requirement_problem(req)
        if problem is not None:
            msgs.append(Message("error", "bad-requirement", f"executor '{ex.name}': --requirements '{req}' is not a valid requirement ({problem}).",
                                "write pip requirement specifiers, e.g. --requirements scikit-learn==1.5.2 'pandas>=2'.", ex.cell))
    return msgs


@functools.lru_cache(maxsize=4096)
def _requirement_problem(req: str) -> str | None:
    """Why `req` is not a pip requirement specifier (None: it is one). Cached: steps repeat them."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        Requirement(req)
    except InvalidRequirement as exc:
        return str(exc).splitlines()[0].rstrip(".")
    return None


def _check_cycles(app: Application) -> list[Message]:
    """Find dependency cycles and name each one (a -> b -> a)."""
    names = {e.name for e in app.executors}
    graph = {e.name: [d for d in app.dependencies(e) if d in names and d != e.name] for e in app.executors}
    cells = {e.name: e.cell for e in app.executors}
    msgs: list[Message] = []
    state: dict[str, int] = {}
    reported: set[frozenset[str]] = set()

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in graph[node]:
            if state.get(dep) == 1:
                cycle = path[path.index(dep):] + [dep]
                key = frozenset(cycle)
                if key not in reported:
                    reported.add(key)
                    shown = " -> ".join(reversed(cycle))
                    msgs.append(Message("error", "cycle", f"the steps form a cycle: {shown}.",
                                        "remove one of these dependencies: a --requires entry or an --inputs/--outputs pair between two of these steps.", cells[dep]))
            elif state.get(dep) is None:
                visit(dep, path + [dep])
        state[node] = 2

    for name in graph:
        if state.get(name) is None:
            visit(name, [name])
    return msgs


def _check_exploration(app: Application) -> list[Message]:
    """Warn when a cell without a magic, between the parts of a step, assigns a name a later part reads.

    Top to bottom, that later part sees the exploration cell's value; in the pipeline the
    exploration cell does not run, so the two would differ.
    """
    msgs: list[Message] = []
    for ex in app.executors:
        parts = ex.code_parts()
        if len(parts) < 2:
            continue
        for block in app.exploration:
            if not parts[0].cell < block.cell < parts[-1].cell:
                continue
            assigned = _defined_names(block.source)
            for k, part in enumerate(parts):
                if part.cell < block.cell:
                    continue
                between = set().union(*(_defined_names(p.source) for p in parts[:k] if p.cell > block.cell))
                for name in sorted((assigned & _read_before_assigned(part.source)) - between):
                    msgs.append(Message("warning", "exploration-feeds-step",
                                        f"cell {block.cell + 1} has no magic, so the pipeline does not run it, but it assigns '{name}', "
                                        f"which step '{ex.name}' reads in cell {part.cell + 1}: the pipeline would not give what the notebook gives.",
                                        f"start cell {block.cell + 1} with `%%executor {ex.name}` to make it part of the step, move the assignment "
                                        "into a %%setup cell, or rename the variable in one of the cells.", block.cell))
    return msgs


def _read_before_assigned(source: str) -> set[str]:
    """Names a piece of code reads before (or without) assigning them itself."""
    first_store: dict[str, tuple[int, int]] = {}
    loads: list[tuple[str, tuple[int, int]]] = []
    try:
        tree = ipython_source.parse(source)
    except SyntaxError:
        return set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            pos = (node.lineno, 0)  # by line: in `x = x + 1` the read comes first
            if isinstance(node.ctx, ast.Store):
                first_store[node.id] = min(first_store.get(node.id, pos), pos)
            else:
                loads.append((node.id, pos))
    return {name for name, pos in loads if name not in first_store or pos <= first_store[name]}


def _defined_names(source: str) -> set[str]:
    """Names a piece of code binds anywhere (assignments, imports, defs, loops, with, walrus)."""
    try:
        tree = ipython_source.parse(source)
    except SyntaxError:
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name or isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            names.add(node.name)
    return names


def _loaded_names(source: str) -> list[tuple[str, int]]:
    try:
        tree = ipython_source.parse(source)
    except SyntaxError:
        return []
    return [(n.id, n.lineno) for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)]


def _check_undefined(app: Application, ex: Executor) -> list[Message]:
    """Warn when a step reads a name that nothing in its step notebook provides."""
    available = set(dir(builtins)) | KERNEL_NAMES | set(app.parameters) | set(ex.inputs)
    for block in app.setup:
        available |= _defined_names(block.source)
    available |= _defined_names(ex.source)
    missing: dict[str, tuple[int, int]] = {}
    for part in ex.code_parts():
        for name, line in _loaded_names(part.source):
            if name not in available and name not in missing:
                missing[name] = (part.cell, line + 1)
    return [
        Message("warning", "undefined-name", f"executor '{ex.name}' uses '{name}' (line {line} of the cell), which no %%setup cell, parameter or --inputs provides.",
                f"add `--inputs {name}` and `--outputs {name}` on its producer, or define it in a %%setup cell.", cell)
        for name, (cell, line) in missing.items()
    ]


def _did_you_mean(word: str, choices: set[str], default: str) -> str:
    import difflib

    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else f"{default}; known executors: {', '.join(sorted(choices)) or 'none'}."
