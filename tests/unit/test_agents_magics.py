"""`%%agent` cells and `%scanflow agents ...` in a real IPython shell (no kernel: text output)."""

from __future__ import annotations

import textwrap

import pytest
from IPython.core.interactiveshell import InteractiveShell

from scanflow_jupyter.magics import register


@pytest.fixture(scope="module")
def _ipython(tmp_path_factory):
    if InteractiveShell.initialized():
        return InteractiveShell.instance()
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False
    return InteractiveShell.instance(config=config, ipython_dir=str(tmp_path_factory.mktemp("ipython")))


@pytest.fixture
def ip(_ipython, tmp_path, monkeypatch):
    monkeypatch.setenv("SCANFLOW_HOME", str(tmp_path / ".scanflow"))
    _ipython.reset(new_session=False)
    register(_ipython)
    return _ipython


def run(ip, source: str):
    return ip.run_cell(textwrap.dedent(source).lstrip("\n"))


def test_agent_cell_defines_working_functions(ip, capsys):
    result = run(ip, """
        %%agent watcher --template monitor
        from scanflow_jupyter.agents import sensor, actuator, new_run

        @sensor(on=new_run("churn"))
        def weak(ctx, runs):
            return len(runs)

        @actuator
        def retrain(ctx, payload):
            return payload["n"] * 2
        """)
    out = capsys.readouterr()
    assert result.success, out
    assert ip.user_ns["retrain"](None, {"n": 2}) == 4  # callable as a plain function in the kernel
    assert "agent watcher: defined (template monitor) | sensors weak | actuators retrain" in out.out
    assert "`%scanflow agents up`" in out.out
    assert out.err == ""


def test_agent_cell_with_two_triggers_fails_with_the_fix(ip, capsys):
    result = run(ip, """
        %%agent watcher
        from scanflow_jupyter.agents import sensor

        @sensor(every="1s", cron="* * * * *")
        def both(ctx):
            return 1
        """)
    assert not result.success
    assert "has 2 triggers" in capsys.readouterr().out + str(result.error_in_exec)


def test_agent_cell_static_findings_are_printed(ip, capsys):
    assert run(ip, """
        %%agent planner --template planner
        from scanflow_jupyter.agents import actuator

        @actuator
        def run_pipeline(ctx, payload):
            return None
        """).success
    err = capsys.readouterr().err
    assert "clashes with the built-in 'run_pipeline' actuator of the planner template" in err
    assert "Fix: rename it" in err


def test_scanflow_agents_needs_an_action(ip, capsys):
    assert not run(ip, "%scanflow agents").success
    assert "%scanflow agents up, %scanflow agents down or %scanflow agents ls" in capsys.readouterr().err
    assert not run(ip, "%scanflow run extra").success
    assert "Got unexpected extra argument (extra)" in capsys.readouterr().err  # click's text, as `scanflow run`


def test_scanflow_agents_ls_without_agents(ip, capsys):
    assert run(ip, "%scanflow agents ls").success
    assert "no agents" in capsys.readouterr().out


def test_scanflow_agents_up_on_a_notebook_without_agents(ip, capsys, tmp_path):
    import json

    from tests.conftest import notebook_dict

    nb = tmp_path / "plain.ipynb"
    nb.write_text(json.dumps(notebook_dict(["%%executor a\nx = 1"])), encoding="utf-8")
    assert not run(ip, f"%scanflow agents up --notebook {nb}").success
    assert "declares no %%agent cell" in capsys.readouterr().err
    assert run(ip, f"%scanflow agents down --notebook {nb}").success
    assert "no agents were running for plain.ipynb" in capsys.readouterr().out
