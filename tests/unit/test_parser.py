"""Reading notebooks into an Application, without a kernel."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from scanflow_jupyter.notebook.magic_args import MagicArgError, parse_magic_line
from scanflow_jupyter.notebook.parser import (
    NotebookReadError,
    cell_source,
    default_app_name,
    parse_notebook,
    parse_notebook_dict,
    read_notebook_json,
    strip_magic_lines,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "notebooks"
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def nb_dict(*cells, metadata=None) -> dict:
    out = []
    for spec in cells:
        spec = {"source": spec} if isinstance(spec, str) else spec
        out.append({"cell_type": spec.get("cell_type", "code"), "metadata": {"tags": spec.get("tags", [])},
                    "source": spec["source"]})
    meta = {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}} if metadata is None else metadata
    return {"cells": out, "metadata": meta, "nbformat": 4, "nbformat_minor": 5}


def parse(*cells, metadata=None, path="/work/demo.ipynb"):
    return parse_notebook_dict(nb_dict(*cells, metadata=metadata), path)


# --- the example notebooks -------------------------------------------------------------------


def test_linear_chain():
    app = parse_notebook(EXAMPLES / "linear_chain.ipynb")
    assert app.name == "linear-chain"
    assert app.team == "default"
    assert app.notebook == str((EXAMPLES / "linear_chain.ipynb").resolve())
    assert (app.kernel_name, app.kernel_display_name, app.language) == ("python3", "Python 3", "python")
    assert app.cell_count == 6
    assert [b.cell for b in app.setup] == [2]
    assert app.setup[0].source.startswith("import statistics\n")
    assert [(e.name, e.cell, e.inputs, e.outputs) for e in app.executors] == [
        ("extract", 3, [], ["readings"]),
        ("transform", 4, ["readings"], ["scaled"]),
        ("report", 5, ["scaled"], ["summary"]),
    ]
    assert app.ignored_cells == [1]  # the %load_ext cell; markdown is not "ignored code"
    assert app.messages == []


def test_diamond():
    app = parse_notebook(EXAMPLES / "diamond.ipynb")
    assert app.name == "diamond"
    assert {e.name: e.inputs for e in app.executors} == {
        "load": [], "features": ["X", "df"], "stats": ["X", "df"], "train": ["features", "labels", "stats"],
    }
    assert app.executor("train").outputs == ["model"]
    assert "mlflow.log_metric(\"accuracy\", acc)" in app.executor("train").source
    assert app.messages == []


def test_parameterised():
    app = parse_notebook(EXAMPLES / "parameterised.ipynb")
    assert app.parameters == {"n_rows": 50, "learning_rate": 0.1, "label": "demo"}
    assert app.parameters_cell == 2
    assert [e.name for e in app.executors] == ["make_data", "report"]
    assert app.messages == []


def test_failing_step():
    app = parse_notebook(EXAMPLES / "failing_step.ipynb")
    assert [e.name for e in app.executors] == ["prepare", "explode", "after_explode", "independent"]
    assert 'raise ValueError("this step fails on purpose")' in app.executor("explode").source
    assert app.executor("after_explode").inputs == ["doubled"]
    raw = json.loads((EXAMPLES / "failing_step.ipynb").read_text())
    explode_cell = raw["cells"][app.executor("explode").cell]
    assert explode_cell["metadata"]["tags"] == ["raises-exception"]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.ipynb")), ids=lambda p: p.stem)
def test_example_notebooks_are_clean_nbformat(path: Path):
    nbformat = pytest.importorskip("nbformat")
    raw = json.loads(path.read_text(encoding="utf-8"))
    nbformat.validate(nbformat.from_dict(raw))
    assert (raw["nbformat"], raw["nbformat_minor"]) == (4, 5)
    assert raw["metadata"]["kernelspec"] == KERNELSPEC
    assert raw["metadata"]["language_info"]["name"] == "python"
    assert raw["cells"][0]["cell_type"] == "markdown"
    first_code = cell_source(raw["cells"][1]).splitlines()
    assert first_code[0] == "%load_ext scanflow_jupyter"
    assert first_code[1].startswith("%scanflow_app ")
    for cell in raw["cells"]:
        assert cell["id"]
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


# --- cells and magics ----------------------------------------------------------------------------


def test_all_executor_options():
    app = parse(
        "%%executor train --requires prep --inputs x y --outputs model --image python:3.11-slim "
        "--requirements 'scikit-learn==1.5' pandas --retries 2 --timeout 1.5 --cpu 500m --memory 2Gi "
        "--gpu 1 --no-cache  # trailing comment\nmodel = 1"
    )
    (ex,) = app.executors
    assert (ex.name, ex.cell, ex.source) == ("train", 0, "model = 1")
    assert ex.requires == ["prep"]
    assert (ex.inputs, ex.outputs) == (["x", "y"], ["model"])
    assert ex.image == "python:3.11-slim"
    assert ex.requirements == ["scikit-learn==1.5", "pandas"]
    assert (ex.retries, ex.timeout, ex.cache) == (2, 1.5, False)
    assert (ex.resources.cpu, ex.resources.memory, ex.resources.gpu) == ("500m", "2Gi", 1)


def test_executor_defaults():
    (ex,) = parse("%%executor a\nx = 1").executors
    assert (ex.requires, ex.inputs, ex.outputs, ex.requirements) == ([], [], [], [])
    assert (ex.image, ex.retries, ex.timeout, ex.cache) == (None, 0, None, True)
    assert (ex.resources.cpu, ex.resources.memory, ex.resources.gpu) == (None, None, None)


def test_source_as_list_of_lines():
    app = parse({"source": ["%%executor a --outputs x\n", "x = 1\n", "y = 2"]})
    assert app.executors[0].source == "x = 1\ny = 2"
    assert cell_source({"source": ["a\n", "b"]}) == "a\nb"
    assert cell_source({"source": "a"}) == "a"
    assert cell_source({}) == ""


def test_service_and_agent():
    app = parse(
        "%%service api --model models:/churn@champion --replicas 2\n",
        "%%agent watcher --template monitor\ndef sense():\n    return 1",
        "%%agent plain\npass",
    )
    (svc,) = app.services
    assert (svc.name, svc.cell, svc.model, svc.replicas, svc.source) == ("api", 0, "models:/churn@champion", 2, "")
    assert [(a.name, a.cell, a.template) for a in app.agents] == [("watcher", 1, "monitor"), ("plain", 2, None)]
    assert app.agents[0].source == "def sense():\n    return 1"


def test_setup_cells_in_order():
    app = parse("%%setup\nimport os", "%%executor a\nx = 1", "%%setup\nimport sys")
    assert [(b.cell, b.source) for b in app.setup] == [(0, "import os"), (2, "import sys")]


def test_app_name_and_team():
    app = parse("%load_ext scanflow_jupyter\n%scanflow_app shop --team data-science", "%%executor a\nx = 1")
    assert (app.name, app.team) == ("shop", "data-science")
    assert app.app_cell == 0
    assert app.ignored_cells == [0]


def test_app_cell_is_the_first_scanflow_app_cell():
    assert parse("%%executor a\nx = 1").app_cell is None
    app = parse("%%executor a\nx = 1", "%scanflow_app one", "%scanflow_app two")
    assert (app.name, app.app_cell) == ("one", 1)
    assert [(m.code, m.cell) for m in app.messages] == [("duplicate-app", 2)]
    # A %scanflow_app line that does not parse names nothing.
    assert parse('%scanflow_app "one', "%%executor a\nx = 1").app_cell is None


def test_app_name_defaults_to_notebook_stem():
    assert parse("%%executor a\nx = 1", path="/w/My Notebook (v2).ipynb").name == "my-notebook-v2"
    assert default_app_name("/w/2024 report.ipynb") == "app-2024-report"
    assert default_app_name("___.ipynb") == "app"
    assert default_app_name("Train_Model.ipynb") == "train_model"


def test_parameters_tag_and_params_magic():
    tagged = parse({"source": "n: int = 3\nm = [1, 2]\nd = {'a': None}\nt = -1.5\nok = True", "tags": ["parameters"]})
    assert tagged.parameters == {"n": 3, "m": [1, 2], "d": {"a": None}, "t": -1.5, "ok": True}
    assert tagged.parameters_cell == 0
    magic = parse("x = 1", "%%params\n# defaults\nn = 2\n%matplotlib inline")
    assert (magic.parameters, magic.parameters_cell) == ({"n": 2}, 1)
    both = parse({"source": "%%params\nn = 1", "tags": ["parameters"]})
    assert both.parameters == {"n": 1}
    assert both.messages == []


def test_empty_parameters_cell():
    app = parse({"source": "", "tags": ["parameters"]})
    assert (app.parameters, app.parameters_cell) == ({}, 0)


def test_non_scanflow_cells_are_ignored():
    app = parse(
        "%%timeit\nx = 1",
        "import os",
        "",
        {"cell_type": "markdown", "source": "%%executor not-me"},
        {"cell_type": "raw", "source": "%%executor nor-me"},
        "%%executor a\nx = 1",
    )
    assert [e.name for e in app.executors] == ["a"]
    assert app.ignored_cells == [0, 1]  # empty code cells are not listed
    assert app.messages == []


def test_line_magics_in_a_body_are_kept():
    (ex,) = parse("%%executor a\n%matplotlib inline\nx = 1\n!echo hi").executors
    assert ex.source == "%matplotlib inline\nx = 1\n!echo hi"


def test_kernel_metadata():
    app = parse("%%executor a\nx = 1", metadata={"kernelspec": {"name": "conda-env-py", "language": "python"}})
    assert (app.kernel_name, app.kernel_display_name, app.language) == ("conda-env-py", None, "python")
    assert app.messages == []
    no_lang = parse("%%executor a\nx = 1", metadata={"kernelspec": {"name": "python3"}})
    assert no_lang.language is None and no_lang.messages == []


def test_params_magic_line_numbers_count_the_magic_line():
    syntax = parse("%%params\nn = 1\nm = (", "%%executor a\nx = 1")
    assert [m.text for m in syntax.messages] == ["syntax error in the parameters cell, line 3: '(' was never closed."]
    statement = parse("%%params\nn = 1\nprint(n)", "%%executor a\nx = 1")
    assert [m.text for m in statement.messages] == ["line 3 of the parameters cell is not an assignment."]
    tagged = parse({"source": "n = 1\nprint(n)", "tags": ["parameters"]})
    assert [m.text for m in tagged.messages] == ["line 2 of the parameters cell is not an assignment."]


def test_parse_messages_are_collected_not_raised():
    app = parse("%%executor a --retries x\nx = 1", "%%exector b\ny = 1", "%%executor c\nz = 1")
    assert [(m.code, m.cell) for m in app.messages] == [("bad-arguments", 0), ("unknown-magic", 1)]
    assert [e.name for e in app.executors] == ["c"]


# --- helpers -----------------------------------------------------------------------------------


def test_strip_magic_lines_keeps_line_numbers_and_indent():
    src = "%time x = 1\nif x:\n    !ls\ny = 2"
    text = strip_magic_lines(src)  # IPython's translation (notebook.ipython_source.python_text)
    assert text.rstrip("\n").split("\n") == [
        "get_ipython().run_line_magic('time', 'x = 1')", "if x:", "    get_ipython().system('ls')", "y = 2"]
    ast.parse(text)


def test_parse_magic_line_directly():
    assert parse_magic_line("executor", "a --inputs x").args.inputs == ["x"]
    assert parse_magic_line("setup", "").magic == "setup"
    assert parse_magic_line("agent", "a --template planner").args.template == "planner"
    with pytest.raises(MagicArgError) as err:
        parse_magic_line("executor", "a --bogus")
    assert err.value.code == "unknown-option"
    assert err.value.text == "%%executor: unknown option --bogus."
    assert "--requires" in err.value.fix
    assert str(err.value) == f"{err.value.text} Fix: {err.value.fix}"


@pytest.mark.parametrize(
    ("magic", "line", "usage"),
    [
        ("executor", "", "%%executor NAME [--requires STEP ...] [--inputs VAR ...] [--outputs VAR ...] "
                         "[--image REF] [--requirements PKG ...] [--retries N] [--timeout SECONDS] [--cpu CPU] "
                         "[--memory MEMORY] [--gpu GPU] [--no-cache] [--deps PATH ...] [--metrics METRIC ...]"),
        ("service", "", "%%service NAME [--model URI] [--replicas N]"),
        ("agent", "", "%%agent NAME [--template TEMPLATE]"),
        ("scanflow_app", "", "%scanflow_app NAME [--team TEAM]"),
    ],
)
def test_usage_fix_names_the_magic_and_ends_with_a_period(magic, line, usage):
    with pytest.raises(MagicArgError) as err:
        parse_magic_line(magic, line)
    assert err.value.code == "bad-arguments"
    assert err.value.text.startswith(usage.split()[0] + ": ")
    assert err.value.fix == f"write it as {usage}."


@pytest.mark.parametrize(
    ("line", "outputs"),
    [
        ("a # a comment", []),
        ("a --outputs x # y z", ["x"]),
        ("a --outputs x #y", ["x"]),
        ("a --outputs x#y", ["x#y"]),
        ("a --outputs x# y", ["x#", "y"]),
        ("a --outputs 'x #y'", ["x #y"]),
    ],
)
def test_comment_starts_at_a_word_beginning_with_hash(line, outputs):
    args = parse_magic_line("executor", line).args
    assert (args.name, args.outputs) == ("a", outputs)


def test_repeated_list_options_accumulate():
    (ex,) = parse(
        "%%executor a --outputs x --outputs y --requires p --inputs i --requires q --inputs j k "
        "--requirements pandas --requirements numpy\nx = 1\ny = 2"
    ).executors
    assert ex.outputs == ["x", "y"]
    assert ex.requires == ["p", "q"]
    assert ex.inputs == ["i", "j", "k"]
    assert ex.requirements == ["pandas", "numpy"]


def test_repeated_scalar_option_keeps_the_last_value():
    assert parse_magic_line("executor", "a --retries 1 --retries 2").args.retries == 2


@pytest.mark.parametrize("option", ["--re", "--req", "--require", "--out", "--no", "--time", "--mem"])
def test_abbreviated_options_are_unknown(option):
    with pytest.raises(MagicArgError) as err:
        parse_magic_line("executor", f"a {option} 1")
    assert err.value.code == "unknown-option"
    assert err.value.text == f"%%executor: unknown option {option}."


def test_abbreviations_are_disabled_for_every_magic():
    for magic, line in (("service", "s --rep 2"), ("agent", "w --temp monitor"), ("scanflow_app", "app --te t")):
        with pytest.raises(MagicArgError) as err:
            parse_magic_line(magic, line)
        assert err.value.code == "unknown-option"


def test_option_equals_value_still_works():
    args = parse_magic_line("executor", "a --inputs=x --retries=2").args
    assert (args.inputs, args.retries) == (["x"], 2)


@pytest.mark.parametrize("value", ["inf", "Infinity", "nan", "0", "-5", "1e400"])
def test_timeout_must_be_finite_and_positive(value):
    with pytest.raises(MagicArgError) as err:
        parse_magic_line("executor", f"a --timeout {value}")
    assert err.value.code == "bad-arguments"
    assert err.value.text == f"%%executor: argument --timeout: must be a finite positive number of seconds, got {value}."


@pytest.mark.parametrize(("value", "seconds"), [("1", 1.0), ("0.5", 0.5), ("1e3", 1000.0)])
def test_valid_timeout(value, seconds):
    assert parse_magic_line("executor", f"a --timeout {value}").args.timeout == seconds


@pytest.mark.parametrize(
    ("option", "value", "kind"),
    [("--retries", "abc", "whole-number"), ("--gpu", "1.5", "whole-number"), ("--timeout", "soon", "number-of-seconds")],
)
def test_type_names_in_messages(option, value, kind):
    with pytest.raises(MagicArgError) as err:
        parse_magic_line("executor", f"a {option} {value}")
    assert err.value.text == f"%%executor: argument {option}: invalid {kind} value: '{value}'."
    with pytest.raises(MagicArgError) as err:
        parse_magic_line("service", f"s --replicas {value}")
    assert err.value.text == f"%%service: argument --replicas: invalid whole-number value: '{value}'."


@pytest.mark.parametrize(("magic", "prog"), [("executor", "%%executor"), ("scanflow_app", "%scanflow_app")])
def test_quoting_error_is_lower_case(magic, prog):
    with pytest.raises(MagicArgError) as err:
        parse_magic_line(magic, "a 'b")
    assert (err.value.code, err.value.text, err.value.fix) == ("bad-quoting", f"{prog}: no closing quotation.", "close the quote.")


def test_read_notebook_json_errors(tmp_path):
    with pytest.raises(NotebookReadError) as err:
        read_notebook_json(tmp_path / "nope.ipynb")
    assert err.value.message.code == "notebook-not-found"
    assert str(err.value) == str(err.value.message)
    bad = tmp_path / "bad.ipynb"
    bad.write_bytes(b"\xff\xfe{")
    with pytest.raises(NotebookReadError) as err:
        read_notebook_json(bad)
    assert err.value.message.code == "not-a-notebook"


def test_nbformat_missing_is_read_as_4(tmp_path):
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps({"cells": [], "metadata": {"kernelspec": KERNELSPEC}}))
    assert parse_notebook(path).cell_count == 0


def test_real_nbformat3_file_is_reported_as_old_nbformat():
    path = ROOT / "tests" / "bad_inputs" / "cases" / "nbformat3.ipynb"
    with pytest.raises(NotebookReadError) as err:
        parse_notebook(path)
    assert err.value.message.code == "old-nbformat"
    assert err.value.message.text == "nbformat3.ipynb declares nbformat 3; the whole number 4 is required."


@pytest.mark.parametrize("version", ["4", 4.0, None])
def test_nbformat_of_the_wrong_type_gives_a_message(tmp_path, version):
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps({"cells": [], "metadata": {"kernelspec": KERNELSPEC}, "nbformat": version}))
    with pytest.raises(NotebookReadError) as err:  # a message, not a TypeError
        parse_notebook(path)
    assert err.value.message.code == "old-nbformat"


def test_directory_path_gives_a_message(tmp_path):
    folder = tmp_path / "folder.ipynb"
    folder.mkdir()
    with pytest.raises(NotebookReadError) as err:
        parse_notebook(folder)
    assert err.value.message.code == "not-a-notebook"
    assert err.value.message.text == f"{folder.resolve()} is not a file."


# --- known problems (strict xfail: they turn red once fixed, so the expectation gets updated) ----


def test_nbformat_as_string_message_does_not_contradict_itself(tmp_path):
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps({"cells": [], "metadata": {"kernelspec": KERNELSPEC}, "nbformat": "4"}))
    with pytest.raises(NotebookReadError) as err:
        parse_notebook(path)
    assert "declares nbformat '4'" in err.value.message.text


@pytest.mark.xfail(strict=True, raises=MagicArgError, reason="magic_args.py runs shlex.split before dropping the comment: an apostrophe in a "
                                       "trailing comment (# don't cache) is reported as bad-quoting")
def test_apostrophe_in_a_comment_is_ignored():
    assert parse_magic_line("executor", "a --outputs x  # don't cache this").args.outputs == ["x"]


def test_usage_fix_shows_the_name_first():
    with pytest.raises(MagicArgError) as err:
        parse_magic_line("executor", "--inputs x train")
    assert err.value.fix.startswith("write it as %%executor NAME ")


# --- multi-cell steps ------------------------------------------------------------------------


def test_later_executor_cell_without_options_continues_the_step():
    app = parse(
        "%%executor clean --inputs raw --outputs df\ndf = raw.dropna()",
        {"cell_type": "markdown", "source": "## Outliers\nDrop the extreme rows."},
        "print('exploring')",
        "%%executor clean\ndf = df[df.x < 10]",
        {"cell_type": "markdown", "source": "after the step: not part of it"},
        "%%executor report --inputs df\nprint(df)",
    )
    assert app.messages == []
    clean = app.executor("clean")
    assert [e.name for e in app.executors] == ["clean", "report"]
    assert (clean.cell, clean.inputs, clean.outputs) == (0, ["raw"], ["df"])
    assert [(p.cell, p.kind) for p in clean.all_parts()] == [(0, "code"), (1, "markdown"), (3, "code")]
    assert clean.all_parts()[1].source == "## Outliers\nDrop the extreme rows."
    assert clean.source == "df = raw.dropna()\n\ndf = df[df.x < 10]"
    assert app.ignored_cells == [2]
    assert [(b.cell, b.source) for b in app.exploration] == [(2, "print('exploring')")]


def test_one_cell_step_has_no_parts():
    app = parse("%%executor a\nx = 1", "%%executor b\ny = 2")
    assert [e.parts for e in app.executors] == [[], []]
    assert [p.cell for p in app.executor("b").all_parts()] == [1]


def test_options_on_a_continuation_cell_name_both_cells():
    app = parse("x = 0", "%%executor train --outputs model\nmodel = 1", "%%executor train --retries 2\nmodel += 1")
    (msg,) = app.messages
    assert (msg.severity, msg.code, msg.cell) == ("error", "continuation-options", 2)
    assert "cell 3" in msg.text and "begins in cell 2" in msg.text
    assert "cell 2" in msg.fix and "`%%executor train`" in msg.fix
    assert app.executor("train").parts == []  # the bad cell is not taken in


def test_continuation_with_only_a_comment_counts_as_no_options():
    app = parse("%%executor a --outputs x\nx = 1", "%%executor a  # more of a\nx += 1")
    assert app.messages == []
    assert len(app.executor("a").code_parts()) == 2
