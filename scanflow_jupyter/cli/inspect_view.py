"""The text view of `scanflow inspect`, built as plain lines and written once.

Rich's Table lays out every cell (about 1 ms a row), so a 1000-step notebook spent seconds
printing. Here column widths are measured once, each row is a join of padded strings, and styles
(bold names, coloured severities) are ANSI codes from rich's own Style, only when rich would
colour. The table looks like rich's default table (same box characters, left-aligned cells,
fitted to the console width, cells wrapped when it is too narrow); a free line longer than the
console width is word-wrapped by rich, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from scanflow_jupyter.cell_numbers import shown

Piece = str | tuple[str, str]  # plain text, or (text, rich style name)
HEADERS = ("#", "executor", "cell", "depends on", "inputs", "outputs", "retries", "timeout")


def cell_width(text: str) -> int:
    """Terminal columns of `text` (wide characters count 2)."""
    if text.isascii():
        return len(text)
    from rich.cells import cell_len

    return cell_len(text)


def fit_widths(natural: Sequence[int], room: int) -> list[int]:
    """Column widths (without padding) summing to at most `room`: the widest columns shrink first."""
    widths = list(natural)
    excess = sum(widths) - room
    while excess > 0:
        widest = max(widths)
        if widest <= 1:
            break
        second = max((w for w in widths if w < widest), default=0)
        at_max = [i for i, w in enumerate(widths) if w == widest]
        step = min(widest - max(second, 1), -(-excess // len(at_max)))
        for i in at_max:
            if excess <= 0:
                break
            cut = min(step, excess)
            widths[i] -= cut
            excess -= cut
    return widths


def _wrap(text: str, width: int, console: Any) -> list[str]:
    """Lines of `text` at most `width` columns, word-wrapped as rich wraps a table cell."""
    if "\n" not in text and cell_width(text) <= width:
        return [text]
    from rich.text import Text

    return [line.plain.rstrip() for line in Text(text).wrap(console, width, overflow="fold")] or [""]


def table_lines(headers: Sequence[str], rows: Iterable[Sequence[str]], max_width: int, box: Any,
                console: Any, header: Callable[[str], str] = str) -> list[str]:
    """A rich-style boxed table of `rows` as lines, at most `max_width` columns wide.

    `header` styles a header cell's (padded) text. Widths are measured once over all cells; a row
    costs one join unless a cell must wrap because the console is narrower than the table.
    """
    rows = [list(r) for r in rows]
    natural = [cell_width(h) for h in headers]
    for r in rows:
        natural = [max(w, cell_width(c)) for w, c in zip(natural, r, strict=True)]
    room = max_width - 3 * len(headers) - 1  # one space either side of each cell, one border each
    widths = fit_widths(natural, room)
    wrapped = widths != natural

    def render(cells: Sequence[str], left: str, mid: str, right: str, style: Callable[[str], str]) -> list[str]:
        if not wrapped:
            return [left + mid.join(" " + style(c + " " * (w - cell_width(c))) + " "
                                    for c, w in zip(cells, widths, strict=True)) + right]
        parts = [_wrap(c, w, console) for c, w in zip(cells, widths, strict=True)]
        height = max(len(p) for p in parts)
        return [left + mid.join(" " + style(p[k] + " " * (w - cell_width(p[k]))) + " " if k < len(p) else " " * (w + 2)
                                for p, w in zip(parts, widths, strict=True)) + right
                for k in range(height)]

    padded = [w + 2 for w in widths]
    lines = [box.get_top(padded), *render(headers, box.head_left, box.head_vertical, box.head_right, header),
             box.get_row(padded, "head")]
    for r in rows:
        lines += render(r, box.mid_left, box.mid_vertical, box.mid_right, str)
    lines.append(box.get_bottom(padded))
    return lines


class TextOut:
    """Lines for one console, styled as rich would style them there, written in one write."""

    def __init__(self, console: Any) -> None:
        from rich.console import COLOR_SYSTEMS
        from rich.style import Style

        self.console = console
        self.width = console.width
        system = console.color_system
        self._system = None if system is None or console.legacy_windows else COLOR_SYSTEMS[system]
        self._styles: dict[str, Any] = {}
        self._style_cls = Style
        self.chunks: list[str] = []

    def styled(self, text: str, style: str) -> str:
        if self._system is None or not text:
            return text
        s = self._styles.get(style)
        if s is None:
            s = self._style_cls.parse(style)
            s = self._styles[style] = s.without_color if self.console.no_color else s
        return s.render(text, color_system=self._system)

    def line(self, *pieces: Piece) -> None:
        plain = "".join(p if isinstance(p, str) else p[0] for p in pieces)
        if "\n" not in plain and cell_width(plain) <= self.width:
            self.chunks.append("".join(p if isinstance(p, str) else self.styled(*p) for p in pieces) + "\n")
            return
        from rich.text import Text

        # a long line: rich word-wraps it at the console width, as before
        with self.console.capture() as captured:
            self.console.print(Text.assemble(*pieces))
        self.chunks.append(captured.get())

    def table(self, headers: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
        from rich import box

        shape = box.HEAVY_HEAD.substitute(self.console.options)
        for text in table_lines(headers, rows, self.width, shape, self.console,
                                header=lambda h: self.styled(h, "bold")):
            self.chunks.append(text + "\n")

    def write(self) -> None:
        file = self.console.file
        file.write("".join(self.chunks))
        file.flush()
        self.chunks.clear()


def print_inspect(console: Any, app: Any, order: list[str], requirements: dict[str, Any], messages: list[Any],
                  valid: bool, key_of: Callable[[Any], dict[str, Any]]) -> None:
    """The text view: header, parameters, the executor table, requirements, cache keys, messages."""
    out = TextOut(console)
    out.line((app.name, "bold"), f" (team {app.team}) — {Path(app.notebook).name}")
    if app.parameters:
        out.line("parameters: " + ", ".join(f"{k}={v!r}" for k, v in app.parameters.items()))
    position = {name: i + 1 for i, name in enumerate(order)}
    out.table(HEADERS, ([str(position.get(e.name, "-")), e.name, str(shown(e.cell)), ", ".join(app.dependencies(e)) or "-",
                         ", ".join(e.inputs) or "-", ", ".join(e.outputs) or "-", str(e.retries),
                         f"{e.timeout:g}s" if e.timeout else "-"] for e in app.executors))
    for name, r in requirements.items():
        out.line((name, "bold"), f" image requirements: {', '.join(p.spec for p in r.direct) or '-'}")
    for e in app.executors:
        key = key_of(e)
        files = [*key.get("deps", {}), *key.get("local_modules", {}), *key.get("run_notebooks", {}),
                 *key.get("data_files", {})]
        out.line((e.name, "bold"), f" cache key: parameters {', '.join(key.get('params_read', [])) or '-'};"
                 f" files {', '.join(dict.fromkeys(files)) or '-'}" + ("" if e.cache else " (--no-cache)"))
    for s in app.services:
        out.line("service ", (s.name, "bold"), f" (cell {shown(s.cell)}) model={s.model or 'custom predict'} replicas={s.replicas}")
    for a in app.agents:
        out.line("agent ", (a.name, "bold"), f" (cell {shown(a.cell)}) template={a.template or '-'}")
    for m in messages:
        where = f"cell {shown(m.cell)}" if m.cell is not None else "notebook"  # 1-based, as JupyterLab counts
        out.line((m.severity, "red" if m.severity == "error" else "yellow"), " ", (where, "bold"), f": {m.text}")
        out.line("  ", ("fix:", "dim"), f" {m.fix}")
    if valid:
        out.line(("valid", "green"))
    out.write()
