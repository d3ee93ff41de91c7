"""Read a notebook file into an `Application`, without a kernel.

The notebook JSON is read with the standard library (importing nbformat costs seconds in
Jupyter environments). Problems found while reading are kept as `Message`s on the
application; `notebook.validate` adds the checks that need the whole picture.
"""

from __future__ import annotations

import ast
import difflib
import json
import re
import shlex
from pathlib import Path
from typing import Any

from scanflow_jupyter.model import (
    Agent,
    Application,
    CodeBlock,
    Executor,
    Message,
    Part,
    Resources,
    Service,
)
from scanflow_jupyter.notebook import ipython_source
from scanflow_jupyter.notebook.magic_args import (
    CELL_MAGICS,
    LINE_MAGICS,
    MagicArgError,
    parse_magic_line,
)

_CELL_MAGIC_RE = re.compile(r"^\s*%%([A-Za-z_][\w-]*)\s*(.*)$")
_LINE_MAGIC_RE = re.compile(r"^\s*%([A-Za-z_][\w-]*)\s*(.*)$")
PARAMETERS_TAG = "parameters"


class NotebookReadError(Exception):
    """The file is not a notebook we can read; carries a `Message`."""

    def __init__(self, message: Message) -> None:
        super().__init__(str(message))
        self.message = message


def default_app_name(notebook_path: str) -> str:
    """The notebook's file stem as a valid application name (`My Notebook` -> `my-notebook`)."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", Path(notebook_path).stem.lower()).strip("-_")
    return slug if slug[:1].isalpha() else f"app-{slug}" if slug else "app"


def cell_source(cell: dict[str, Any]) -> str:
    """A cell's source as one string (nbformat allows a list of lines)."""
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def read_notebook_json(path: str | Path) -> dict[str, Any]:
    """Load the notebook JSON, raising NotebookReadError with an actionable message."""
    p = Path(path)
    if not p.exists():
        raise NotebookReadError(
            Message("error", "notebook-not-found", f"notebook {p} does not exist.",
                    "check the path; run the command from the notebook's folder or give its full path.")
        )
    if not p.is_file():
        raise NotebookReadError(
            Message("error", "not-a-notebook", f"{p} is not a file.",
                    "give the path of an .ipynb file saved by Jupyter (nbformat 4).")
        )
    from scanflow_jupyter.notebook import formats  # jupytext .py/.md notebooks

    if formats.is_text_notebook(p):
        return formats.read_text_notebook(p)
    try:
        nb = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise NotebookReadError(
            Message("error", "unreadable-notebook", f"cannot read {p}: {exc.strerror}.",
                    "check the file's permissions.")
        ) from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NotebookReadError(
            Message("error", "not-a-notebook", f"{p.name} is not valid notebook JSON ({exc}).",
                    "open and re-save it in JupyterLab, or restore it from version control.")
        ) from exc
    version = nb.get("nbformat", 4) if isinstance(nb, dict) else 4
    if not isinstance(version, int) or isinstance(version, bool) or version < 4:
        raise NotebookReadError(
            Message("error", "old-nbformat", f"{p.name} declares nbformat {version!r}; the whole number 4 is required.",
                    "open it in JupyterLab and save it again (it is converted to nbformat 4).")
        )
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise NotebookReadError(
            Message("error", "not-a-notebook", f"{p.name} has no 'cells' list, so it is not a notebook.",
                    "give the path of an .ipynb file saved by Jupyter (nbformat 4).")
        )
    return nb


def parse_notebook(path: str | Path) -> Application:
    """Parse the notebook at `path` into an Application (messages attached, never raised).

    Raises NotebookReadError only when the file is not a readable notebook at all.
    """
    p = Path(path).resolve()
    nb = read_notebook_json(p)
    return parse_notebook_dict(nb, str(p))


