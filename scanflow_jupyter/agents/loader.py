"""Turn the `%%agent` cells of a notebook into runnable agent programs, or refuse them.

Two stages, both answering with `Message`s that name the cell and say how to fix it:

1. `plan_agents(notebook)` (no execution): parse the notebook, then check every agent cell
   statically — its magic line (e.g. an unknown `--template`), its syntax, and how it uses the
   decorators (two triggers on one sensor, a bad interval or cron, two actuators with one name,
   an actuator that clashes with the template's built-in, a rule after an unknown sensor).
   A refused agent does not stop the others.
2. `load_agent(spec)` (in the agent process): run the cell's code with the application's
   parameters as globals and collect its sensors, rules and actuators. An exception raised
   while the cell runs becomes an `AgentLoadError` carrying the cell line.
"""

from __future__ import annotations

import ast
import difflib
import inspect
import re
import shlex
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scanflow_jupyter.agents.decorators import (
    TRIGGER_NAMES,
    ActuatorSpec,
    AgentDefinitionError,
    RuleSpec,
    SensorSpec,
    check_cron,
    collecting,
    parse_duration,
)
from scanflow_jupyter.agents.templates import BUILTIN_ACTUATORS
from scanflow_jupyter.model import Agent, Application, Message

__all__ = [
    "AgentLoadError",
    "AgentPlan",
    "AgentProgram",
    "Refusal",
    "agent_spec",
    "check_agent",
    "load_agent",
    "plan_agents",
]

TEMPLATES = tuple(BUILTIN_ACTUATORS)
_AGENT_LINE_RE = re.compile(r"^\s*%%agent\b(.*)$")
# Validation findings about a whole notebook that do not stop its agents from starting.
_NOT_ABOUT_AGENTS = {"no-executors"}
#: the agent-cell variable listing notebooks outside the project that `run_pipeline` may run
ALLOW_NOTEBOOKS = "allow_notebooks"


@dataclass
class Refusal:
    """An agent that will not start, with the reason (cell, what, fix)."""

    agent: str
    cell: int | None
    message: Message

    def to_dict(self) -> dict[str, Any]:
        return {"agent": self.agent, "cell": self.cell, "code": self.message.code,
                "text": self.message.text, "fix": self.message.fix}

    def __str__(self) -> str:
        where = f"cell {self.cell + 1}" if self.cell is not None else "notebook"  # 1-based
        return f"agent '{self.agent}' ({where}) refused: {self.message.text} Fix: {self.message.fix}"


@dataclass
class AgentPlan:
    """What `agents up` will do with a notebook: agents to start, agents refused, other findings."""

    app: Application
    agents: list[Agent] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    warnings: list[Message] = field(default_factory=list)


class AgentLoadError(Exception):
    """The agent's code failed while it was loaded; `message` names the cell and the fix."""

    def __init__(self, message: Message) -> None:
        super().__init__(str(message))
        self.message = message


# -- stage 1: static checks -------------------------------------------------------------------


def plan_agents(notebook: str | Path) -> AgentPlan:
    """Parse `notebook` and sort its agents into startable and refused (NotebookReadError if the
    file is not a notebook)."""
    from scanflow_jupyter.notebook.parser import (
        cell_source,
        parse_notebook_dict,
        read_notebook_json,
    )
    from scanflow_jupyter.notebook.validate import validate

    path = Path(notebook).resolve()
    nb = read_notebook_json(path)
    app = parse_notebook_dict(nb, str(path))
    messages = validate(app)
    plan = AgentPlan(app)
    agent_cells = {a.cell: a for a in app.agents}
    bad_lines: dict[int, str] = {}  # %%agent cells whose magic line did not parse
    for index, cell in enumerate(nb["cells"]):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        first = next((ln for ln in cell_source(cell).split("\n") if ln.strip()), "")
        m = _AGENT_LINE_RE.match(first)
        if m and index not in agent_cells:
            bad_lines[index] = _name_from_line(m.group(1)) or f"cell-{index}"
    by_cell: dict[int, list[Message]] = {}
    for msg in messages:
        if msg.severity != "error":
            if msg.cell in agent_cells or msg.cell in bad_lines:
                plan.warnings.append(msg)
            continue
        if msg.cell in agent_cells or msg.cell in bad_lines:
            by_cell.setdefault(msg.cell, []).append(msg)
        elif msg.code not in _NOT_ABOUT_AGENTS:
            plan.warnings.append(msg)
    for index, name in bad_lines.items():
        line = _AGENT_LINE_RE.match(next(ln for ln in cell_source(nb["cells"][index]).split("\n") if ln.strip()))
        better = _template_message(line.group(1) if line else "", index)
        msgs = [better] if better else by_cell.get(index) or [
            Message("error", "bad-agent-line", "the %%agent line could not be read.",
                    "write it as %%agent NAME [--template monitor|analyzer|planner|executor].", index)]
        plan.refused.append(Refusal(name, index, msgs[0]))
    for agent in app.agents:
        findings = check_agent(agent, app)
        problems = by_cell.get(agent.cell, []) + [m for m in findings if m.severity == "error"]
        if problems:
            plan.refused.append(Refusal(agent.name, agent.cell, problems[0]))
        else:
            plan.agents.append(agent)
            plan.warnings += [m for m in findings if m.severity != "error"]
    plan.refused.sort(key=lambda r: r.cell if r.cell is not None else -1)
    return plan


