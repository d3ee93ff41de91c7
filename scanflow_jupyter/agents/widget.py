"""The status widget of `%scanflow agents up|ls`: one row per agent, refusals with cell and fix.

Built like the widgets of `scanflow_jupyter.widgets` (text, HTML and a live ipywidgets view
from the same state); the live view has a Refresh button that re-reads every agent's `/status`.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from typing import Any

from scanflow_jupyter.widgets import _LiveView, format_duration

__all__ = ["AgentsWidget"]

STATE_COLOURS = {"running": "#43a047", "starting": "#1e88e5", "restarting": "#fb8c00", "failed": "#e53935",
                 "refused": "#e53935", "stopped": "#9e9e9e"}


def _chip(state: str) -> str:
    colour = STATE_COLOURS.get(state, "#9e9e9e")
    return (f'<span style="background:{colour};color:#fff;border-radius:8px;padding:1px 8px;'
            f'font-size:85%;font-family:sans-serif">{html.escape(state)}</span>')


def _sensors_text(row: Any) -> str:
    return ", ".join(f"{s['name']} ({s.get('schedule') or '?'})" for s in row.sensors) or "-"


class AgentsWidget(_LiveView):
    """Agents of one notebook (after `up`) or of the whole project (`ls`)."""

    def __init__(self, rows: list[Any], *, title: str = "agents", refused: list[dict[str, Any]] | None = None,
                 warnings: list[dict[str, Any]] | None = None,
                 reload: Callable[[], list[Any]] | None = None) -> None:
        self.rows = list(rows)
        self.title = title
        self.refused = list(refused or [])
        self.warnings = list(warnings or [])
        self.reload = reload

    def refresh_rows(self) -> None:
        if self.reload is not None:
            self.rows = list(self.reload())
        self.refresh()

    # -- renderings

    def text(self) -> str:
        lines = [self.title]
        width = max((len(r.name) for r in self.rows), default=0)
        for r in self.rows:
            bits = [f"  {r.name:<{width}}  {r.state:<10}"]
            if r.port:
                bits.append(f"port {r.port}")
            if r.pid:
                bits.append(f"pid {r.pid}")
            if r.uptime_s is not None:
                bits.append(f"up {format_duration(r.uptime_s)}")
            if r.restarts:
                bits.append(f"{r.restarts} restart(s)")
            if r.sensors:
                bits.append("sensors " + _sensors_text(r))
            if r.last_value:
                bits.append("last value " + r.last_value)
            if r.last_error:
                bits.append("last error " + r.last_error)
            lines.append(" | ".join(bits))
        for ref in self.refused:
            where = f"cell {ref['cell'] + 1}" if ref.get("cell") is not None else "notebook"
            lines.append(f"  refused {ref['agent']} ({where}): {ref['text']} Fix: {ref['fix']}")
        for w in self.warnings:
            lines.append(f"  {w.get('severity', 'warning')}: {w.get('text')} Fix: {w.get('fix')}")
        if not self.rows and not self.refused:
            lines.append("  no agents (start them with %scanflow agents up)")
        return "\n".join(lines)

    def _table_html(self) -> str:
        if not self.rows:
            return ""
        td = '<td style="padding:1px 10px 1px 0;text-align:left;vertical-align:top">'
        head = "".join(f'<th style="text-align:left;padding-right:10px">{h}</th>' for h in
                       ("agent", "state", "port", "pid", "uptime", "sensors", "last value", "last error"))
        body = []
        for r in self.rows:
            error = r.last_error or ((r.message or {}).get("text") if r.state in ("failed", "refused") else "")
            cells = [f"<b>{html.escape(r.name)}</b>", _chip(r.state) + (f" ×{r.restarts}" if r.restarts else ""),
                     html.escape(str(r.port or "")), html.escape(str(r.pid or "")),
                     html.escape(format_duration(r.uptime_s)), html.escape(_sensors_text(r)),
                     f"<code>{html.escape(r.last_value or '')}</code>",
                     f'<span style="color:#e53935">{html.escape(error or "")}</span>']
            body.append("<tr>" + "".join(td + c + "</td>" for c in cells) + "</tr>")
        return ('<table style="font-family:sans-serif;font-size:90%"><tr>' + head + "</tr>"
                + "".join(body) + "</table>")

    def _notes_html(self) -> str:
        items = []
        for ref in self.refused:
            where = f"cell {ref['cell'] + 1}" if ref.get("cell") is not None else "notebook"
            items.append(f"{_chip('refused')} <b>{html.escape(ref['agent'])}</b> ({where}): "
                         f"{html.escape(ref['text'])}<br><span style='color:#757575'>fix: "
                         f"{html.escape(ref['fix'])}</span>")
        for w in self.warnings:
            items.append(f"<span style='color:#fb8c00'>{html.escape(str(w.get('severity', 'warning')))}</span> "
                         f"{html.escape(str(w.get('text')))} <span style='color:#757575'>fix: "
                         f"{html.escape(str(w.get('fix')))}</span>")
        return "".join(f'<div style="font-family:sans-serif;font-size:90%">{i}</div>' for i in items)

    def html(self) -> str:
        empty = "" if self.rows or self.refused else '<div style="color:#757575">no agents</div>'
        return (f'<div style="font-family:sans-serif"><b>{html.escape(self.title)}</b></div>'
                + self._table_html() + self._notes_html() + empty)

    def _build(self) -> Any:
        import ipywidgets as w

        self._body = w.HTML()
        button = w.Button(description="Refresh", icon="refresh", layout=w.Layout(width="auto"))
        button.on_click(lambda _b: self.refresh_rows())
        return w.VBox([self._body, button] if self.reload is not None else [self._body])

    def _sync(self) -> None:
        self._body.value = self.html()

    def to_json(self) -> str:
        return json.dumps({"rows": [r.to_dict() for r in self.rows], "refused": self.refused}, default=str)