def parse_notebook_dict(nb: dict[str, Any], notebook_path: str) -> Application:
    """Parse an already loaded notebook JSON dict."""
    meta = nb.get("metadata") or {}
    kernelspec = meta.get("kernelspec") or {}
    language = (meta.get("language_info") or {}).get("name") or kernelspec.get("language")
    app = Application(
        name=default_app_name(notebook_path),
        notebook=notebook_path,
        kernel_name=kernelspec.get("name"),
        kernel_display_name=kernelspec.get("display_name"),
        language=language,
        cell_count=len(nb["cells"]),
    )
    msgs = app.messages
    if not kernelspec.get("name"):
        msgs.append(Message("error", "no-kernelspec", "the notebook has no kernelspec, so no step knows which kernel to start.",
                            "open the notebook in JupyterLab, select the Python 3 kernel and save it."))
    elif language and language.lower() != "python":
        msgs.append(Message("error", "not-python", f"the notebook's kernel language is {language}; Scanflow steps run Python.",
                            "switch the notebook to a Python kernel."))
    app_name_cell: int | None = None
    markdown: dict[int, str] = {}
    step_names: set[str] = set()  # executors so far (a set: parsing stays linear in the cell count)
    for index, cell in enumerate(nb["cells"]):
        if isinstance(cell, dict) and cell.get("cell_type") == "markdown":
            markdown[index] = cell_source(cell)
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell_source(cell)
        tags = (cell.get("metadata") or {}).get("tags") or []
        app_name_cell = _parse_line_magics(app, index, source, app_name_cell)
        lines = source.split("\n")
        first = next((i for i, line in enumerate(lines) if line.strip()), None)
        head = _CELL_MAGIC_RE.match(lines[first]) if first is not None else None
        _check_misplaced_cell_magics(app, index, lines, first)
        if head is None:
            if PARAMETERS_TAG in tags:
                _parse_parameters(app, index, source)
            elif first is not None:
                app.ignored_cells.append(index)
                app.exploration.append(CodeBlock(index, source))
            continue
        magic, rest = head.group(1), head.group(2)
        body = "\n".join(lines[first + 1:])
        if first != 0:
            msgs.append(Message("error", "magic-not-first-line", f"%%{magic} is not on the cell's first line (blank lines above it).",
                                f"delete the blank lines so that %%{magic} is the first line.", index))
        if magic not in CELL_MAGICS:
            close = difflib.get_close_matches(magic, CELL_MAGICS, n=1, cutoff=0.75)
            if close:
                msgs.append(Message("error", "unknown-magic", f"unknown cell magic %%{magic}.",
                                    f"did you mean %%{close[0]}?", index))
            else:
                app.ignored_cells.append(index)
            continue
        if magic == "params" and PARAMETERS_TAG in tags:
            pass  # both markers on one cell: fine, parsed once below
        try:
            parsed = parse_magic_line(magic, rest)
        except MagicArgError as err:
            msgs.append(Message("error", err.code, err.text, err.fix, index))
            continue
        if magic == "executor" and parsed.args.name in step_names:
            _continue_executor(app, index, parsed.args, body)
            continue
        _add_cell(app, index, magic, parsed.args, body)
        if magic == "executor":
            step_names.add(parsed.args.name)
    _join_parts(app, markdown)
    if not app.executors and not app.services and not app.agents:
        generated = _generated_notebook(meta.get("scanflow"))
        if generated is not None:
            msgs.append(generated)
    return app


def _generated_notebook(scanflow: Any) -> Message | None:
    """The finding for a notebook Scanflow wrote itself (a run record or a step notebook),
    opened or run as if it were the pipeline; None for any other notebook."""
    if not isinstance(scanflow, dict):
        return None
    source = Path(str(scanflow.get("notebook") or "")).name
    if scanflow.get("run_id"):
        of = f" of {source}" if source else ""
        return Message("error", "generated-notebook",
                       f"this notebook is the record of run {scanflow['run_id']}{of} (written by \"Open run as notebook\"), "
                       "not a pipeline: its cells load that run's parameters and outputs.",
                       f"open {source or 'the notebook of that run'} to change and run the pipeline; run the cells here "
                       "to explore the run's outputs.")
    if scanflow.get("step"):
        return Message("error", "generated-notebook",
                       f"this notebook is step '{scanflow['step']}' of {source or 'a pipeline'} as Scanflow generated it "
                       "(a step's input.ipynb or output.ipynb), not a pipeline.",
                       f"open {source or 'the pipeline notebook'} to change and run the pipeline; `%scanflow debug "
                       f"{scanflow['step']}` there loads this step's parameters and inputs into its kernel.")
    return None


def _continue_executor(app: Application, index: int, args: Any, body: str) -> None:
    """A later `%%executor NAME` cell: the next part of step NAME (options only on its first cell)."""
    ex = app.executor(args.name)
    if args != parse_magic_line("executor", shlex.quote(args.name)).args:
        app.messages.append(Message(
            "error", "continuation-options",
            f"cell {index + 1} starts with %%executor {args.name} with options, but step '{args.name}' begins in cell {ex.cell + 1}: "
            "a later cell with the same name continues that step and takes no options.",
            f"move the options to the %%executor line of cell {ex.cell + 1} and leave only `%%executor {args.name}` on cell {index + 1}, "
            f"or give cell {index + 1} another name to start a new step.", index))
        return
    if not ex.parts:
        ex.parts.append(Part(ex.cell, ex.source))
    ex.parts.append(Part(index, body))


def _join_parts(app: Application, markdown: dict[int, str]) -> None:
    """Multi-cell steps: markdown cells between the first and last part join the step, in order."""
    for ex in app.executors:
        if not ex.parts:
            continue
        first, last = ex.parts[0].cell, ex.parts[-1].cell
        notes = [Part(i, text, "markdown") for i, text in markdown.items() if first < i < last]
        ex.parts = sorted(ex.parts + notes, key=lambda p: p.cell)
        ex.source = "\n\n".join(p.source.strip("\n") for p in ex.parts if p.kind == "code")