def _name_from_line(rest: str) -> str | None:
    try:
        words = shlex.split(rest, comments=True)
    except ValueError:
        words = rest.split()
    names = [w for w in words if not w.startswith("-")]
    return names[0] if names else None


def _template_message(rest: str, cell: int) -> Message | None:
    """A specific message for `--template X` with an unknown X (argparse's is generic)."""
    try:
        words = shlex.split(rest, comments=True)
    except ValueError:
        return None
    value = None
    for i, word in enumerate(words):
        if word == "--template" and i + 1 < len(words):
            value = words[i + 1]
        elif word.startswith("--template="):
            value = word.split("=", 1)[1]
    if value is None or value in TEMPLATES:
        return None
    close = difflib.get_close_matches(value, TEMPLATES, n=1, cutoff=0.5)
    hint = f"did you mean --template {close[0]}? " if close else ""
    return Message("error", "unknown-template", f"unknown agent template '{value}'.",
                   f"{hint}use one of {', '.join(TEMPLATES)}, or drop --template for an agent with only "
                   "your own sensors and actuators.", cell)


def _decorator(node: ast.expr) -> tuple[str | None, ast.Call | None]:
    call = node if isinstance(node, ast.Call) else None
    target = call.func if call else node
    if isinstance(target, ast.Attribute):
        return target.attr, call
    if isinstance(target, ast.Name):
        return target.id, call
    return None, call


def _literal(node: ast.expr) -> tuple[bool, Any]:
    try:
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, RecursionError):
        return False, None


