"""The Rich live view of `scanflow run`: one line per step (status, attempt, duration)."""

from __future__ import annotations

import threading
import time
from typing import Any

from scanflow_jupyter.cell_numbers import shown
from scanflow_jupyter.runtime.events import Event

STYLE = {
    "pending": "dim", "queued": "dim", "running": "bold blue", "succeeded": "green", "cached": "magenta",
    "failed": "bold red", "skipped": "dim", "killed": "yellow", "retrying": "yellow",
}
EVENT_STATUS = {
    "step_queued": "queued", "step_started": "running", "step_succeeded": "succeeded", "step_cached": "cached",
    "step_failed": "failed", "step_skipped": "skipped", "step_retrying": "retrying", "step_killed": "killed",
}


class LiveRunView:
    """Consumes runner events and redraws a table; prints failures with their cell."""

    def __init__(self, console: Any) -> None:
        from rich.live import Live

        self.console = console
        self.rows: dict[str, dict[str, Any]] = {}
        self.title = "scanflow run"
        self._lock = threading.Lock()
        self.live = Live(self._render(), console=console, refresh_per_second=8, transient=False,
                         get_renderable=self._render, redirect_stdout=False)
        self.live.start()

    def _render(self) -> Any:
        from rich.table import Table

        table = Table(title=self.title, title_justify="left", show_edge=False, pad_edge=False)
        for col in ("step", "status", "attempt", "duration", "note"):
            table.add_column(col)
        now = time.time()
        with self._lock:
            rows = list(self.rows.items())
        for name, row in rows:
            duration = row.get("duration")
            if duration is None and row.get("started"):
                duration = now - row["started"]
            status = row["status"]
            table.add_row(name, f"[{STYLE.get(status, '')}]{status}[/]", str(row.get("attempt") or "-"),
                          f"{duration:.1f}s" if duration is not None else "-", row.get("note", ""))
        return table

    def on_event(self, event: Event) -> None:
        with self._lock:
            if event.type == "run_started":
                self.title = f"scanflow run {event.run_id} — {event.data.get('app')}"
                for name in event.data.get("steps", []):
                    self.rows.setdefault(name, {"status": "pending"})
            status = EVENT_STATUS.get(event.type)
            if status and event.step:
                row = self.rows.setdefault(event.step, {"status": "pending"})
                row["status"] = status
                if event.attempt:
                    row["attempt"] = event.attempt
                if event.type == "step_started":
                    row["started"] = event.time
                    row.pop("duration", None)
                if "duration_s" in event.data:
                    row["duration"] = event.data["duration_s"]
                if event.type == "step_cached":
                    row["note"] = f"from {event.data.get('cached_from')}"
                if event.type == "step_skipped":
                    row["note"] = event.data.get("reason", "")
                if event.type in ("step_failed", "step_retrying"):
                    cell = event.data.get("cell")
                    where = f"cell {shown(cell)}" if cell is not None else "step"
                    row["note"] = f"{where}: {event.data.get('ename')}: {event.data.get('evalue')}"[:120]
        if event.type == "run_warning":  # e.g. tracking-pending: the tracker was unreachable
            self.console.print(f"[yellow]warning[/yellow] [bold]{event.data.get('code')}[/bold]: "
                               f"{event.data.get('message')}\n  [dim]fix:[/dim] {event.data.get('fix')}")
        if event.type == "step_failed":
            cell = event.data.get("cell")
            where = f"notebook cell {shown(cell)}" if cell is not None else "the step"
            self.console.print(f"[red]step {event.step} failed in {where}[/red]: "
                               f"{event.data.get('ename')}: {event.data.get('evalue')}")

    def stop(self) -> None:
        self.live.stop()
        self.console.print()


# --------------------------------------------------------------------------- `scanflow runs` and run errors


def print_runs(entries: list[Any], as_json: bool, console: Any) -> None:
    """`scanflow runs`: the table and --json show the same status (data.store.shown_status)."""
    import json

    import click

    from scanflow_jupyter.data.store import UnreadableRun, shown_status

    if as_json:
        docs = [e.to_dict() if isinstance(e, UnreadableRun) else _run_doc(e, shown_status(e)) for e in entries]
        click.echo(json.dumps(docs, indent=2, default=str))
        return
    from pathlib import Path

    from rich.markup import escape
    from rich.table import Table

    table = Table("run id", "app", "status", "steps", "notebook")
    hints: list[str] = []
    for e in entries:
        if isinstance(e, UnreadableRun):
            table.add_row(e.run_id, "-", "[red]unreadable[/red]", "-", "-")
            hints.append(f"[red]unreadable[/red] {escape(e.message)}\n  [dim]fix:[/dim] {escape(e.fix)}")
            continue
        counts: dict[str, int] = {}
        for step in e.steps.values():
            counts[step.status] = counts.get(step.status, 0) + 1
        status = shown_status(e)
        table.add_row(e.run_id, escape(e.app), status, ", ".join(f"{n} {k}" for k, n in counts.items()),
                      escape(Path(e.notebook).name))
        if status == "interrupted" and not any("interrupted" in h for h in hints):
            hints.append("[dim]interrupted runs: their runner died; re-run what did not succeed with "
                         "`scanflow run NOTEBOOK --resume RUN_ID`[/dim]")
    console.print(table)
    for hint in hints:
        console.print(hint)


def _run_doc(state: Any, status: str) -> dict[str, Any]:
    """A run for `scanflow runs --json`: run.json with the shown status and 1-based error cells."""
    from scanflow_jupyter.cell_numbers import error_doc

    doc = {**state.to_dict(), "status": status}
    doc["steps"] = {name: {**step, "error": error_doc(step.get("error"))} for name, step in (doc.get("steps") or {}).items()}
    return doc


def print_unreadable_run(exc: Any, as_json: bool) -> None:
    """`scanflow run --resume ID` of a run whose run.json is broken: one message, no traceback."""
    import json

    import click

    if as_json:
        message = {"severity": "error", "code": "unreadable-run", "cell": None, "text": str(exc), "fix": exc.fix}
        click.echo(json.dumps({"status": "invalid", "messages": [message]}, indent=2))
    else:
        click.echo(f"error: {exc}\n  fix: {exc.fix}\nnothing was run", err=True)


def load_params_file(path: str) -> dict[str, Any]:
    """`-f/--params-file FILE`: a YAML (or JSON) mapping {parameter: value}; click.BadParameter (exit 2) if not."""
    import click

    from scanflow_jupyter.params import load_params_file as load

    try:
        return load(path)
    except (ValueError, RecursionError) as exc:
        raise click.BadParameter(str(exc)[:500], param_hint="-f/--params-file") from None
