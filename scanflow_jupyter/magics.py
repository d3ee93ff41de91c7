"""IPython magics: notebook cells declare pipeline steps and still run interactively.

`%load_ext scanflow_jupyter` registers `%scanflow_app`, `%%setup`, `%%params`, `%%executor`,
`%%service`, `%%agent` and `%scanflow run|inspect|agents`. Every magic line is parsed with
`notebook.magic_args` (the grammar the kernel-free parser uses) and every cell body runs with
`shell.run_cell`, so tracebacks, display and `%` lines inside it behave as in any cell. What
the kernel learns (app name, parameters, each executor's last run, the last pipeline run) is
kept on `ScanflowMagics.state` (see `kernel_state()`), never in the user's namespace.

Loading the extension imports no heavy library: the runner, ipywidgets and friends are
imported inside the functions that need them.
"""

from __future__ import annotations

import ast
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

from scanflow_jupyter.cli import grammar
from scanflow_jupyter.cli.grammar import SHARED_COMMANDS
from scanflow_jupyter.model import (
    Agent,
    Application,
    Executor,
    Message,
    Pipeline,
    Service,
    Step,
)
from scanflow_jupyter.notebook.magic_args import (
    PARSERS,
    MagicArgError,
    _Parser,
    _positive_int,
    parse_magic_line,
)
from scanflow_jupyter.notebook.parser import parse_notebook_dict, strip_magic_lines
from scanflow_jupyter.params import parse_param_value  # noqa: F401 - re-exported
from scanflow_jupyter.params import parse_params as _parse_params
from scanflow_jupyter.widgets import ExecutorWidget, RunProgressWidget, describe_value

SCANFLOW_ACTIONS = ("run", "inspect", "agents")
AGENTS_ACTIONS = ("up", "down", "ls")

# Findings that need the whole notebook; a single cell checked in the kernel cannot judge them
# (or the check below does it better, with the live namespace).
_WHOLE_NOTEBOOK_CODES = {
    "input-without-producer",
    "input-produced-below",
    "continuation-options",
    "exploration-feeds-step",
    "unknown-dependency",
    "requires-non-executor",
    "cycle",
    "undefined-name",
    "no-executors",
    "output-shadows-parameter",
    "output-not-assigned",
    "no-kernelspec",
    "not-python",
    "bad-app-name",
    "bad-team-name",
    "syntax-error",  # run_cell shows the SyntaxError itself
}


def _build_scanflow_parser() -> _Parser:
    """Grammar of `%scanflow ACTION [options]` (to move into notebook.magic_args with the CLI)."""
    p = _Parser(prog="scanflow", add_help=False)
    p.add_argument("action", choices=SCANFLOW_ACTIONS)
    p.add_argument("subaction", nargs="?", default=None, metavar="up|down|ls")
    p.add_argument("--notebook", default=None, metavar="PATH")
    p.add_argument("-p", "--param", dest="params", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--only", nargs="+", action="extend", default=[], metavar="STEP")
    p.add_argument("--resume", default=None, metavar="RUN_ID")
    p.add_argument(
        "--max-parallel", dest="max_parallel", type=_positive_int, default=None, metavar="N"
    )
    p.add_argument("--no-cache", dest="no_cache", action="store_true")
    p.add_argument("--backend", default="local")
    return p


PARSERS.setdefault("scanflow", _build_scanflow_parser())


class CellFailed(Exception):
    """A Scanflow cell's code raised. Its traceback is already shown, so render one line only.

    Raising it (instead of returning quietly) marks the cell as failed, so "Run All", nbclient
    and papermill stop at a broken step just as they would for a plain cell.
    """

    def _render_traceback_(self) -> list[str]:
        return f"{type(self).__name__}: {self}".splitlines()


class RunFailed(CellFailed):
    """`%scanflow run` did not succeed (invalid notebook or a failed step)."""


@dataclass
class ExecutorRun:
    """The last interactive run of one `%%executor` cell in this kernel."""

    executor: Executor
    status: str
    duration_s: float
    finished_at: float
    outputs: dict[str, str]
    missing: list[str]


@dataclass
class KernelState:
    """What the magics learned in this kernel (kept off the user's namespace)."""

    app_name: str | None = None
    team: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    executors: dict[str, ExecutorRun] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)
    agents: dict[str, Agent] = field(default_factory=dict)
    last_run: Any = None
    agents_up: Any = None  # the last `%scanflow agents up` result


