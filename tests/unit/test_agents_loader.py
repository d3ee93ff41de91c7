"""Agent cells -> programs: static refusals at `agents up` (cell + fix) and loading in-process."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from scanflow_jupyter.agents.loader import (
    AgentLoadError,
    agent_spec,
    call_arity,
    check_agent,
    load_agent,
    plan_agents,
)
from scanflow_jupyter.model import Agent
from tests.conftest import notebook_dict

IMPORTS = "from scanflow_jupyter.agents import sensor, rule, actuator, new_run\n"


def agent_cell(name: str, body: str, template: str | None = None) -> str:
    line = f"%%agent {name}" + (f" --template {template}" if template else "")
    return line + "\n" + IMPORTS + textwrap.dedent(body).strip("\n")


def write(tmp_path: Path, cells: list) -> Path:
    path = tmp_path / "agents.ipynb"
    path.write_text(json.dumps(notebook_dict(cells)), encoding="utf-8")
    return path


def findings(body: str, template: str | None = None) -> list:
    return check_agent(Agent("a", 3, IMPORTS + textwrap.dedent(body), template))


def codes(body: str, template: str | None = None) -> list[str]:
    return [m.code for m in findings(body, template) if m.severity == "error"]


def test_a_good_agent_has_no_findings():
    assert findings("""
        @sensor(every="30s")
        def tick(ctx):
            return 1

        @sensor(on=new_run("churn"))
        def runs(ctx, runs):
            return len(runs)

        @rule(after="tick")
        def decide(ctx, value):
            return value > 0

        @actuator
        def go(ctx, payload):
            return payload
    """) == []


def test_two_triggers_name_the_line_and_the_fix():
    [msg] = findings("""
        @sensor(every="1s", on=new_run("x"))
        def both(ctx):
            pass
    """)
    assert msg.code == "sensor-two-triggers" and msg.cell == 3
    assert "sensor 'both' (line 5) has 2 triggers (every=, on=)" in msg.text  # the def line
    assert "@sensor(on=...) def both_on(ctx)" in msg.fix


def test_bad_literal_interval_and_cron_are_found_without_running_the_code():
    assert codes("""
        @sensor(every="soon")
        def a(ctx): ...
        @sensor(cron="hourly")
        def b(ctx): ...
        @sensor(evry="1s")
        def c(ctx): ...
    """) == ["bad-interval", "bad-cron", "bad-trigger"]


def test_actuator_name_clashes():
    assert codes("""
        @actuator
        def go(ctx, payload): ...
        @actuator(name="go")
        def go_again(ctx, payload): ...
    """) == ["actuator-name-clash"]
    [msg] = findings("""
        @actuator
        def run_pipeline(ctx, payload): ...
    """, template="planner")
    assert msg.code == "actuator-name-clash"
    assert "built-in 'run_pipeline' actuator of the planner template" in msg.text
    assert "@actuator(name='run_pipeline_custom')" in msg.fix


def test_rule_after_unknown_sensor_suggests_the_close_one():
    [msg] = findings("""
        @sensor(every="1s")
        def check_accuracy(ctx): ...
        @rule(after="check_acuracy")
        def decide(ctx, value): ...
    """)
    assert msg.code == "unknown-sensor" and "after='check_accuracy'" in msg.fix


def test_syntax_error_names_the_cell_line():
    [msg] = findings("def broken(:\n    pass\n")
    assert msg.code == "syntax-error" and "line 3 of the cell" in msg.text


def test_idle_agent_is_a_warning_only():
    [msg] = findings("x = 1\n")
    assert msg.severity == "warning" and msg.code == "idle-agent"
    assert findings("x = 1\n", template="executor") == []  # the template brings an actuator


def test_plan_refuses_bad_agents_and_keeps_the_good_ones(tmp_path):
    nb = write(tmp_path, [
        "%scanflow_app demo",
        {"source": "threshold = 0.5", "tags": ["parameters"]},
        agent_cell("good", """
            @sensor(every="1s")
            def tick(ctx):
                return threshold
        """),
        "%%agent typo --template planer\nx = 1",
        agent_cell("syntax", "def broken(:\n    pass"),
        agent_cell("twice", """
            @sensor(every="1s", cron="* * * * *")
            def s(ctx): ...
        """),
        agent_cell("clash", """
            @actuator(name="go")
            def a(ctx, p): ...
            @actuator(name="go")
            def b(ctx, p): ...
        """),
        "%%executor step --inputs nowhere\nprint(nowhere)",  # a pipeline error: agents still start
    ])
    plan = plan_agents(nb)
    assert [a.name for a in plan.agents] == ["good"]
    refused = {r.agent: r for r in plan.refused}
    assert list(refused) == ["typo", "syntax", "twice", "clash"]
    assert [r.cell for r in plan.refused] == [3, 4, 5, 6]
    assert refused["typo"].message.code == "unknown-template"
    assert "did you mean --template planner?" in refused["typo"].message.fix
    assert refused["syntax"].message.code == "syntax-error"
    assert refused["twice"].message.code == "sensor-two-triggers"
    assert refused["clash"].message.code == "actuator-name-clash"
    assert "refused" in str(refused["clash"]) and "Fix:" in str(refused["clash"])
    assert [w.code for w in plan.warnings] == ["input-without-producer"]


def _spec(tmp_path: Path, body: str, template: str | None = None, params: dict | None = None) -> dict:
    from scanflow_jupyter.model import Application

    app = Application(name="demo", notebook=str(tmp_path / "nb.ipynb"), parameters=params or {})
    return agent_spec(Agent("a", 2, IMPORTS + textwrap.dedent(body), template), app)


def test_load_collects_functions_with_parameters_as_globals(tmp_path):
    program = load_agent(_spec(tmp_path, """
        @sensor(every="1s")
        def tick(ctx):
            return limit * 2

        @rule(after="tick")
        def check(ctx, value):
            return value

        @actuator
        def go(ctx, payload):
            return payload
    """, template="executor", params={"limit": 21}))
    assert list(program.sensors) == ["tick"]
    assert list(program.rules) == ["check"]
    assert list(program.actuators) == ["promote_model", "go"]
    assert program.actuators["promote_model"].builtin
    assert program.sensors["tick"].fn(None) == 42


@pytest.mark.parametrize(("body", "code", "text", "fix"), [
    ("missing_helper()\n", "agent-load-error", "NameError: name 'missing_helper' is not defined", "inside the %%agent cell"),
    ("import not_a_module_xyz\n", "agent-load-error", "ModuleNotFoundError", "install not_a_module_xyz"),
    ("limit = 1 / 0\n", "agent-load-error", "ZeroDivisionError", "runs top to bottom"),
    ("INTERVAL = 'soon'\n@sensor(every=INTERVAL)\ndef s(ctx): ...\n", "bad-interval", "'soon' is not an interval", "30s"),
    ("@actuator\ndef go(ctx, payload, extra): ...\n", "bad-signature", "requires 3 argument(s)", "def go(ctx, payload)"),
    ("@sensor(on=new_run('x'))\ndef s(ctx, runs, more): ...\n", "bad-signature", "requires 3", "def s(ctx, events)"),
])
def test_load_errors_name_the_cell_line_and_fix(tmp_path, body, code, text, fix):
    with pytest.raises(AgentLoadError) as err:
        load_agent(_spec(tmp_path, body))
    msg = err.value.message
    assert (msg.code, msg.cell) == (code, 2)
    assert text in msg.text and fix in msg.fix


def test_load_error_reports_the_cell_line(tmp_path):
    with pytest.raises(AgentLoadError) as err:
        load_agent(_spec(tmp_path, "x = 1\ny = 2\nmissing()\n"))
    # line 1 is the magic line, line 2 the import added by _spec: missing() is on line 5
    assert "(line 5 of the cell)" in err.value.message.text


def test_duplicate_names_at_load(tmp_path):
    with pytest.raises(AgentLoadError) as err:
        load_agent(_spec(tmp_path, """
            def make(n):
                @actuator(name="go")
                def f(ctx, p):
                    return n
                return f
            a, b = make(1), make(2)
        """))
    assert err.value.message.code == "actuator-name-clash"


def test_call_arity():
    def none(): ...
    def one(ctx): ...
    def two(ctx, x=None): ...
    def star(*args): ...
    assert [call_arity(f, 2) for f in (none, one, two, star)] == [0, 1, 2, 2]


def test_allow_notebooks_is_a_literal_list_declared_by_the_cell(tmp_path):
    good = 'allow_notebooks = ["../shared/train.ipynb", "/data/pipelines/"]\n@actuator\ndef go(ctx, payload): ...\n'
    assert codes(good) == []
    assert load_agent(_spec(tmp_path, good)).allow_notebooks == ["../shared/train.ipynb", "/data/pipelines/"]
    for bad in ('allow_notebooks = "x.ipynb"\n', "allow_notebooks = [path]\n", 'allow_notebooks = [""]\n',
                "allow_notebooks: list = [1]\n"):
        msgs = [m for m in findings(bad + "@actuator\ndef go(ctx, payload): ...\n") if m.severity == "error"]
        assert [m.code for m in msgs] == ["bad-allow-notebooks"], bad
        assert "allow_notebooks = [" in msgs[0].fix and "(line 3)" in msgs[0].text  # the %%agent line is line 1
    # a notebook parameter of that name allows nothing: only the cell's own declaration counts
    program = load_agent(_spec(tmp_path, "@actuator\ndef go(ctx, payload): ...\n",
                               params={"allow_notebooks": ["/"]}))
    assert program.allow_notebooks == []
    with pytest.raises(AgentLoadError) as err:  # computed at load time: still checked
        load_agent(_spec(tmp_path, "allow_notebooks = 3\n"))
    assert err.value.message.code == "bad-allow-notebooks"
