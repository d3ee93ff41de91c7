"""Widgets shown by the Scanflow magics: one executor cell's run, and a pipeline run's progress.

Each widget keeps its state in plain attributes and renders it three ways from that state:
`text()` (terminals, tests, and the `text/plain` saved in the notebook), an HTML fragment
(`text/html`, for static viewers such as nbconvert or GitHub) and a live ipywidgets view.
ipywidgets is imported only when the live view is first built, so loading the extension stays
cheap and shells without a frontend never import it.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from typing import Any

STATUS_COLORS = {
    "queued": "#9e9e9e",
    "running": "#1e88e5",
    "succeeded": "#43a047",
    "failed": "#e53935",
    "cached": "#8e24aa",
    "skipped": "#d6d6d6",
    "retrying": "#fb8c00",
    "killed": "#6d4c41",
    "pending": "#9e9e9e",
}
_DARK_TEXT = {"skipped"}  # light chips need dark text

_STEP_STATUS = {
    "step_queued": "queued",
    "step_started": "running",
    "step_cell": "running",
    "step_succeeded": "succeeded",
    "step_failed": "failed",
    "step_cached": "cached",
    "step_skipped": "skipped",
    "step_retrying": "retrying",
    "step_killed": "killed",
}


def format_duration(seconds: float | None) -> str:
    """`0.0001` -> `<1 ms`, `0.25` -> `250 ms`, `3.21` -> `3.2 s`, `125` -> `2 min 05 s`, `None` -> ``."""
    if seconds is None:
        return ""
    if seconds < 0.001:
        return "<1 ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def describe_value(value: Any) -> str:
    """A short type/shape description: `ndarray (100, 3) float64`, `DataFrame 100×4`, `list[5]`.

    Duck-typed, so numpy, pandas or torch are never imported here.
    """
    kind = type(value).__name__
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, (int, float)):
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        return f"{kind} {shown if len(shown) <= 20 else shown[:19] + '…'}"
    if isinstance(value, (str, bytes, list, tuple, set, frozenset, dict)):
        return f"{kind}[{len(value)}]"
    try:
        shape = getattr(value, "shape", None)
        if isinstance(shape, tuple) and all(isinstance(n, int) for n in shape):
            dtype = getattr(value, "dtype", None)
            if dtype is not None and not callable(dtype):
                return f"{kind} {tuple(shape)} {dtype}"
            if len(shape) == 2:
                return f"{kind} {shape[0]}×{shape[1]}"
            return f"{kind} {tuple(shape)}"
    except Exception:  # noqa: BLE001 - an odd object must never break the summary
        pass
    return kind


def status_chip_html(status: str) -> str:
    """A small rounded label in the status's colour."""
    colour = STATUS_COLORS.get(status, "#9e9e9e")
    text = "#212121" if status in _DARK_TEXT else "#ffffff"
    return (
        f'<span style="background:{colour};color:{text};border-radius:8px;padding:1px 8px;'
        f'font-size:85%;font-family:sans-serif">{html.escape(status)}</span>'
    )


class _LiveView:
    """Display plumbing shared by the widgets: a lazily built view and a display handle."""

    _view: Any = None
    _handle: Any = None

    def text(self) -> str:
        raise NotImplementedError

    def html(self) -> str:
        raise NotImplementedError

    def _build(self) -> Any:
        raise NotImplementedError

    def _sync(self) -> None:
        raise NotImplementedError

    @property
    def view(self) -> Any:
        """The ipywidgets object (built, and ipywidgets imported, on first access)."""
        if self._view is None:
            self._view = self._build()
            self._sync()
        return self._view

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        try:
            bundle = dict(self.view._repr_mimebundle_() or {})
        except ImportError:  # no ipywidgets: the text and HTML renderings still show
            bundle = {}
        bundle["text/plain"] = self.text()
        bundle["text/html"] = self.html()
        return bundle

    def show(self) -> None:
        """Display in the current output area, keeping a handle for `refresh(republish=True)`."""
        from IPython.display import display

        self._handle = display(self, display_id=True)

    def refresh(self, republish: bool = False) -> None:
        """Push the state to the live view; `republish` also rewrites the saved text/html."""
        if self._view is not None:
            self._sync()
        if republish and self._handle is not None:
            self._handle.update(self)