def parse_params(items: list[str]) -> dict[str, Any]:
    """`["lr=0.1", "name=x"]` -> `{"lr": 0.1, "name": "x"}`; UsageError on a malformed item."""
    try:
        return _parse_params(items)
    except ValueError as exc:
        raise UsageError(f"%scanflow: {exc}") from exc


def find_notebook(explicit: str | None = None, ipython: Any = None) -> Path | None:
    """The notebook this kernel belongs to: `explicit`, else what the frontend tells the kernel.

    JupyterLab / Notebook 7 start kernels with `JPY_SESSION_NAME` (ipykernel copies it to
    `__session__`); VS Code sets `__vsc_ipynb_file__`. A relative session path is resolved
    against the kernel's working directory and its parents (the server root is one of them).
    """
    if explicit:
        return Path(explicit).expanduser().resolve()
    user_ns = getattr(ipython, "user_ns", None) or {}
    candidates = (
        os.environ.get("JPY_SESSION_NAME"),
        user_ns.get("__session__"),
        user_ns.get("__vsc_ipynb_file__"),
    )
    cwd = Path.cwd()
    for raw in candidates:
        if not raw or not isinstance(raw, str):
            continue
        path = Path(raw).expanduser()
        bases = [Path()] if path.is_absolute() else [cwd, *cwd.parents]
        for base in bases:
            if (base / path).is_file():
                return (base / path).resolve()
        if not path.is_absolute() and (cwd / path.name).is_file():
            return (cwd / path.name).resolve()
    return None


def format_inspection(app: Application, messages: list[Message]) -> str:
    """Plain-text report of a parsed notebook: executors in run order, services, agents, findings."""
    lines = [f"application {app.name} (team {app.team}): {app.notebook}"]
    if app.parameters:
        lines.append("parameters: " + ", ".join(f"{k}={v!r}" for k, v in app.parameters.items()))
    if app.executors:
        try:
            steps = list(Pipeline.from_application(app).steps.values())
            lines.append("executors, in run order:")
        except ValueError:
            steps = [Step(ex.name, ex, app.dependencies(ex)) for ex in app.executors]
            lines.append("executors (declaration order; fix the dependency errors below):")
        for i, step in enumerate(steps, 1):
            ex = step.executor
            bits = [f"  {i}. {ex.name} (cell {ex.cell + 1})"]
            if step.depends_on:
                bits.append("after " + ", ".join(step.depends_on))
            if ex.inputs:
                bits.append("inputs " + ", ".join(ex.inputs))
            if ex.outputs:
                bits.append("outputs " + ", ".join(ex.outputs))
            lines.append(" | ".join(bits))
    for svc in app.services:
        lines.append(
            f"service {svc.name} (cell {svc.cell + 1})" + (f": {svc.model}" if svc.model else "")
        )
    for agent in app.agents:
        lines.append(
            f"agent {agent.name} (cell {agent.cell + 1})"
            + (f": template {agent.template}" if agent.template else "")
        )
    errors = sum(m.severity == "error" for m in messages)
    warnings = len(messages) - errors
    lines.append(f"{errors} error(s), {warnings} warning(s):" if messages else "no problems found.")
    lines += [f"  {m}" for m in messages]
    return "\n".join(lines)


def kernel_state(ipython: Any = None) -> KernelState | None:
    """The Scanflow state of `ipython` (default: the running shell); None if not loaded."""
    if ipython is None:
        from IPython import get_ipython

        ipython = get_ipython()
    if ipython is None:
        return None
    magics = ipython.magics_manager.registry.get(ScanflowMagics.__name__)
    return getattr(magics, "state", None)


def register(ipython: Any) -> ScanflowMagics:
    """Register the Scanflow magics on `ipython` (called by `%load_ext scanflow_jupyter`)."""
    magics = ScanflowMagics(ipython)
    ipython.register_magics(magics)
    if getattr(ipython, "kernel", None) is not None:  # a Jupyter kernel: MLflow -> the project's store
        from scanflow_jupyter import live_tracking
        from scanflow_jupyter.notebook.parser import default_app_name

        def app_name() -> str | None:
            notebook = find_notebook(None, ipython)
            return magics.state.app_name or (default_app_name(str(notebook)) if notebook else None)

        live_tracking.activate(app_name)
    return magics


