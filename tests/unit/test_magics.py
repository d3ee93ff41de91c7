"""The Scanflow magics in a real IPython shell (no kernel, so widgets fall back to text)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import types
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

from scanflow_jupyter.magics import (
    CellFailed,
    RunFailed,
    find_notebook,
    kernel_state,
    parse_param_value,
    parse_params,
    register,
)
from scanflow_jupyter.model import Message
from scanflow_jupyter.widgets import (
    STATUS_COLORS,
    ExecutorWidget,
    RunProgressWidget,
    describe_value,
    format_duration,
)


@pytest.fixture(scope="module")
def _ipython(tmp_path_factory):
    if InteractiveShell.initialized():
        return InteractiveShell.instance()
    ipython_dir = tmp_path_factory.mktemp("ipython")
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False
    return InteractiveShell.instance(config=config, ipython_dir=str(ipython_dir))


@pytest.fixture
def ip(_ipython):
    """The shell with a fresh namespace and freshly registered magics (fresh state)."""
    _ipython.reset(new_session=False)
    register(_ipython)
    return _ipython


def run(ip, source: str):
    return ip.run_cell(textwrap.dedent(source).lstrip("\n"))


def user_names(ip) -> set[str]:
    hidden = set(ip.user_ns_hidden)
    return {k for k in ip.user_ns if k not in hidden and not k.startswith("_")}


# -- %%executor ------------------------------------------------------------------------------


def test_executor_runs_body_defines_outputs_and_prints_summary(ip, capsys):
    result = run(
        ip,
        """
        %%executor make --outputs data size
        data = [1, 2, 3, 4, 5]
        size = len(data)
        print("body ran")
        """,
    )
    out = capsys.readouterr().out
    assert result.success
    assert ip.user_ns["data"] == [1, 2, 3, 4, 5]
    assert "body ran" in out
    assert "executor make: succeeded" in out
    assert "data: list[5]" in out and "size: int 5" in out
    last = kernel_state(ip).executors["make"]
    assert last.status == "succeeded"
    assert last.outputs == {"data": "list[5]", "size": "int 5"}
    assert last.missing == []


def test_executor_shows_dependencies(ip, capsys):
    run(ip, "%%executor load --outputs X\nX = [0.5] * 3")
    run(ip, "%%executor train --requires load --inputs X --outputs total\ntotal = sum(X)")
    out = capsys.readouterr().out
    assert "executor train: succeeded" in out
    assert "requires load | inputs X" in out
    assert "total: float 1.5" in out


def test_executor_continuation_cell_keeps_the_steps_options(ip, capsys):
    run(ip, "%%executor clean --outputs df\ndf = [1, None, 3]")
    result = run(ip, "%%executor clean\ndf = [v for v in df if v]")
    out = capsys.readouterr().out
    assert result.success and ip.user_ns["df"] == [1, 3]
    last = kernel_state(ip).executors["clean"]
    assert last.executor.outputs == ["df"]  # the first cell's options, not the bare continuation's
    assert last.outputs == {"df": "list[2]"}
    assert "df: list[2]" in out


def test_executor_bad_option_prints_error_and_does_not_run_body(ip, capsys):
    result = run(ip, "%%executor train --epochs 3\nran = True")
    err = capsys.readouterr().err
    assert not result.success
    assert "ran" not in ip.user_ns
    assert "unknown option --epochs" in err
    assert "Fix: use one of" in err and "--outputs" in err


def test_executor_bad_value_prints_error_and_does_not_run_body(ip, capsys):
    result = run(ip, "%%executor train --retries -1\nran = True")
    err = capsys.readouterr().err
    assert not result.success
    assert "ran" not in ip.user_ns
    assert "--retries" in err and "Fix:" in err


def test_executor_missing_input_warns_but_runs(ip, capsys):
    run(ip, "%%executor make --outputs features\nfeatures = 1")
    del ip.user_ns["features"]
    capsys.readouterr()
    result = run(ip, "%%executor train --inputs features labels\nran = True")
    err = capsys.readouterr().err
    assert result.success
    assert ip.user_ns["ran"] is True
    assert "input 'features' is not defined yet; run the 'make' executor cell first" in err
    assert "input 'labels' is not defined yet; run the producer cell first" in err


def test_executor_missing_output_warns(ip, capsys):
    result = run(ip, "%%executor train --outputs model metrics\nmodel = object()")
    captured = capsys.readouterr()
    assert result.success
    assert "declares --outputs metrics, but the cell did not define it" in captured.err
    assert "missing outputs metrics" in captured.out
    assert kernel_state(ip).executors["train"].missing == ["metrics"]


def test_executor_failure_marks_the_cell_failed(ip, capsys):
    result = run(ip, "%%executor boom\nbefore = 1\n1 / 0")
    out = capsys.readouterr().out
    assert not result.success
    assert isinstance(result.error_in_exec, CellFailed)
    assert ip.user_ns["before"] == 1
    assert "ZeroDivisionError" in out  # the real traceback, shown by run_cell
    assert "executor boom: failed" in out
    assert "CellFailed: executor 'boom' failed: ZeroDivisionError: division by zero" in out
    assert kernel_state(ip).executors["boom"].status == "failed"


def test_executor_prints_cell_level_findings(ip, capsys):
    result = run(ip, "%%executor train --memory 2GB\nx = 1")
    err = capsys.readouterr().err
    assert result.success  # interactive development is not blocked
    assert "--memory '2GB' is not a memory quantity" in err and "2Gi" in err


def test_magics_keep_state_off_the_user_namespace(ip):
    before = user_names(ip)
    run(ip, "%scanflow_app demo --team ds")
    run(ip, "%%params\nlr = 0.5")
    run(ip, "%%executor make --outputs data\ndata = 1")
    assert user_names(ip) - before == {"lr", "data"}
    state = kernel_state(ip)
    assert (state.app_name, state.team) == ("demo", "ds")
    assert state.parameters == {"lr": 0.5}


def test_scanflow_app_prints_nothing_and_rejects_bad_lines(ip, capsys):
    assert run(ip, "%scanflow_app demo").success
    assert capsys.readouterr() == ("", "")
    assert not run(ip, "%scanflow_app").success
    assert "Fix:" in capsys.readouterr().err


# -- %%setup / %%params ---------------------------------------------------------------------


def test_setup_runs_body(ip):
    assert run(ip, "%%setup\nimport math\ndef double(x):\n    return 2 * x").success
    assert ip.user_ns["double"](4) == 8


def test_setup_rejects_arguments(ip, capsys):
    assert not run(ip, "%%setup extra\nran = True").success
    assert "ran" not in ip.user_ns
    assert "takes no arguments" in capsys.readouterr().err


def test_params_runs_literal_assignments(ip):
    assert run(ip, "%%params\nlr = 0.1\nepochs: int = 3\nlayers = [64, 32]").success
    assert (ip.user_ns["lr"], ip.user_ns["epochs"], ip.user_ns["layers"]) == (0.1, 3, [64, 32])
    assert kernel_state(ip).parameters == {"lr": 0.1, "epochs": 3, "layers": [64, 32]}


def test_params_refuses_non_literals(ip, capsys):
    result = run(ip, "%%params\nlr = 0.1\nsteps = compute()\nprint('x')")
    err = capsys.readouterr().err
    assert not result.success
    assert "lr" not in ip.user_ns  # nothing ran
    assert "parameter 'steps' (line 3) is not a literal: compute()" in err
    assert "line 4 of the parameters cell is not an assignment" in err
    assert kernel_state(ip).parameters == {}


# -- %%service / %%agent --------------------------------------------------------------------


def test_service_defines_predict_and_prints_summary(ip, capsys):
    result = run(
        ip,
        """
        %%service scorer --replicas 2
        def predict(inputs):
            return [x * 2 for x in inputs]
        """,
    )
    out = capsys.readouterr().out
    assert result.success
    assert ip.user_ns["predict"]([1, 2]) == [2, 4]
    assert "service scorer: defined | functions predict | 2 replicas" in out
    assert out.count("\n") == 1
    assert kernel_state(ip).services["scorer"].replicas == 2


def test_service_without_model_or_predict_warns(ip, capsys):
    assert run(ip, "%%service scorer\nx = 1").success
    assert "has neither --model nor a `predict` function" in capsys.readouterr().err


def test_agent_defines_functions_and_groups_them_by_decorator(ip, capsys):
    result = run(
        ip,
        """
        %%agent watcher --template monitor
        def sensor(interval):
            return lambda f: f
        @sensor(interval=60)
        def check_drift():
            return 0.1
        """,
    )
    out = capsys.readouterr().out
    assert result.success
    assert ip.user_ns["check_drift"]() == 0.1
    assert "agent watcher: defined (template monitor)" in out
    assert "sensors check_drift" in out


def test_agent_bad_template_does_not_run_body(ip, capsys):
    assert not run(ip, "%%agent watcher --template boss\nran = True").success
    assert "ran" not in ip.user_ns
    assert "invalid choice" in capsys.readouterr().err


# -- widgets -------------------------------------------------------------------------------


def test_executor_widget_text_and_html():
    w = ExecutorWidget("train", requires=["load"], inputs=["X"], outputs=["model", "score"])
    assert w.text() == "executor train: queued | requires load | inputs X | outputs model, score"
    w.start()
    assert w.text().startswith("executor train: running")
    w.finish(ok=True, duration_s=2.5, produced={"model": "LogisticRegression"}, missing=["score"])
    assert w.text() == (
        "executor train: succeeded in 2.5 s | requires load | inputs X"
        " | outputs model: LogisticRegression | missing outputs score"
    )
    assert STATUS_COLORS["succeeded"] in w.html() and "missing" in w.html()


def test_widget_view_and_mimebundle():
    pytest.importorskip("ipywidgets")
    w = ExecutorWidget("train", outputs=["model"])
    w.finish(ok=False, duration_s=0.2, produced={}, missing=["model"], error="ValueError: bad")
    bundle = w._repr_mimebundle_()
    assert bundle["text/plain"] == w.text()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert STATUS_COLORS["failed"] in w.view.children[0].children[0].value


@dataclass
class FakeEvent:
    type: str
    step: str | None = None
    attempt: int | None = None
    time: float = 0.0
    run_id: str = "r1"
    data: dict = field(default_factory=dict)


def test_run_progress_widget_follows_events():
    w = RunProgressWidget("nb.ipynb")
    failure = {"cell": 5, "ename": "ValueError", "evalue": "bad", "duration_s": 3.0}
    events = [
        FakeEvent("run_started", time=0),
        FakeEvent("step_queued", "load", time=0),
        FakeEvent("step_queued", "train", time=0),
        FakeEvent("step_cached", "load", time=1, data={"cached_from": "r0"}),
        FakeEvent("step_started", "train", attempt=1, time=1),
        FakeEvent("step_log", "train", attempt=1, time=2, data={"text": "epoch 1\n\n"}),
        FakeEvent("step_cell", "train", attempt=1, time=2, data={"cell": 5}),
        FakeEvent("step_failed", "train", attempt=1, time=4, data=failure),
        FakeEvent("run_finished", time=4, data={"status": "failed", "mlflow_run_id": "m7"}),
    ]
    lines, details = [], []
    for event in events:
        lines.append(w.handle(event))
        details.append(w.steps["train"].detail if "train" in w.steps else None)
    assert lines == [
        "run r1 started",
        None,
        None,
        "load: cached (reused from run r0)",
        "train: started (attempt 1)",
        None,
        None,
        "train: failed in 3.0 s (cell 6: ValueError: bad)",
        None,
    ]
    assert details[5:7] == ["epoch 1", "cell 6 · epoch 1"]
    text = w.text()
    assert text.splitlines()[0] == "run r1: failed | MLflow run m7"
    assert "load   cached     reused from run r0" in text
    assert "train  failed     attempt 1  3.0 s  cell 6: ValueError: bad" in text
    html = w.html()
    assert STATUS_COLORS["cached"] in html and STATUS_COLORS["failed"] in html


def test_run_progress_widget_takes_the_result():
    step = types.SimpleNamespace(status="succeeded", attempts=2, duration_s=61.0)
    result = types.SimpleNamespace(
        run_id="r9", status="succeeded", mlflow_run_id="abc", steps={"train": step}
    )
    w = RunProgressWidget()
    w.finish(result)
    assert (
        w.text() == "run r9: succeeded | MLflow run abc\n  train  succeeded  attempt 2  1 min 01 s"
    )


def test_describe_value():
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    assert describe_value(np.zeros((100, 3))) == "ndarray (100, 3) float64"
    assert describe_value(pd.DataFrame({c: range(100) for c in "abcd"})) == "DataFrame 100×4"
    assert describe_value(pd.Series([1.0, 2.0])) == "Series (2,) float64"
    assert describe_value([1, 2, 3, 4, 5]) == "list[5]"
    assert describe_value({"a": 1}) == "dict[1]"
    assert describe_value(0.912345) == "float 0.9123"
    assert describe_value(None) == "None"

    class LogisticRegression:
        pass

    assert describe_value(LogisticRegression()) == "LogisticRegression"


def test_format_duration():
    assert format_duration(None) == ""
    assert format_duration(0.0001) == "<1 ms"
    assert format_duration(0.25) == "250 ms"
    assert format_duration(3.21) == "3.2 s"
    assert format_duration(125) == "2 min 05 s"
    assert format_duration(3 * 3600 + 120) == "3 h 02 min"


# -- %scanflow -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("3", 3),
        ("-2", -2),
        ("0.5", 0.5),
        ("1e-3", 0.001),
        ("True", True),
        ("False", False),
        ("None", None),
        ("true", True),  # YAML (see tests/unit/test_params.py)
        ("adam", "adam"),
        ("", ""),
        ("1.2.3", "1.2.3"),
    ],
)
def test_parse_param_value(text, value):
    parsed = parse_param_value(text)
    assert parsed == value and type(parsed) is type(value)


def test_parse_params():
    assert parse_params(["lr=0.1", "name=a=b", "epochs=3"]) == {
        "lr": 0.1,
        "name": "a=b",
        "epochs": 3,
    }
    with pytest.raises(Exception, match="KEY=VALUE"):
        parse_params(["lr"])


def write_notebook(path: Path, cells: list[str]) -> Path:
    nb = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
        "cells": [
            {
                "cell_type": "code",
                "metadata": {},
                "source": s,
                "outputs": [],
                "execution_count": None,
            }
            for s in cells
        ],
    }
    path.write_text(json.dumps(nb), encoding="utf-8")
    return path


PIPELINE_CELLS = [
    "%load_ext scanflow_jupyter",
    "%scanflow_app demo",
    "%%params\nn = 3",
    "%%executor make --outputs data\ndata = list(range(n))",
    "%%executor total --inputs data --outputs s\ns = sum(data)",
]


def test_find_notebook(tmp_path, monkeypatch):
    nb = write_notebook(tmp_path / "nb.ipynb", [])
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    assert find_notebook(None) is None
    assert find_notebook("../nb.ipynb") == nb.resolve()
    monkeypatch.setenv("JPY_SESSION_NAME", str(nb))
    assert find_notebook(None) == nb.resolve()
    monkeypatch.setenv("JPY_SESSION_NAME", "nb.ipynb")  # relative to a parent (server root)
    assert find_notebook(None) == nb.resolve()
    monkeypatch.setenv("JPY_SESSION_NAME", "elsewhere/sub/nb.ipynb")
    assert find_notebook(None) is None


def test_scanflow_without_notebook_explains_notebook_option(ip, capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert not run(ip, "%scanflow inspect").success
    assert "--notebook path/to/notebook.ipynb" in capsys.readouterr().err


def test_scanflow_bad_action(ip, capsys):
    assert not run(ip, "%scanflow deploy-everything").success
    assert "invalid choice" in capsys.readouterr().err


def test_scanflow_inspect(ip, capsys, tmp_path):
    nb = write_notebook(tmp_path / "demo.ipynb", PIPELINE_CELLS)
    assert run(ip, f"%scanflow inspect --notebook {nb}").success
    out = capsys.readouterr().out
    assert "application demo (team default)" in out
    assert "parameters: n=3" in out
    assert "1. make (cell 4) | outputs data" in out
    assert "2. total (cell 5) | after make | inputs data | outputs s" in out
    assert "no problems found." in out


def test_scanflow_inspect_reports_messages(ip, capsys, tmp_path):
    nb = write_notebook(tmp_path / "demo.ipynb", ["%%executor a --requires b\nx = 1"])
    assert run(ip, f"%scanflow inspect --notebook {nb}").success
    out = capsys.readouterr().out
    assert "1 error(s)" in out and "requires 'b', but no executor has that name" in out


# -- %scanflow run, against a stand-in runner (the real one is tested in integration) ------


class FakeInvalidApplication(Exception):
    def __init__(self, messages):
        super().__init__("invalid")
        self.messages = messages


@pytest.fixture
def fake_runner(monkeypatch):
    calls = []
    module = types.ModuleType("scanflow_jupyter.runtime.runner")
    module.InvalidApplication = FakeInvalidApplication
    module.outcome = "succeeded"

    def run_notebook(notebook, **kwargs):
        calls.append((notebook, kwargs))
        if module.outcome == "crash":
            raise RuntimeError("runner bug")
        if module.outcome == "invalid":
            raise FakeInvalidApplication(
                [Message("error", "cycle", "the steps form a cycle: a -> a.", "remove it.", 3)]
            )
        emit = kwargs["on_event"]
        emit(FakeEvent("run_started", time=0))
        emit(FakeEvent("step_started", "make", attempt=1, time=0))
        ok = module.outcome == "succeeded"
        data = {} if ok else {"cell": 3, "ename": "KeyError", "evalue": "'n'"}
        emit(FakeEvent("step_succeeded" if ok else "step_failed", "make", 1, 2.0, data=data))
        emit(FakeEvent("run_finished", time=2, data={"status": module.outcome}))
        step = types.SimpleNamespace(status=module.outcome, attempts=1, duration_s=2.0)
        return types.SimpleNamespace(
            run_id="r1", status=module.outcome, mlflow_run_id="m1", steps={"make": step}
        )

    module.run_notebook = run_notebook
    monkeypatch.setitem(sys.modules, "scanflow_jupyter.runtime.runner", module)
    module.calls = calls
    return module


def test_scanflow_run_passes_options_and_prints_progress(ip, capsys, tmp_path, fake_runner):
    nb = write_notebook(tmp_path / "demo.ipynb", PIPELINE_CELLS)
    line = (
        f"%scanflow run --notebook {nb} -p n=5 -p name=x -p flag=True --only make --only total"
        " --max-parallel 2 --no-cache"
    )
    assert run(ip, line).success
    notebook, kwargs = fake_runner.calls[0]
    assert notebook == str(nb.resolve())
    assert kwargs["params"] == {"n": 5, "name": "x", "flag": True}
    assert kwargs["only"] == ["make", "total"]
    assert (kwargs["max_parallel"], kwargs["no_cache"], kwargs["backend"]) == (2, True, "local")
    assert kwargs["resume"] is None
    out = capsys.readouterr().out
    assert "run r1 started" in out
    assert "make: succeeded in 2.0 s" in out
    assert "run r1: succeeded | MLflow run m1" in out
    assert kernel_state(ip).last_run.run_id == "r1"


def test_scanflow_run_uses_session_notebook_and_defaults(ip, tmp_path, monkeypatch, fake_runner):
    nb = write_notebook(tmp_path / "demo.ipynb", PIPELINE_CELLS)
    monkeypatch.setenv("JPY_SESSION_NAME", str(nb))
    assert run(ip, "%scanflow run").success
    notebook, kwargs = fake_runner.calls[0]
    assert notebook == str(nb.resolve())
    assert kwargs["params"] is None and kwargs["only"] is None
    assert (kwargs["max_parallel"], kwargs["no_cache"]) == (None, False)


def test_scanflow_run_failure_fails_the_cell(ip, capsys, tmp_path, fake_runner):
    fake_runner.outcome = "failed"
    nb = write_notebook(tmp_path / "demo.ipynb", PIPELINE_CELLS)
    result = run(ip, f"%scanflow run --notebook {nb}")
    out = capsys.readouterr().out
    assert isinstance(result.error_in_exec, RunFailed)
    assert "make: failed in 2.0 s (cell 4: KeyError: 'n')" in out
    assert "RunFailed: run r1 failed: step make failed" in out


def test_scanflow_run_invalid_notebook_lists_messages(ip, capsys, tmp_path, fake_runner):
    fake_runner.outcome = "invalid"
    nb = write_notebook(tmp_path / "demo.ipynb", PIPELINE_CELLS)
    result = run(ip, f"%scanflow run --notebook {nb}")
    out = capsys.readouterr().out
    assert isinstance(result.error_in_exec, RunFailed)
    assert "demo.ipynb is not a valid application; nothing ran" in out
    assert "error: cell 4: the steps form a cycle: a -> a. Fix: remove it." in out


def test_scanflow_run_resume_of_an_unreadable_run_says_file_and_fix(ip, capsys, tmp_path, monkeypatch):
    """The real runner: a broken run.json fails the cell with one message; nothing ran."""
    monkeypatch.setenv("SCANFLOW_HOME", str(tmp_path / ".scanflow"))
    state = tmp_path / ".scanflow" / "runs" / "20260101T000001-broken" / "run.json"
    state.parent.mkdir(parents=True)
    state.write_text("{ truncated")
    nb = write_notebook(tmp_path / "demo.ipynb", PIPELINE_CELLS)
    result = run(ip, f"%scanflow run --notebook {nb} --resume 20260101T000001-broken")
    out = capsys.readouterr().out
    assert isinstance(result.error_in_exec, RunFailed)
    assert str(state) in out and "not valid JSON" in out and "fix: this run cannot be" in out, out
    assert "Traceback" not in out and "nothing ran" in out
    assert [p.name for p in state.parent.parent.iterdir()] == ["20260101T000001-broken"]


def test_scanflow_run_runner_crash_propagates(ip, tmp_path, fake_runner):
    fake_runner.outcome = "crash"
    nb = write_notebook(tmp_path / "demo.ipynb", PIPELINE_CELLS)
    result = run(ip, f"%scanflow run --notebook {nb}")
    assert isinstance(result.error_in_exec, RuntimeError)
    assert kernel_state(ip).last_run is None


def test_scanflow_run_bad_param(ip, capsys, tmp_path, fake_runner):
    nb = write_notebook(tmp_path / "demo.ipynb", PIPELINE_CELLS)
    assert not run(ip, f"%scanflow run --notebook {nb} -p 3x=1").success
    assert "-p expects KEY=VALUE" in capsys.readouterr().err
    assert fake_runner.calls == []


# -- import cost ---------------------------------------------------------------------------

HEAVY = ("mlflow", "papermill", "nbformat", "nbclient", "numpy", "pandas", "ipywidgets")


def test_loading_the_extension_imports_nothing_heavy(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys
        from IPython.core.interactiveshell import InteractiveShell
        from traitlets.config import Config

        config = Config()
        config.HistoryManager.enabled = False
        ip = InteractiveShell.instance(config=config, ipython_dir={str(tmp_path)!r})
        already = sorted(m for m in {HEAVY!r} if m in sys.modules)
        assert not already, f"imported before the extension: {{already}}"
        import scanflow_jupyter
        scanflow_jupyter.load_ipython_extension(ip)
        loaded = sorted(m for m in {HEAVY!r} if m in sys.modules)
        print("after load:", loaded)
        for cell in ("%scanflow_app demo", "%%params\\nn = 1", "%%executor a --outputs x\\nx = [n]"):
            assert ip.run_cell(cell).success, cell
        used = sorted(m for m in {HEAVY!r} if m in sys.modules)
        print("after use:", used)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "after load: []" in proc.stdout, proc.stdout
    assert "after use: []" in proc.stdout, proc.stdout