def check_agent(agent: Agent, app: Application | None = None) -> list[Message]:
    """Static findings for one agent cell (nothing is executed)."""
    from scanflow_jupyter.notebook.parser import strip_magic_lines

    msgs: list[Message] = []
    cell = agent.cell

    def error(code: str, text: str, fix: str) -> None:
        msgs.append(Message("error", code, f"agent '{agent.name}': {text}", fix, cell))

    if agent.template is not None and agent.template not in TEMPLATES:
        error("unknown-template", f"unknown template '{agent.template}'.", f"use one of {', '.join(TEMPLATES)}.")
    try:
        tree = ast.parse(strip_magic_lines(agent.source))
    except SyntaxError as exc:
        error("syntax-error", f"syntax error on line {(exc.lineno or 0) + 1} of the cell: {exc.msg}.",
              "fix the Python syntax of that line.")
        return msgs
    allow = _allow_assignment(tree)
    if allow is not None:
        ok, value = _literal(allow.value) if allow.value is not None else (False, None)
        if not (ok and isinstance(value, (list, tuple)) and all(isinstance(v, str) and v for v in value)):
            error("bad-allow-notebooks", f"{ALLOW_NOTEBOOKS} (line {allow.lineno + 1}) must be a literal list of "
                  "notebook paths or folders.",
                  f'write it as {ALLOW_NOTEBOOKS} = ["../shared/train.ipynb", "/data/pipelines/"] (relative paths '
                  "start at this notebook's folder).")
    sensors: dict[str, int] = {}
    actuators: dict[str, int] = {}
    rules_after: list[tuple[str, str, int]] = []
    builtins = {n: agent.template for n in BUILTIN_ACTUATORS.get(agent.template or "", ())}
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        line = node.lineno + 1
        for deco in node.decorator_list:
            kind, call = _decorator(deco)
            if kind not in ("sensor", "actuator", "rule"):
                continue
            keywords = {k.arg: k.value for k in (call.keywords if call else []) if k.arg}
            name = node.name
            if "name" in keywords:
                ok, value = _literal(keywords["name"])
                if ok and isinstance(value, str):
                    name = value
            if call is not None and call.args:
                error("bad-decorator-use", f"@{kind} on '{node.name}' (line {line}) takes options by keyword only.",
                      f"write e.g. @{kind}({'every=' if kind == 'sensor' else 'name='}...).")
            if kind == "sensor":
                _check_sensor_keywords(keywords, name, line, error)
                if name in sensors:
                    error("sensor-name-clash", f"two sensors are named '{name}' (lines {sensors[name]} and {line}).",
                          "give each sensor its own function name, or pass name='...'.")
                sensors.setdefault(name, line)
            elif kind == "actuator":
                unknown = sorted(set(keywords) - {"name"})
                if unknown:
                    error("bad-decorator-use", f"@actuator on '{node.name}' (line {line}) has unknown option(s) "
                          f"{', '.join(unknown)}.", "@actuator takes only name='...'.")
                if name in builtins:
                    error("actuator-name-clash",
                          f"actuator '{name}' (line {line}) clashes with the built-in '{name}' actuator of the "
                          f"{builtins[name]} template.",
                          f"rename it, e.g. @actuator(name='{name}_custom'), or drop --template {builtins[name]} "
                          "if you want to replace the built-in.")
                elif name in actuators:
                    error("actuator-name-clash", f"two actuators are named '{name}' (lines {actuators[name]} and {line}).",
                          f"rename one, e.g. @actuator(name='{name}_2'): peers call actuators by name.")
                actuators.setdefault(name, line)
            else:
                unknown = sorted(set(keywords) - {"name", "after"})
                if unknown:
                    error("bad-decorator-use", f"@rule on '{node.name}' (line {line}) has unknown option(s) "
                          f"{', '.join(unknown)}.", "@rule takes after='sensor_name' and name='...'.")
                if "after" in keywords:
                    ok, value = _literal(keywords["after"])
                    if ok and isinstance(value, str):
                        rules_after.append((name, value, line))
    for name, after, line in rules_after:
        if after not in sensors:
            close = difflib.get_close_matches(after, list(sensors), n=1)
            error("unknown-sensor", f"rule '{name}' (line {line}) runs after sensor '{after}', which this agent "
                  "does not define.", f"did you mean after='{close[0]}'?" if close else
                  f"name one of this agent's sensors: {', '.join(sensors) or 'none'}.")
    if not sensors and not actuators and not builtins:
        msgs.append(Message("warning", "idle-agent", f"agent '{agent.name}' defines no sensor and no actuator, "
                            "so it will do nothing.", "decorate functions with @sensor(every=...) or @actuator "
                            "(from scanflow_jupyter.agents import sensor, actuator), or give it a --template.", cell))
    return msgs


def _allow_assignment(tree: ast.Module) -> ast.Assign | ast.AnnAssign | None:
    """The cell's top-level `allow_notebooks = [...]` statement (the last one), if any."""
    found = None
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
            if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == ALLOW_NOTEBOOKS for t in targets):
            found = node
    return found