def _args(magic: str, line: str) -> Any:
    """Parse a magic line with the shared grammar; a bad line becomes a one-line UsageError."""
    try:
        return parse_magic_line(magic, line).args
    except MagicArgError as err:
        raise UsageError(f"{err.text} Fix: {err.fix}") from None


def _pop_notebook(argv: list[str]) -> tuple[str | None, list[str]]:
    """Take the magic-only `--notebook PATH` (or `--notebook=PATH`) out of ARGV."""
    rest: list[str] = []
    explicit = None
    words = iter(argv)
    for word in words:
        if word == "--notebook":
            explicit = next(words, None)
            if explicit is None:
                raise UsageError("%scanflow: --notebook needs a value. Fix: write --notebook path/to/notebook.ipynb")
        elif word.startswith("--notebook="):
            explicit = word.split("=", 1)[1]
        else:
            rest.append(word)
    return explicit, rest


def _one_cell_app(magic: str, line: str, cell: str) -> Application:
    """Parse this cell alone with the notebook parser (same model, same messages)."""
    nb = {
        "metadata": {"kernelspec": {"name": "python3"}, "language_info": {"name": "python"}},
        "cells": [{"cell_type": "code", "metadata": {}, "source": f"%%{magic} {line}\n{cell}"}],
    }
    return parse_notebook_dict(nb, "notebook.ipynb")


def _cell_findings(app: Application) -> list[Message]:
    from scanflow_jupyter.notebook.validate import validate

    return [m for m in validate(app) if m.code not in _WHOLE_NOTEBOOK_CODES]


def _warn(text: str) -> None:
    print(f"scanflow: {text}", file=sys.stderr)


def _print_findings(messages: list[Message]) -> None:
    for m in messages:
        _warn(f"{m.severity}: {m.text} Fix: {m.fix}")


def _functions(source: str) -> list[tuple[str, list[str]]]:
    """Top-level functions of `source` with their decorator names (`@sensor(...)` -> sensor)."""
    try:
        tree = ast.parse(strip_magic_lines(source))
    except SyntaxError:
        return []
    found = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names = []
            for deco in node.decorator_list:
                target = deco.func if isinstance(deco, ast.Call) else deco
                if isinstance(target, ast.Attribute):
                    names.append(target.attr)
                elif isinstance(target, ast.Name):
                    names.append(target.id)
            found.append((node.name, names))
    return found


def _error_text(result: Any) -> str:
    err = result.error_before_exec or result.error_in_exec
    return f"{type(err).__name__}: {err}" if err is not None else "the cell failed"


def _agent_findings(agent: Agent) -> list[Message]:
    """Static checks of an agent cell's decorators (the ones `scanflow agents up` refuses on)."""
    from scanflow_jupyter.agents.loader import check_agent

    return [m for m in check_agent(agent) if m.code != "syntax-error"]


