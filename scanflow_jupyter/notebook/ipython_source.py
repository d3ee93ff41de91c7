"""One IPython-aware front end: a cell body (IPython syntax) as plain Python for analysis.

Cell bodies run in the kernel exactly as written (`!cmd`, `x = !cmd`, `%time y = f()`, a
`%%capture` first line, `obj?`, `%run other.ipynb`). Static analysis — the parser and
validation, the cache key, the requirement scan, the importers — reads them through this
module, which uses IPython's own input transformers
(`IPython.core.inputtransformer2.TransformerManager.transform_cell`), so every part agrees:

* `python_source(src)`: what the kernel executes (IPython's translation; plain Python unchanged);
* `analyse(src)` / `parse(src)`: an `ast.Module` for analysis in which code that a magic runs in
  the user's namespace (`%time STMT`, `%%time`, `%%capture [VAR]`) is spliced in as code, and
  every other magic or shell command is a call of `MAGIC_CALL` (so `files = !ls` assigns
  `files`); `Code.magics` lists them (`%run` targets, command text) with 1-based lines;
* `python_text(src)`: line-preserving plain Python text for callers that parse text themselves.

Code that IPython cannot read either raises `SyntaxError` (`IPythonSourceError` when IPython
itself fails) carrying the line, so callers report which cell and what.
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass, field

#: The call that stands for a magic or shell command in an analysis tree.
MAGIC_CALL = "__ipython_magic__"
#: Line magics whose argument is a statement run in the user's namespace.
CODE_LINE_MAGICS = {"time"}
#: Cell magics whose body is Python run in the user's namespace.
CODE_CELL_MAGICS = {"time", "capture"}
_CELL_MAGIC = re.compile(r"^%%([A-Za-z_]\w*)[ \t]*(.*)$")
_KINDS = {"system": "system", "getoutput": "getoutput", "run_line_magic": "line", "run_cell_magic": "cell"}


class IPythonSourceError(SyntaxError):
    """IPython's input transformer could not read the code."""


@dataclass(frozen=True)
class Magic:
    """One IPython construct: `kind` is system (`!cmd`), getoutput (`x = !cmd`), line or cell."""

    kind: str
    name: str  # magic name ("" for shell commands); `obj?` is the line magic pinfo
    text: str  # the magic's argument line, or the shell command
    line: int  # 1-based line in the analysed source
    body: str = ""  # a cell magic's body


@dataclass
class Code:
    """A cell body read for analysis."""

    tree: ast.Module
    magics: list[Magic] = field(default_factory=list)

    def runs(self) -> list[str]:
        """Arguments of every `%run` line (a path, or `-m module`), in order."""
        return [m.text for m in self.magics if m.kind == "line" and m.name == "run"]

    def magic_text(self) -> str:
        """All magic arguments, commands and non-Python bodies (names they may interpolate)."""
        return "\n".join(f"{m.text}\n{m.body}".strip("\n") for m in self.magics)


def python_source(source: str) -> str:
    """What the kernel runs: IPython's translation of `source` (plain Python comes back unchanged)."""
    if _plain(source) is not None:
        return source
    try:
        return _transform(source)
    except Exception as exc:  # noqa: BLE001 - any failure inside IPython is reported the same way
        err = IPythonSourceError(f"IPython cannot read this code ({type(exc).__name__}: {exc})")
        err.lineno = getattr(exc, "lineno", None) or 1
        raise err from exc


@functools.lru_cache(maxsize=1024)
def _transform(source: str) -> str:
    """IPython's translation (remembered: validation reads each body several times)."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


def parse(source: str) -> ast.Module:
    """The analysis tree of `source` (see `analyse`); raises SyntaxError."""
    return analyse(source).tree


def analyse(source: str) -> Code:
    """Read a cell body (IPython syntax) for analysis; raises SyntaxError with the body's line."""
    lines = source.split("\n")
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    head = _CELL_MAGIC.match(lines[first].strip()) if first is not None else None
    if head:
        return _cell_magic(head.group(1), head.group(2), "\n".join(lines[first + 1:]), first + 1)
    tree = _plain(source)
    if tree is not None:
        return Code(tree)
    try:
        tree = ast.parse(python_source(source))
    except ValueError as exc:  # e.g. a NUL byte (a SyntaxError from Python 3.12 on)
        raise SyntaxError(str(exc), ("<cell>", 1, 0, "")) from exc
    code = Code(tree)
    code.tree = _Rewriter(code).visit(tree)
    ast.fix_missing_locations(code.tree)
    return code