class ExecutorWidget(_LiveView):
    """Summary of one `%%executor` cell run in the live kernel."""

    def __init__(
        self,
        name: str,
        *,
        requires: list[str] | tuple[str, ...] = (),
        inputs: list[str] | tuple[str, ...] = (),
        outputs: list[str] | tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.requires = list(requires)
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.status = "queued"
        self.duration_s: float | None = None
        self.finished_at: float | None = None
        self.produced: dict[str, str] = {}
        self.missing: list[str] = []
        self.error: str | None = None

    def start(self) -> None:
        self.status = "running"
        self.refresh()

    def finish(
        self,
        *,
        ok: bool,
        duration_s: float,
        produced: dict[str, str],
        missing: list[str] | tuple[str, ...] = (),
        error: str | None = None,
    ) -> None:
        self.status = "succeeded" if ok else "failed"
        self.duration_s = duration_s
        self.finished_at = time.time()
        self.produced = dict(produced)
        self.missing = list(missing)
        self.error = error
        self.refresh()

    def text(self) -> str:
        head = f"executor {self.name}: {self.status}"
        if self.duration_s is not None:
            head += f" in {format_duration(self.duration_s)}"
        parts = [head]
        if self.requires:
            parts.append("requires " + ", ".join(self.requires))
        if self.inputs:
            parts.append("inputs " + ", ".join(self.inputs))
        if self.produced:
            parts.append("outputs " + ", ".join(f"{k}: {v}" for k, v in self.produced.items()))
        elif self.outputs and self.status in ("queued", "running"):
            parts.append("outputs " + ", ".join(self.outputs))
        if self.missing:
            parts.append("missing outputs " + ", ".join(self.missing))
        if self.error:
            parts.append(self.error)
        return " | ".join(parts)

    def _title_html(self) -> str:
        bits = [f"<b>{html.escape(self.name)}</b>"]
        if self.duration_s is not None:
            bits.append(html.escape(format_duration(self.duration_s)))
        if self.finished_at is not None:
            bits.append("last run " + time.strftime("%H:%M:%S", time.localtime(self.finished_at)))
        return '<span style="font-family:sans-serif">' + " · ".join(bits) + "</span>"

    def _details_html(self) -> str:
        def row(label: str, value: str) -> str:
            return (
                f'<tr><td style="color:#757575;padding-right:12px;vertical-align:top">{label}</td>'
                f"<td>{value}</td></tr>"
            )

        rows = []
        if self.requires:
            rows.append(row("requires", html.escape(", ".join(self.requires))))
        if self.inputs:
            rows.append(row("inputs", html.escape(", ".join(self.inputs))))
        outs = [f"<code>{html.escape(k)}</code> {html.escape(v)}" for k, v in self.produced.items()]
        outs += [
            f'<code>{html.escape(k)}</code> <span style="color:#e53935">missing</span>'
            for k in self.missing
        ]
        if not outs and self.status in ("queued", "running"):
            outs = [f"<code>{html.escape(k)}</code>" for k in self.outputs]
        if outs:
            rows.append(row("outputs", "<br>".join(outs)))
        if self.error:
            rows.append(
                row("error", f'<span style="color:#e53935">{html.escape(self.error)}</span>')
            )
        if not rows:
            return ""
        return '<table style="font-family:sans-serif;font-size:90%">' + "".join(rows) + "</table>"

    def html(self) -> str:
        return (
            f"<div>{status_chip_html(self.status)} executor {self._title_html()}</div>"
            + self._details_html()
        )

    def _build(self) -> Any:
        import ipywidgets as w

        self._chip, self._title, self._details = w.HTML(), w.HTML(), w.HTML()
        return w.VBox([w.HBox([self._chip, self._title]), self._details])

    def _sync(self) -> None:
        self._chip.value = status_chip_html(self.status)
        self._title.value = self._title_html()
        self._details.value = self._details_html()


@dataclass
class StepRow:
    """One step's line in a `RunProgressWidget`."""

    name: str
    status: str = "queued"
    attempt: int | None = None
    started: float | None = None
    duration_s: float | None = None
    cell: int | None = None  # notebook cell being executed
    log: str = ""  # last line the step printed
    note: str = ""  # why it failed / was skipped; wins over cell and log

    @property
    def detail(self) -> str:
        if self.note:
            return self.note
        return " · ".join(
            b for b in (f"cell {self.cell + 1}" if self.cell is not None else "", self.log) if b
        )


class RunProgressWidget(_LiveView):
    """Live progress of a pipeline run, fed with runner events (`handle`) and the final result."""

    def __init__(self, notebook: str = "") -> None:
        self.notebook = notebook
        self.run_id: str | None = None
        self.status = "queued"
        self.mlflow_run_id: str | None = None
        self.steps: dict[str, StepRow] = {}

    def _row(self, name: str) -> StepRow:
        if name not in self.steps:
            self.steps[name] = StepRow(name)
        return self.steps[name]

    def handle(self, event: Any) -> str | None:
        """Apply one runner event; return a plain-text line for it (None if not worth printing)."""
        line = self._apply(event)
        self.refresh()
        return line

    def _apply(self, event: Any) -> str | None:
        kind = getattr(event, "type", "")
        data = getattr(event, "data", None) or {}
        at = getattr(event, "time", None)
        self.run_id = getattr(event, "run_id", None) or self.run_id
        if kind == "run_started":
            self.status = "running"
            return f"run {self.run_id} started"
        if kind == "run_finished":
            self.status = str(data.get("status") or self.status)
            self.mlflow_run_id = data.get("mlflow_run_id") or self.mlflow_run_id
            return None
        step = getattr(event, "step", None)
        if not step:
            return None
        row = self._row(step)
        if kind == "step_log":
            lines = [ln for ln in str(data.get("text", "")).splitlines() if ln.strip()]
            row.log = _shorten(lines[-1].strip(), 80) if lines else row.log
            return None
        if kind not in _STEP_STATUS:
            return None
        row.status = _STEP_STATUS[kind]
        if getattr(event, "attempt", None) is not None:
            row.attempt = event.attempt
        if kind == "step_started":
            row.started, row.duration_s, row.cell, row.log, row.note = at, None, None, "", ""
            return f"{step}: started" + (f" (attempt {row.attempt})" if row.attempt else "")
        if kind == "step_cell":
            row.cell = data.get("cell", row.cell)
            return None
        if kind == "step_retrying":
            row.note = _failure_note(data)
            why = f" ({row.note})" if row.note else ""
            return f"{step}: retrying after attempt {row.attempt or '?'}{why}"
        if kind == "step_queued":
            return None
        # a final state: succeeded, failed, cached, skipped or killed
        duration = data.get("duration_s")
        if duration is None and row.started is not None and at is not None:
            duration = at - row.started
        row.duration_s = duration
        row.cell, row.log = None, ""
        row.note = {
            "step_failed": _failure_note(data),
            "step_skipped": str(data.get("reason") or ""),
            "step_cached": f"reused from run {data['cached_from']}"
            if data.get("cached_from")
            else "",
        }.get(kind, "")
        line = f"{step}: {row.status}"
        if duration is not None and kind in ("step_succeeded", "step_failed", "step_killed"):
            line += f" in {format_duration(duration)}"
        return line + (f" ({row.note})" if row.note else "")

    def finish(self, result: Any) -> None:
        """Take the final word from the runner's RunResult."""
        self.run_id = getattr(result, "run_id", None) or self.run_id
        self.status = str(getattr(result, "status", None) or self.status)
        self.mlflow_run_id = getattr(result, "mlflow_run_id", None)
        for name, step in (getattr(result, "steps", None) or {}).items():
            row = self._row(name)
            row.status = str(getattr(step, "status", None) or row.status)
            row.attempt = getattr(step, "attempts", None) or row.attempt
            duration = getattr(step, "duration_s", None)
            row.duration_s = duration if duration is not None else row.duration_s
        self.refresh()

    def text(self) -> str:
        head = f"run {self.run_id or '(starting)'}: {self.status}"
        if self.mlflow_run_id:
            head += f" | MLflow run {self.mlflow_run_id}"
        lines = [head]
        width = max((len(n) for n in self.steps), default=0)
        for row in self.steps.values():
            line = f"  {row.name:<{width}}  {row.status:<9}"
            if row.attempt:
                line += f"  attempt {row.attempt}"
            if row.duration_s is not None:
                line += f"  {format_duration(row.duration_s)}"
            if row.detail:
                line += f"  {row.detail}"
            lines.append(line.rstrip())
        return "\n".join(lines)

    def _header_html(self) -> str:
        bits = [f"run <code>{html.escape(self.run_id or 'starting')}</code>"]
        if self.notebook:
            bits.append(html.escape(self.notebook))
        if self.mlflow_run_id:
            bits.append(f"MLflow run <code>{html.escape(self.mlflow_run_id)}</code>")
        return (
            f'<div style="font-family:sans-serif">{status_chip_html(self.status)} '
            + " · ".join(bits)
            + "</div>"
        )

    def _rows_html(self) -> str:
        if not self.steps:
            return '<div style="color:#757575;font-family:sans-serif">waiting for steps…</div>'
        td = '<td style="padding:1px 10px 1px 0;text-align:left">'
        rows = [
            f"<tr>{td}{status_chip_html(r.status)}</td>{td}<b>{html.escape(r.name)}</b></td>"
            f"{td}{f'attempt {r.attempt}' if r.attempt else ''}</td>"
            f"{td}{html.escape(format_duration(r.duration_s))}</td>"
            f'<td style="color:#757575">{html.escape(r.detail)}</td></tr>'
            for r in self.steps.values()
        ]
        return '<table style="font-family:sans-serif;font-size:90%">' + "".join(rows) + "</table>"

    def html(self) -> str:
        return self._header_html() + self._rows_html()

    def _build(self) -> Any:
        import ipywidgets as w

        self._header, self._rows = w.HTML(), w.HTML()
        return w.VBox([self._header, self._rows])

    def _sync(self) -> None:
        self._header.value = self._header_html()
        self._rows.value = self._rows_html()


def _failure_note(data: dict[str, Any]) -> str:
    where = f"cell {data['cell'] + 1}: " if data.get("cell") is not None else ""
    what = ": ".join(str(data[k]) for k in ("ename", "evalue") if data.get(k))
    return _shorten(where + what, 120) if what else where.rstrip(": ")


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