def _parse_line_magics(app: Application, index: int, source: str, app_name_cell: int | None) -> int | None:
    """Handle `%scanflow_app` (and spot misspellings of Scanflow line magics)."""
    for line in source.split("\n"):
        m = _LINE_MAGIC_RE.match(line)
        if not m or line.lstrip().startswith("%%"):
            continue
        magic, rest = m.group(1), m.group(2)
        if magic == "scanflow_app":
            if app_name_cell is not None:
                app.messages.append(Message("error", "duplicate-app", f"%scanflow_app appears again (first in cell {app_name_cell + 1}).",
                                            "keep one %scanflow_app line in the notebook.", index))
                continue
            try:
                args = parse_magic_line("scanflow_app", rest).args
            except MagicArgError as err:
                app.messages.append(Message("error", err.code, err.text, err.fix, index))
                continue
            app.name = args.name
            app.app_cell = index
            if args.team:
                app.team = args.team
            app_name_cell = index
        elif magic not in LINE_MAGICS and magic.startswith("scanflow"):
            close = difflib.get_close_matches(magic, LINE_MAGICS, n=1, cutoff=0.6)
            hint = f"did you mean %{close[0]}?" if close else "use %scanflow_app NAME or %scanflow run|build|deploy|status."
            app.messages.append(Message("error", "unknown-magic", f"unknown line magic %{magic}.", hint, index))
    return app_name_cell


def _check_misplaced_cell_magics(app: Application, index: int, lines: list[str], first: int | None) -> None:
    for i, line in enumerate(lines):
        if i == first:
            continue
        m = _CELL_MAGIC_RE.match(line)
        if m and m.group(1) in CELL_MAGICS:
            above = lines[:i]
            if all(not a.strip() or a.lstrip().startswith("#") for a in above):
                fix = f"move the lines above %%{m.group(1)} below it: a cell magic must be the cell's first line."
            else:
                fix = f"split the cell so that %%{m.group(1)} starts a new cell."
            app.messages.append(Message("error", "magic-not-first-line", f"%%{m.group(1)} on line {i + 1} of the cell; a cell magic must be the cell's first line.",
                                        fix, index))


def _add_cell(app: Application, index: int, magic: str, args: Any, body: str) -> None:
    if magic == "setup":
        app.setup.append(CodeBlock(index, body))
    elif magic == "params":
        _parse_parameters(app, index, body, line_offset=1)
    elif magic == "executor":
        app.executors.append(Executor(
            name=args.name, cell=index, source=body, requires=list(args.requires),
            inputs=list(args.inputs), outputs=list(args.outputs), image=args.image,
            requirements=list(args.requirements), retries=args.retries, timeout=args.timeout,
            resources=Resources(cpu=args.cpu, memory=args.memory, gpu=args.gpu), cache=not args.no_cache,
            deps=list(args.deps), metrics=list(args.metrics),
        ))
    elif magic == "service":
        app.services.append(Service(args.name, index, body, model=args.model, replicas=args.replicas))
    elif magic == "agent":
        app.agents.append(Agent(args.name, index, body, template=args.template))


def strip_magic_lines(source: str) -> str:
    """Plain Python text with the lines of `source` (see `ipython_source.python_text`)."""
    return ipython_source.python_text(source)


def _parse_parameters(app: Application, index: int, source: str, line_offset: int = 0) -> None:
    """Literal assignments of the parameters cell become the pipeline's parameters."""
    if app.parameters_cell is not None:
        app.messages.append(Message("error", "duplicate-parameters", f"a second parameters cell (first is cell {app.parameters_cell + 1}).",
                                    "merge the parameters into one cell tagged 'parameters' (or one %%params cell).", index))
        return
    app.parameters_cell = index
    try:
        tree = ipython_source.parse(source)
    except SyntaxError as exc:
        app.messages.append(Message("error", "syntax-error", f"syntax error in the parameters cell, line {(exc.lineno or 0) + line_offset}: {exc.msg}.",
                                    "fix the Python syntax of that line.", index))
        return
    for node in tree.body:
        if isinstance(node, ast.Pass) or ipython_source.is_magic(node):
            continue  # a magic or shell line: not a parameter
        targets: list[ast.expr]
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            app.messages.append(Message("error", "non-literal-parameter", f"line {node.lineno + line_offset} of the parameters cell is not an assignment.",
                                        "keep only `name = value` lines with literal values (numbers, strings, booleans, None, lists, dicts); move other code to a %%setup cell placed below the parameters cell (it sees the parameters, interactively and in every step).", index))
            continue
        if len(targets) != 1 or not isinstance(targets[0], ast.Name):
            app.messages.append(Message("error", "non-literal-parameter", f"line {node.lineno + line_offset} of the parameters cell assigns to something other than one name.",
                                        "write one `name = value` per line.", index))
            continue
        name = targets[0].id
        try:
            app.parameters[name] = ast.literal_eval(value)
        except (ValueError, TypeError, SyntaxError, RecursionError):
            app.messages.append(Message("error", "non-literal-parameter", f"parameter '{name}' (line {node.lineno + line_offset}) is not a literal: {ast.unparse(value)}.",
                                        f"give it a literal value (number, string, boolean, None, list, dict) and compute derived values such as `{name} = {ast.unparse(value)}` in a %%setup cell placed below the parameters cell: it sees the parameters, interactively and in every step.", index))