def _check_sensor_keywords(keywords: dict[str, ast.expr], name: str, line: int, error: Any) -> None:
    unknown = sorted(set(keywords) - {*TRIGGER_NAMES, "name"})
    if unknown:
        close = difflib.get_close_matches(unknown[0], TRIGGER_NAMES, n=1, cutoff=0.4)
        error("bad-trigger", f"sensor '{name}' (line {line}) has unknown option(s) {', '.join(unknown)}.",
              (f"did you mean {close[0]}=? " if close else "") + 'use every="30s", cron="0 * * * *" or '
              "on=new_run('experiment').")
    triggers = [t for t in TRIGGER_NAMES if t in keywords]
    if len(triggers) > 1:
        error("sensor-two-triggers",
              f"sensor '{name}' (line {line}) has {len(triggers)} triggers ({', '.join(t + '=' for t in triggers)}); "
              "a sensor has exactly one.",
              f"keep one trigger and write a second sensor for the other, e.g. @sensor({triggers[1]}=...) def "
              f"{name}_{triggers[1]}(ctx) calling the same helper.")
        return
    for trigger, check in (("every", parse_duration), ("cron", check_cron)):
        if trigger in keywords:
            ok, value = _literal(keywords[trigger])
            if ok:
                try:
                    check(value)
                except AgentDefinitionError as exc:
                    error(exc.code, f"sensor '{name}' (line {line}): {exc.text}", exc.fix)


# -- stage 2: loading in the agent process ---------------------------------------------------


@dataclass
class AgentProgram:
    """A loaded agent: its sensors, rules and actuators (template built-ins included)."""

    name: str
    app: str
    team: str
    template: str | None
    cell: int
    notebook: str
    params: dict[str, Any]
    source: str
    sensors: dict[str, SensorSpec] = field(default_factory=dict)
    actuators: dict[str, ActuatorSpec] = field(default_factory=dict)
    rules: dict[str, RuleSpec] = field(default_factory=dict)
    namespace: dict[str, Any] = field(default_factory=dict, repr=False)
    allow_notebooks: list[str] = field(default_factory=list)  # run_pipeline beyond the project root


def agent_spec(agent: Agent, app: Application) -> dict[str, Any]:
    """What an agent process needs to load `agent` (a snapshot: later notebook edits do not
    change a running agent until the next `agents up`)."""
    return {"name": agent.name, "cell": agent.cell, "source": agent.source, "template": agent.template,
            "app": app.name, "team": app.team, "notebook": app.notebook, "params": dict(app.parameters)}


def _filename(spec: dict[str, Any]) -> str:
    return f"<agent {spec['name']} cell {spec['cell']}>"


def _load_message(spec: dict[str, Any], exc: BaseException) -> Message:
    """An exception raised by the cell's code -> a message with the cell line, what and fix."""
    cell = spec.get("cell")
    name = spec.get("name")
    filename = _filename(spec)
    line = None
    if isinstance(exc, SyntaxError) and exc.filename == filename:
        line = exc.lineno
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == filename:
            line = frame.lineno
    where = f" (line {line} of the cell)" if line else ""
    if isinstance(exc, AgentDefinitionError):
        return Message("error", exc.code, f"agent '{name}'{where}: {exc.text}", exc.fix, cell)
    text = str(exc).strip().splitlines()
    what = f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
    if isinstance(exc, ModuleNotFoundError):
        fix = f"install {exc.name} where the agents run (the project's environment), or remove the import."
    elif isinstance(exc, NameError):
        fix = ("the agent runs its cell alone, with the notebook's parameters as variables: define or import "
               "the name inside the %%agent cell.")
    else:
        fix = "fix the code of the cell: it runs top to bottom when the agent starts."
    return Message("error", "agent-load-error", f"agent '{name}' failed to load{where}: {what}", fix, cell)


