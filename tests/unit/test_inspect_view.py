"""The text view of `scanflow inspect` (cli/inspect_view.py) against rich's own rendering."""

from __future__ import annotations

import io
import re
from types import SimpleNamespace

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

from scanflow_jupyter.cli.inspect_view import (
    HEADERS,
    TextOut,
    fit_widths,
    print_inspect,
    table_lines,
)

ROWS = [["1", "load", "2", "-", "-", "raw", "0", "-"],
        ["2", "clean_données", "3", "load", "raw", "df", "2", "30s"],
        ["3", "特徴", "4", "clean_données, load", "df, raw", "feats", "0", "1.5s"]]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def console(width: int, terminal: bool = False) -> Console:
    return Console(file=io.StringIO(), width=width, force_terminal=terminal, highlight=False,
                   color_system="truecolor" if terminal else None)


def rich_table(rows: list[list[str]], width: int) -> list[str]:
    """What rich's default Table prints for these rows (the look the text view keeps)."""
    t = Table(*HEADERS)
    for r in rows:
        t.add_row(*r)
    c = console(width)
    c.print(t)
    return c.file.getvalue().splitlines()


def test_table_is_rich_default_table_when_it_fits() -> None:
    c = console(200)
    assert table_lines(HEADERS, ROWS, 200, box.HEAVY_HEAD, c) == rich_table(ROWS, 200)
    assert table_lines(HEADERS, [], 200, box.HEAVY_HEAD, c) == rich_table([], 200)


def test_narrow_console_wraps_cells_and_keeps_every_word() -> None:
    rows = [*ROWS, ["4", "a_step_with_a_rather_long_name", "5", "load, clean_données, 特徴", "raw, df, feats", "model", "1", "-"]]
    lines = table_lines(HEADERS, rows, 60, box.HEAVY_HEAD, console(60))
    assert max(cell_len(line) for line in lines) <= 60
    assert len({cell_len(line) for line in lines}) == 1  # every line of the box is as wide
    assert len(lines) > len(rows) + 4  # some rows took more than one line
    body = [line.split("│")[1:-1] for line in lines if line.startswith("│")]
    for j in range(len(HEADERS)):  # a cell's pieces follow each other down its column: nothing is lost
        column = "".join(cells[j] for cells in body).replace(" ", "")
        assert column == "".join(r[j] for r in rows).replace(" ", ""), HEADERS[j]
    head = [line.split("┃")[1:-1] for line in lines if line.startswith("┃")]
    assert {"".join(cells[j] for cells in head).replace(" ", "") for j in range(len(HEADERS))} == \
        {h.replace(" ", "") for h in HEADERS}


def test_fit_widths_shrinks_the_widest_columns_first() -> None:
    assert fit_widths([3, 10, 20], 100) == [3, 10, 20]
    assert fit_widths([3, 10, 20], 25) == [3, 10, 12]
    assert fit_widths([3, 10, 20], 17) == [3, 7, 7]
    assert sum(fit_widths([5, 5, 5], 3)) == 3


def test_styles_only_on_a_terminal_and_markup_is_literal() -> None:
    for terminal in (False, True):
        c = console(80, terminal)
        out = TextOut(c)
        out.line(("train", "bold"), " cache key: files [data]/x.csv")
        out.line(("error", "red"), " ", ("cell 3", "bold"), ": [bold]not markup[/bold]")
        out.write()
        text = c.file.getvalue()
        assert ("\x1b[1mtrain\x1b[0m" in text) is terminal
        assert ("\x1b[31merror\x1b[0m" in text) is terminal
        plain = ANSI.sub("", text)
        assert plain == "train cache key: files [data]/x.csv\nerror cell 3: [bold]not markup[/bold]\n"


def test_a_line_longer_than_the_console_is_word_wrapped() -> None:
    c = console(30)
    out = TextOut(c)
    out.line(("feat", "bold"), " cache key: parameters scale; files helpers.py, mathutil.py")
    out.write()
    lines = c.file.getvalue().splitlines()
    assert len(lines) > 1 and all(len(line) <= 30 for line in lines)
    assert " ".join(lines).split() == ["feat", "cache", "key:", "parameters", "scale;", "files", "helpers.py,", "mathutil.py"]


def test_print_inspect_shows_every_part() -> None:
    ex = [SimpleNamespace(name=n, cell=i + 1, inputs=i_, outputs=o, retries=0, timeout=None, cache=c)
          for i, (n, i_, o, c) in enumerate([("a", [], ["x"], True), ("b", ["x"], ["y"], False)])]
    app = SimpleNamespace(name="demo", team="t", notebook="/p/demo.ipynb", parameters={"n": 3}, executors=ex,
                          services=[SimpleNamespace(name="api", cell=4, model=None, replicas=2)],
                          agents=[SimpleNamespace(name="bot", cell=5, template=None)],
                          dependencies=lambda e: ["a"] if e.name == "b" else [])
    messages = [SimpleNamespace(severity="warning", cell=None, text="a warning", fix="do this")]
    reqs = {"a": SimpleNamespace(direct=[SimpleNamespace(spec="pandas==2.2.3")])}
    c = console(120)
    print_inspect(c, app, ["a", "b"], reqs, messages, True, lambda e: {"params_read": ["n"], "deps": {"d.txt": 1}})
    lines = c.file.getvalue().splitlines()
    assert lines[:2] == ["demo (team t) — demo.ipynb", "parameters: n=3"]
    assert lines[2:8] == rich_table([["1", "a", "2", "-", "-", "x", "0", "-"], ["2", "b", "3", "a", "x", "y", "0", "-"]], 120)
    assert lines[8:] == ["a image requirements: pandas==2.2.3",
                         "a cache key: parameters n; files d.txt",
                         "b cache key: parameters n; files d.txt (--no-cache)",
                         "service api (cell 5) model=custom predict replicas=2",
                         "agent bot (cell 6) template=-",
                         "warning notebook: a warning", "  fix: do this", "valid"]