@magics_class
class ScanflowMagics(Magics):
    """The Scanflow magics; `state` holds what this kernel has learned."""

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self.state = KernelState()

    # -- helpers ---------------------------------------------------------------------------

    def _has_frontend(self) -> bool:
        """True inside a Jupyter kernel (widgets can be shown); False in a plain IPython shell."""
        return getattr(self.shell, "kernel", None) is not None

    def _run_body(self, cell: str, what: str) -> Any:
        """Run `cell` in the user namespace like a normal cell; CellFailed if it raised."""
        result = self.shell.run_cell(cell)
        if not result.success:
            raise CellFailed(f"{what} failed: {_error_text(result)} (traceback above)")
        return result

    # -- declarations ----------------------------------------------------------------------

    @line_magic("scanflow_app")
    def scanflow_app(self, line: str) -> None:
        """%scanflow_app NAME [--team TEAM]: name the application."""
        args = _args("scanflow_app", line)
        self.state.app_name = args.name
        self.state.team = args.team
        from scanflow_jupyter import live_tracking

        live_tracking.app_renamed()  # later MLflow runs of this kernel go to the new experiment

    @cell_magic("setup")
    def setup_cell(self, line: str, cell: str) -> None:
        """%%setup: code every step needs (imports, helpers); runs here as a normal cell."""
        _args("setup", line)
        self._run_body(cell, "%%setup cell")

    @cell_magic("params")
    def params_cell(self, line: str, cell: str) -> None:
        """%%params: pipeline parameters, literal `name = value` lines only."""
        _args("params", line)
        app = _one_cell_app("params", "", cell)
        errors = [m for m in app.messages if m.severity == "error"]
        if errors:
            details = "\n".join(f"  {m.text} Fix: {m.fix}" for m in errors)
            raise UsageError(
                f"%%params accepts only literal assignments; nothing was run.\n{details}"
            )
        self._run_body(cell, "%%params cell")
        self.state.parameters.update(app.parameters)

    @cell_magic("executor")
    def executor_cell(self, line: str, cell: str) -> None:
        """%%executor NAME [options]: one pipeline step, run here interactively."""
        args = _args("executor", line)
        app = _one_cell_app("executor", line, cell)
        _print_findings(_cell_findings(app))
        spec = app.executors[0]
        earlier = self.state.executors.get(spec.name)
        if earlier is not None and args == _args("executor", repr(spec.name)):
            spec = earlier.executor  # `%%executor NAME` alone continues step NAME: its first cell's options
        ns = self.shell.user_ns
        producers = {v: n for n, run in self.state.executors.items() for v in run.executor.outputs}
        for var in (v for v in args.inputs if v not in ns):
            hint = (
                f"run the '{producers[var]}' executor cell first"
                if var in producers
                else f"run the producer cell first (the %%executor with --outputs {var})"
            )
            _warn(f"warning: executor '{spec.name}': input '{var}' is not defined yet; {hint}.")

        widget = ExecutorWidget(
            spec.name, requires=spec.requires, inputs=spec.inputs, outputs=spec.outputs
        )
        live = self._has_frontend()
        if live:
            widget.start()
            widget.show()
        started = time.perf_counter()
        result = self.shell.run_cell(cell)
        duration = time.perf_counter() - started

        ok = bool(result.success)
        produced = {v: describe_value(ns[v]) for v in spec.outputs if v in ns}
        missing = [v for v in spec.outputs if v not in ns]
        error = None if ok else _error_text(result)
        widget.finish(ok=ok, duration_s=duration, produced=produced, missing=missing, error=error)
        if live:
            widget.refresh(republish=True)
        else:
            print(widget.text())
        if ok and missing:
            _warn(
                f"warning: executor '{spec.name}' declares --outputs {' '.join(missing)}, but the "
                "cell did not define it. Fix: assign it in the cell or remove it from --outputs."
            )
        self.state.executors[spec.name] = ExecutorRun(
            spec, widget.status, duration, time.time(), produced, missing
        )
        if not ok:
            raise CellFailed(f"executor '{spec.name}' failed: {error} (traceback above)")

    @cell_magic("service")
    def service_cell(self, line: str, cell: str) -> None:
        """%%service NAME [--model URI] [--replicas N]: define `predict` here; deployed elsewhere."""
        _args("service", line)
        app = _one_cell_app("service", line, cell)
        _print_findings(_cell_findings(app))
        svc = app.services[0]
        self._run_body(cell, f"service '{svc.name}'")
        self.state.services[svc.name] = svc
        bits = [f"service {svc.name}: defined"]
        if svc.model:
            bits.append(f"model {svc.model}")
        fns = [name for name, _ in _functions(cell)]
        if fns:
            bits.append("functions " + ", ".join(fns))
        bits.append(f"{svc.replicas} replica{'s' if svc.replicas != 1 else ''}")
        bits.append("not served from this kernel: `scanflow deploy` starts it")
        print(" | ".join(bits))

    @cell_magic("agent")
    def agent_cell(self, line: str, cell: str) -> None:
        """%%agent NAME [--template T]: sensors/actuators defined here; deployed elsewhere."""
        _args("agent", line)
        app = _one_cell_app("agent", line, cell)
        _print_findings(_cell_findings(app))
        agent = app.agents[0]
        self._run_body(cell, f"agent '{agent.name}'")
        self.state.agents[agent.name] = agent
        head = f"agent {agent.name}: defined"
        if agent.template:
            head += f" (template {agent.template})"
        groups: dict[str, list[str]] = {}
        for name, decorators in _functions(cell):
            groups.setdefault(decorators[0] + "s" if decorators else "functions", []).append(name)
        bits = [head] + [f"{kind} {', '.join(names)}" for kind, names in groups.items()]
        _print_findings(_agent_findings(agent))
        bits.append("not started from this kernel: `%scanflow agents up` (or `scanflow agents up`) starts it")
        print(" | ".join(bits))

    # -- actions ---------------------------------------------------------------------------

    @line_magic("scanflow")
    def scanflow(self, line: str) -> None:
        """%scanflow run|build|deploy|status|inspect|debug|agents up|down|ls [--notebook PATH] [options]

        run, build, deploy and status take exactly the CLI's options (parsed by the same click commands,
        cli/grammar.py) for this notebook; debug is kernel-only; inspect and agents use notebook.magic_args.
        """
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"%scanflow: {exc}. Fix: close the quote.") from None
        action = words[0] if words else ""
        kernel_only = self._kernel_only().get(action)
        if kernel_only is not None:
            kernel_only(line)
            return
        if action in SHARED_COMMANDS:
            self._shared(action, words[1:])
            return
        args = _args("scanflow", line)
        if args.action == "agents":
            if args.subaction not in AGENTS_ACTIONS:
                raise UsageError("%scanflow agents: say what to do. Fix: write %scanflow agents up, "
                                 "%scanflow agents down or %scanflow agents ls.")
            if args.subaction == "ls":
                self._agents_ls()
                return
        elif args.subaction is not None:
            raise UsageError(f"%scanflow {args.action}: unexpected argument '{args.subaction}'. "
                             f"Fix: write %scanflow {args.action} [options].")
        path = find_notebook(args.notebook, self.shell)
        if path is None:
            raise UsageError(
                "%scanflow: cannot tell which notebook this kernel belongs to (no JPY_SESSION_NAME: "
                "the kernel was not started by JupyterLab or Jupyter Notebook). "
                f"Fix: name it, e.g. %scanflow {args.action} --notebook path/to/notebook.ipynb"
            )
        if args.action == "inspect":
            self._inspect(path)
        elif args.action == "agents":
            self._agents(path, args.subaction)
        else:
            self._run(path, args)

    def _kernel_only(self) -> dict[str, Any]:
        """`%scanflow NAME ...` subcommands with no CLI counterpart: NAME -> handler(line)."""
        return {"debug": self._debug}

    def _shared(self, action: str, argv: list[str]) -> None:
        """`%scanflow run|build|deploy|status [--notebook PATH] ARGS`: `scanflow ACTION NOTEBOOK ARGS`."""
        explicit, rest = _pop_notebook(argv)
        path = find_notebook(explicit, self.shell)
        try:
            parsed = grammar.parse(action, [str(path) if path else "NOTEBOOK", *rest])
        except grammar.GrammarError as exc:
            raise UsageError(f"%scanflow {action}: {exc.message}\n{exc.usage}") from None
        if parsed.helped:
            return
        if path is None:
            raise UsageError(
                "%scanflow: cannot tell which notebook this kernel belongs to (no JPY_SESSION_NAME: "
                "the kernel was not started by JupyterLab or Jupyter Notebook). "
                f"Fix: name it, e.g. %scanflow {action} --notebook path/to/notebook.ipynb"
            )
        if action == "run":
            self._run(path, parsed.params)
        else:
            self._cli(action, path, rest)

    def _cli(self, action: str, path: Path, rest: list[str]) -> None:
        """Run `scanflow ACTION NOTEBOOK REST...` in a child process; its output goes to the cell."""
        import subprocess

        proc = subprocess.run([sys.executable, "-m", "scanflow_jupyter.cli", action, str(path), *rest],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if proc.stdout:
            print(proc.stdout, end="")
        if proc.stderr:
            print(proc.stderr, end="", file=sys.stderr)
        if proc.returncode != 0:
            raise RunFailed(f"scanflow {action} {path.name} exited with code {proc.returncode} (details above)")

    def _debug(self, line: str) -> None:
        from scanflow_jupyter.notebook.debug import DebugError, debug_step

        words = line.split()[1:]
        run_id = None
        if len(words) == 3 and words[1] == "--run":
            run_id = words[2]
        elif len(words) != 1:
            raise UsageError("%scanflow debug: expected a step name. Fix: write %scanflow debug STEP [--run RUN_ID].")
        try:
            debug_step(words[0], run_id, self.shell)
        except DebugError as exc:
            raise UsageError(str(exc)) from None

    def _inspect(self, path: Path) -> None:
        from scanflow_jupyter.notebook.parser import NotebookReadError, parse_notebook
        from scanflow_jupyter.notebook.validate import validate

        try:
            app = parse_notebook(path)
        except NotebookReadError as exc:
            raise UsageError(
                f"%scanflow inspect: {exc.message.text} Fix: {exc.message.fix}"
            ) from None
        print(format_inspection(app, validate(app)))

    def _show_agents(self, widget: Any) -> None:
        if self._has_frontend():
            widget.show()
        else:
            print(widget.text())

    def _agents_ls(self) -> None:
        from scanflow_jupyter.agents.control import ls
        from scanflow_jupyter.agents.widget import AgentsWidget

        self._show_agents(AgentsWidget(ls(), title="agents of this project", reload=ls))

    def _agents(self, path: Path, action: str) -> None:
        from scanflow_jupyter.agents import control
        from scanflow_jupyter.agents.widget import AgentsWidget
        from scanflow_jupyter.notebook.parser import NotebookReadError

        if action == "down":
            result = control.down(path)
            print(f"stopped {len(result.agents)} agent(s): {', '.join(result.agents) or '-'}"
                  if result.notebooks else f"no agents were running for {path.name}")
            return
        try:
            result = control.up(path)
        except NotebookReadError as exc:
            raise UsageError(f"%scanflow agents up: {exc.message.text} Fix: {exc.message.fix}") from None
        except control.NoAgents as exc:
            raise UsageError(f"%scanflow agents up: {exc} Fix: add a cell starting with %%agent NAME.") from None
        except control.auth.AgentTokenError as exc:
            raise UsageError(f"%scanflow agents up: {exc}") from None

        def reload() -> list[Any]:
            return control.ls(notebook=result.notebook)

        widget = AgentsWidget(result.agents, title=f"agents of {result.app}", refused=result.refused,
                              warnings=result.warnings, reload=reload)
        self._show_agents(widget)
        self.state.agents_up = result
        if result.refused or result.failed:
            names = [r["agent"] for r in result.refused] + [a.name for a in result.failed]
            _warn(f"agent(s) {', '.join(names)} did not start (details above); the others run.")

    def _run(self, path: Path, args: dict[str, Any]) -> None:
        """`%scanflow run` in this kernel with the options `scanflow run` parsed (--json/--explain: no effect)."""
        try:
            params = parse_params(list(args["params"]))
            if args["params_file"]:
                from scanflow_jupyter.cli.view import load_params_file

                params = {**load_params_file(args["params_file"]), **params}
        except click.BadParameter as exc:
            raise UsageError(f"%scanflow run: {exc.format_message()}") from None
        try:
            from scanflow_jupyter.data.store import RunUnreadableError
            from scanflow_jupyter.runtime.runner import InvalidApplication, run_notebook
        except ImportError as exc:
            raise UsageError(
                f"%scanflow run: the pipeline runner is not available ({exc})."
            ) from None

        live = self._has_frontend()
        progress = RunProgressWidget(notebook=str(path))
        if live:
            progress.show()
        display_errors: list[str] = []

        def on_event(event: Any) -> None:
            try:
                line = progress.handle(event)
                if line and not live:
                    print(line, flush=True)
            except Exception as exc:  # noqa: BLE001 - a display problem must not stop the run
                if not display_errors:
                    display_errors.append(repr(exc))
                    _warn(f"progress display failed ({exc!r}); the run continues.")

        try:
            result = run_notebook(
                str(path),
                started_by="notebook",
                params=params or None,
                only=list(args["only"]) or None,
                resume=args["resume"],
                max_parallel=args["max_parallel"],
                no_cache=args["no_cache"],
                backend=args["backend"],
                on_event=on_event,
            )
        except InvalidApplication as exc:
            messages = list(getattr(exc, "messages", None) or [])
            details = "\n".join(f"  {m}" for m in messages) or f"  {exc}"
            raise RunFailed(
                f"{path.name} is not a valid application; nothing ran:\n{details}"
            ) from None
        except RunUnreadableError as exc:  # --resume of a run whose run.json is broken
            raise RunFailed(f"{exc}\n  fix: {exc.fix}\nnothing ran") from None
        except BaseException as exc:  # a runner crash or Ctrl-C: do not leave "running" shown
            progress.status = "killed" if isinstance(exc, KeyboardInterrupt) else "failed"
            progress.refresh(republish=True)
            raise

        self.state.last_run = result
        for message in getattr(result, "messages", None) or []:
            _warn(str(message))
        progress.finish(result)
        if live:
            progress.refresh(republish=True)
        else:
            print(progress.text())
        if result.status != "succeeded":
            failed = [n for n, s in (result.steps or {}).items() if s.status == "failed"]
            why = f": step {', '.join(failed)} failed" if failed else ""
            raise RunFailed(f"run {result.run_id} {result.status}{why} (details above)")