def load_agent(spec: dict[str, Any]) -> AgentProgram:
    """Run the agent's cell and collect its functions (AgentLoadError if it fails)."""
    from scanflow_jupyter.agents.templates import builtin_actuators
    from scanflow_jupyter.notebook.parser import strip_magic_lines

    name, template = spec["name"], spec.get("template")
    program = AgentProgram(name=name, app=spec["app"], team=spec.get("team", "default"), template=template,
                           cell=int(spec["cell"]), notebook=spec["notebook"], params=dict(spec.get("params") or {}),
                           source=spec["source"])
    if template is not None and template not in TEMPLATES:
        raise AgentLoadError(Message("error", "unknown-template", f"unknown agent template '{template}'.",
                                     f"use one of {', '.join(TEMPLATES)}.", program.cell))
    code_text = "\n" + strip_magic_lines(spec["source"])  # line numbers = cell line numbers
    module_name = f"scanflow_agent_{re.sub(r'[^0-9A-Za-z_]', '_', name)}"
    namespace: dict[str, Any] = {"__name__": module_name, "__file__": _filename(spec),
                                 "__builtins__": __builtins__, **program.params}
    try:
        code = compile(code_text, _filename(spec), "exec")
        with collecting() as specs:
            exec(code, namespace)  # noqa: S102 - the user's own agent code, as in their kernel
    except BaseException as exc:  # noqa: BLE001 - SystemExit/KeyboardInterrupt in a cell is a bug too
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise AgentLoadError(_load_message(spec, exc)) from exc
    program.namespace = namespace
    if _declares_allow(code_text):
        value = namespace.get(ALLOW_NOTEBOOKS)
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, (str, Path)) for v in value):
            raise AgentLoadError(Message("error", "bad-allow-notebooks",
                                         f"agent '{name}': {ALLOW_NOTEBOOKS} must be a list of notebook paths, "
                                         f"not {type(value).__name__}.",
                                         f'write it as {ALLOW_NOTEBOOKS} = ["../shared/train.ipynb"].', program.cell))
        program.allow_notebooks = [str(v) for v in value]
    for name_, (fn, doc) in builtin_actuators(template).items():
        program.actuators[name_] = ActuatorSpec(name_, fn, doc, builtin=True)
    problems: list[Message] = []
    for item in specs:
        kind = {SensorSpec: "sensor", ActuatorSpec: "actuator", RuleSpec: "rule"}[type(item)]
        table: dict[str, Any] = getattr(program, kind + "s")
        if item.name in table:
            builtin = kind == "actuator" and table[item.name].builtin
            problems.append(Message(
                "error", f"{kind}-name-clash",
                f"agent '{name}': {kind} '{item.name}' is defined twice"
                + (f" (the {template} template has a built-in '{item.name}')." if builtin else "."),
                f"rename one, e.g. @{kind}(name='{item.name}_2').", program.cell))
            continue
        problem = _check_signature(item, kind, program.cell, name)
        if problem:
            problems.append(problem)
        table[item.name] = item
    for rule_spec in program.rules.values():
        if rule_spec.after is not None and rule_spec.after not in program.sensors:
            problems.append(Message("error", "unknown-sensor",
                                    f"agent '{name}': rule '{rule_spec.name}' runs after unknown sensor '{rule_spec.after}'.",
                                    f"name one of: {', '.join(program.sensors) or 'no sensors defined'}.", program.cell))
    if problems:
        raise AgentLoadError(problems[0])
    return program


def _declares_allow(code_text: str) -> bool:
    """True if the cell itself assigns `allow_notebooks` (a notebook parameter of that name does not count)."""
    try:
        return _allow_assignment(ast.parse(code_text)) is not None
    except (SyntaxError, ValueError, RecursionError):
        return False


_ARGS = {"sensor-on": ("ctx", "events"), "sensor": ("ctx",), "actuator": ("ctx", "payload"),
         "rule-after": ("ctx", "value")}


def call_arity(fn: Any, available: int) -> int:
    """How many leading positional arguments (of `available`) to pass to `fn`."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return available
    count = 0
    for param in sig.parameters.values():
        if param.kind == param.VAR_POSITIONAL:
            return available
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            count += 1
    return min(count, available)


def _check_signature(item: Any, kind: str, cell: int, agent: str) -> Message | None:
    if kind == "sensor":
        key = "sensor-on" if item.trigger.kind == "on" else "sensor"
    elif kind == "actuator":
        key = "actuator"
    elif item.after is not None:
        key = "rule-after"
    else:
        return None
    names = _ARGS[key]
    try:
        sig = inspect.signature(item.fn)
    except (TypeError, ValueError):
        return None
    required = [p for p in sig.parameters.values()
                if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if len(required) > len(names) or any(p.kind == p.KEYWORD_ONLY for p in required):
        fn_name = getattr(item.fn, "__name__", item.name)
        return Message("error", "bad-signature",
                       f"agent '{agent}': {kind} '{item.name}' requires {len(required)} argument(s) "
                       f"({', '.join(p.name for p in required)}); it is called with ({', '.join(names)}).",
                       f"define it as def {fn_name}({', '.join(names)}): ...", cell)
    return None