def python_text(source: str) -> str:
    """Plain Python text with the same line numbers as `source`, for callers that parse text.

    IPython's translation (magics become `get_ipython()` calls on their own line); a leading
    cell magic line becomes `pass` (its body kept if it is Python, blank lines if not). Never
    raises: code that IPython cannot read comes back unchanged (parsing it then fails).
    """
    if _plain(source) is not None:
        return source
    lines = source.split("\n")
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    head = _CELL_MAGIC.match(lines[first].strip()) if first is not None else None
    if head:
        body = lines[first + 1:]
        kept = python_text("\n".join(body)) if head.group(1) in CODE_CELL_MAGICS else "\n" * (len(body) - 1)
        return "\n".join([*lines[:first], "pass", kept])
    try:
        return python_source(source)
    except SyntaxError:
        return source


def is_magic(node: ast.AST) -> bool:
    """True for the statement or expression standing for a magic in an analysis tree."""
    value = node.value if isinstance(node, ast.Expr) else node
    return isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == MAGIC_CALL


def _plain(source: str) -> ast.Module | None:
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError):
        return None


def _magic_call(lineno: int = 1) -> ast.Call:
    return _at(ast.Call(func=ast.Name(MAGIC_CALL, ast.Load()), args=[], keywords=[]), lineno)


def _at(node: ast.AST, lineno: int) -> ast.AST:
    for sub in ast.walk(node):
        if "lineno" in sub._attributes:
            sub.lineno, sub.col_offset = lineno, 0
            sub.end_lineno, sub.end_col_offset = lineno, 0
    return node


def _cell_magic(name: str, line: str, body: str, lineno: int) -> Code:
    """A body whose first line is a cell magic (`%%capture out`, `%%time`, `%%bash`, ...)."""
    magic = Magic("cell", name, line.strip(), lineno, body)
    if name not in CODE_CELL_MAGICS:
        return Code(ast.Module([_at(ast.Expr(_magic_call()), lineno)], []), [magic])
    try:
        inner = analyse(body)
    except SyntaxError as exc:
        exc.lineno = (exc.lineno or 1) + lineno
        raise
    ast.increment_lineno(inner.tree, lineno)
    stmts: list[ast.stmt] = []
    words = [w for w in line.split() if not w.startswith("-")]  # `%%capture [--no-stderr ...] [out]`
    target = words[0] if name == "capture" and words and words[0].isidentifier() else None
    if target:  # `%%capture out` binds `out`
        stmts.append(_at(ast.Assign([ast.Name(target, ast.Store())], _magic_call()), lineno))
    tree = ast.Module(stmts + inner.tree.body, [])
    return Code(ast.fix_missing_locations(tree), [magic, *inner.magics])


class _Rewriter(ast.NodeTransformer):
    """Replace IPython's `get_ipython().system|getoutput|run_line_magic|run_cell_magic(...)` calls."""

    def __init__(self, code: Code) -> None:
        self.code = code

    def visit_Expr(self, node: ast.Expr) -> ast.AST | list[ast.stmt]:
        found = _ipython_call(node.value)
        if found and found[0] == "line" and found[1] in CODE_LINE_MAGICS:
            spliced = self._code_magic(found, node.lineno)
            if spliced is not None:
                return spliced.body
        return self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> ast.AST:
        found = _ipython_call(node)
        if not found:
            return self.generic_visit(node)
        kind, name, text, body = found
        if kind == "line" and name in CODE_LINE_MAGICS:  # `x = %time f()`: the expression
            try:
                expr = ast.parse(text.strip(), mode="eval").body
                self.code.magics.append(Magic(kind, name, text, node.lineno))
                return ast.copy_location(_at(expr, node.lineno), node)
            except SyntaxError:
                pass
        self.code.magics.append(Magic(kind, name, text, node.lineno, body))
        return ast.copy_location(_magic_call(node.lineno), node)

    def _code_magic(self, found: tuple[str, str, str, str], lineno: int) -> ast.Module | None:
        kind, name, text, _ = found
        try:
            inner = analyse(text.strip())
        except SyntaxError:
            return None
        self.code.magics.append(Magic(kind, name, text, lineno))
        self.code.magics += inner.magics
        return _at(inner.tree, lineno)


def _ipython_call(node: ast.AST) -> tuple[str, str, str, str] | None:
    """(kind, magic name, argument text, cell body) of a `get_ipython().<method>(...)` call."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in _KINDS and isinstance(node.func.value, ast.Call)
            and isinstance(node.func.value.func, ast.Name) and node.func.value.func.id == "get_ipython"):
        return None
    values = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    if len(values) != len(node.args) or not values:
        return None  # the user's own get_ipython() call: left as written
    kind = _KINDS[node.func.attr]
    if kind in ("system", "getoutput"):
        return kind, "", values[0], ""
    padded = [*values, "", ""]
    return kind, padded[0], padded[1], padded[2] if kind == "cell" else ""
