"""validate(app): every finding at once; errors block a run, warnings do not.

The exact text of each error is pinned by tests/bad_inputs; these tests cover what is
*accepted*, the warnings, and how checks combine.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from scanflow_jupyter.model import Application, Executor, Message, Resources, Service
from scanflow_jupyter.notebook.parser import parse_notebook, parse_notebook_dict
from scanflow_jupyter.notebook.validate import NAME_RE, has_errors, validate

ROOT = Path(__file__).resolve().parents[2]
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def parse(*cells) -> Application:
    out = []
    for spec in cells:
        spec = {"source": spec} if isinstance(spec, str) else spec
        out.append({"cell_type": "code", "metadata": {"tags": spec.get("tags", [])}, "source": spec["source"]})
    nb = {"cells": out, "metadata": {"kernelspec": KERNELSPEC}, "nbformat": 4, "nbformat_minor": 5}
    return parse_notebook_dict(nb, "/work/demo.ipynb")


def codes(app: Application) -> list[tuple[str, str, int | None]]:
    return [(m.severity, m.code, m.cell) for m in validate(app)]


def with_executor(**kwargs) -> Application:
    return Application(name="demo", notebook="demo.ipynb", executors=[Executor("a", 0, "x = 1", **kwargs)])


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_example_notebooks_have_no_findings(path: Path):
    assert validate(parse_notebook(path)) == []


def test_has_errors():
    warning = Message("warning", "w", "t.", "f.")
    error = Message("error", "e", "t.", "f.")
    assert not has_errors([])
    assert not has_errors([warning, warning])
    assert has_errors([warning, error])


def test_validate_does_not_mutate_app_messages():
    app = parse("%%executor a --foo\nx = 1", "%%executor b --inputs nothing\ny = nothing")
    before = list(app.messages)
    first = validate(app)
    assert app.messages == before
    assert validate(app) == first


def test_parse_messages_come_first():
    app = parse("%%executor a --inputs ghost\nx = ghost", "%%executor b --retries -3\ny = 1")
    assert [m.code for m in validate(app)] == ["bad-arguments", "input-without-producer"]


@pytest.mark.parametrize(
    ("line", "code"),
    [
        ("%%executor a --foo 1", "unknown-option"),
        ("%%executor a --retries x", "bad-arguments"),
        ("%%executor", "bad-arguments"),
        ("%%executor a b", "unexpected-arguments"),
        ("%%executor 'a", "bad-quoting"),
        ("%%exector a", "unknown-magic"),
    ],
)
def test_broken_magic_line_is_not_also_no_executors(line, code):
    assert codes(parse(f"{line}\nx = 1")) == [("error", code, 0)]


def test_no_executors_without_a_broken_magic_line():
    assert codes(parse("x = 1", "%%setup\nimport os")) == [("error", "no-executors", None)]


def test_app_and_team_name_messages_point_at_the_scanflow_app_cell():
    app = parse("%%executor a\nx = 1", "%load_ext scanflow_jupyter\n%scanflow_app 9lives --team 'a b'")
    assert codes(app) == [("error", "bad-app-name", 1), ("error", "bad-team-name", 1)]
    msgs = validate(app)
    assert msgs[0].text == ("application name '9lives' is not valid (letters, digits, '-' and '_', starting with "
                            "a letter, at most 63).")
    assert msgs[1].text == ("team name 'a b' is not valid (letters, digits, '-' and '_', starting with a letter, "
                            "at most 63).")
    assert msgs[1].fix == "rename it, e.g. `%scanflow_app my-app --team data-science`."


def test_app_name_from_the_file_name_has_no_cell():
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "source": "%%executor a\nx = 1"}],
          "metadata": {"kernelspec": KERNELSPEC}}
    app = parse_notebook_dict(nb, "/work/" + "n" * 64 + ".ipynb")
    assert app.app_cell is None
    assert codes(app) == [("error", "bad-app-name", None)]


def test_services_or_agents_alone_are_something_to_run():
    assert codes(parse("%%service api --model models:/m/3")) == []
    assert codes(parse("%%agent watcher --template monitor\npass")) == []


def test_service_with_predict_function_needs_no_model():
    assert codes(parse("%%service api\nimport json\n\ndef predict(inputs):\n    return inputs")) == []


# --- accepted values --------------------------------------------------------------------------


@pytest.mark.parametrize("cpu", ["1", "2", "0.5", "250m", "1.25"])
def test_valid_cpu(cpu):
    assert not has_errors(validate(with_executor(resources=Resources(cpu=cpu))))


@pytest.mark.parametrize("cpu", ["0", "0.0", "0m", "-1", "1.5m", "two", "1 core", ""])
def test_invalid_cpu(cpu):
    assert [m.code for m in validate(with_executor(resources=Resources(cpu=cpu)))] == ["bad-quantity"]


@pytest.mark.parametrize("memory", ["512Mi", "2Gi", "1G", "1.5Gi", "128974848", "100k", "1Ti"])
def test_valid_memory(memory):
    assert not has_errors(validate(with_executor(resources=Resources(memory=memory))))


@pytest.mark.parametrize(
    ("memory", "fix"),
    [
        ("2GB", "write --memory 2Gi (binary units) or --memory 2G (decimal units)."),
        ("512mb", "write --memory 512Mi (binary units) or --memory 512M (decimal units)."),
        ("1.5GiB", "write --memory 1.5Gi (binary units) or --memory 1.5G (decimal units)."),
        ("4 TB", "write --memory 4Ti (binary units) or --memory 4T (decimal units)."),
        ("lots", "use Kubernetes units, e.g. --memory 512Mi or --memory 2Gi."),
        ("2 Gi", "use Kubernetes units, e.g. --memory 512Mi or --memory 2Gi."),
        ("Gi", "use Kubernetes units, e.g. --memory 512Mi or --memory 2Gi."),
    ],
)
def test_invalid_memory_with_hint(memory, fix):
    (msg,) = validate(with_executor(resources=Resources(memory=memory)))
    assert msg.code == "bad-quantity"
    assert msg.text == f"executor 'a': --memory '{memory}' is not a memory quantity."
    assert msg.fix == fix


@pytest.mark.parametrize("memory", ["2GB", "512mb", "1.5GiB", "4 TB"])
def test_memory_hint_suggests_valid_quantities(memory):
    (msg,) = validate(with_executor(resources=Resources(memory=memory)))
    for suggestion in re.findall(r"--memory (\S+)", msg.fix):
        assert not has_errors(validate(with_executor(resources=Resources(memory=suggestion.rstrip(".")))))


@pytest.mark.parametrize(
    "image",
    [
        "python:3.11-slim",
        "python",
        "ghcr.io/org/team/image:v1.2.3",
        "localhost:5000/my_image:latest",
        "registry.example.com/a/b@sha256:" + "a" * 64,
        "repo/name:tag@sha256:" + "0" * 64,
    ],
)
def test_valid_image(image):
    assert codes(with_executor(image=image)) == []


@pytest.mark.parametrize("image", ["Python:3.11", "python:", "-python", "a//b", "repo@sha256:abc", "name:tag with space"])
def test_invalid_image(image):
    assert [m.code for m in validate(with_executor(image=image))] == ["bad-image"]


@pytest.mark.parametrize("req", ["pandas", "pandas>=2", "scikit-learn==1.5.2", "torch[cuda]>=2; python_version>'3.9'",
                                 "pkg @ https://example.com/pkg-1.0.tar.gz"])
def test_valid_requirement(req):
    assert codes(with_executor(requirements=[req])) == []


@pytest.mark.parametrize("req", ["pandas>>2", "==1.0", "pandas 2", ""])
def test_invalid_requirement(req):
    (msg,) = validate(with_executor(requirements=[req]))
    assert msg.code == "bad-requirement"
    # Only the first line of the packaging error: no multi-line caret diagram in the message.
    assert "\n" not in msg.text
    assert msg.text.startswith(f"executor 'a': --requirements '{req}' is not a valid requirement (")
    assert msg.text.endswith(").")


@pytest.mark.parametrize("uri", ["models:/churn@champion", "models:/churn/3", "runs:/0a1b2c/model", "s3://bucket/model"])
def test_valid_model_uri(uri):
    app = Application(name="demo", notebook="demo.ipynb", services=[Service("api", 0, "", model=uri)])
    assert codes(app) == []


@pytest.mark.parametrize("uri", ["churn", "models:/churn", "models:/churn@", "runs:/XYZ/model", "models:/a/b/c"])
def test_invalid_model_uri(uri):
    app = Application(name="demo", notebook="demo.ipynb", services=[Service("api", 0, "", model=uri)])
    assert [m.code for m in validate(app)] == ["bad-model-uri"]


@pytest.mark.parametrize("name", ["a", "train", "train-model", "step_2", "A" + "b" * 62])
def test_valid_names(name):
    app = Application(name=name, notebook="x.ipynb", team=name, executors=[Executor(name, 0, "x = 1")])
    assert codes(app) == []


@pytest.mark.parametrize("name", ["", "2a", "-a", "a.b", "a b", "é", "a" * 64])
def test_invalid_names(name):
    app = Application(name=name, notebook="x.ipynb", team=name, executors=[Executor(name, 0, "x = 1")])
    found = {m.code for m in validate(app)}
    assert {"bad-app-name", "bad-team-name", "bad-name"} <= found


# --- data passing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "model = 1",
        "model: int = 1",
        "model, other = 1, 2",
        "for model in range(3):\n    pass",
        "with open('f') as model:\n    pass",
        "import sklearn as model",
        "from sklearn import model",
        "def model():\n    return 1",
        "class model:\n    pass",
        "if (model := 3):\n    pass",
        "try:\n    pass\nexcept Exception as model:\n    pass",
    ],
)
def test_output_counts_as_assigned(body):
    app = parse(f"%%executor a --outputs model\n{body}")
    assert not has_errors(validate(app))


def test_output_assigned_inside_time_or_shell_capture_is_seen():
    """`%time model = f()` and `files = !ls` assign (IPython runs them in the user's namespace)."""
    app = parse("%%executor a --outputs model files\n%time model = 1\nfiles = !ls")
    assert codes(app) == []


def test_output_assigned_only_inside_timeit_is_not_seen():
    """`%timeit` runs its statement in a function of its own: nothing is assigned."""
    app = parse("%%executor a --outputs model\n%timeit model = 1")
    assert ("error", "output-not-assigned", 0) in codes(app)


def test_requires_and_data_dependencies_combine():
    app = parse(
        "%%executor a --outputs x\nx = 1",
        "%%executor b --requires a --inputs x --outputs y\ny = x",
        "%%executor c --requires b\nz = 1",
    )
    assert codes(app) == []


def test_two_producers_without_consumer_is_fine():
    # Only a consumed variable needs exactly one producer (DESIGN §1.2).
    app = parse("%%executor a --outputs x\nx = 1", "%%executor b --outputs x\nx = 2")
    assert codes(app) == []


def test_each_cycle_is_reported_once():
    app = parse(
        "%%executor a --requires b c\nx = 1",
        "%%executor b --requires a\ny = 1",
        "%%executor c --requires a\nz = 1",
        "%%executor d --requires e\nw = 1",
        "%%executor e --requires d\nv = 1",
    )
    texts = [m.text for m in validate(app) if m.code == "cycle"]
    assert texts == [
        "the steps form a cycle: a -> b -> a.",
        "the steps form a cycle: a -> c -> a.",
        "the steps form a cycle: d -> e -> d.",
    ]


def test_cycle_message_and_fix():
    (msg,) = validate(parse("%%executor a --requires b\nx = 1", "%%executor b --requires a\ny = 1"))
    assert (msg.code, msg.cell) == ("cycle", 0)
    assert msg.text == "the steps form a cycle: a -> b -> a."
    assert msg.fix == ("remove one of these dependencies: a --requires entry or an --inputs/--outputs pair "
                       "between two of these steps.")


def test_self_dependency_is_not_also_a_cycle():
    assert codes(parse("%%executor a --requires a\nx = 1")) == [("error", "self-dependency", 0)]


def test_duplicate_name_names_the_first_cell():
    (msg,) = validate(parse("%%executor a\nx = 1", "%%setup\nimport os", "%%agent a\npass"))
    assert (msg.code, msg.cell) == ("duplicate-name", 2)
    assert msg.text == "the name 'a' is already used in cell 1."


@pytest.mark.parametrize(
    ("cell", "fix"),
    [
        ("# train\n%%executor a\nx = 1", "move the lines above %%executor below it: a cell magic must be the cell's first line."),
        ("#a\n\n  # b\n%%setup\nimport os", "move the lines above %%setup below it: a cell magic must be the cell's first line."),
        ("x = 1\n%%executor a\ny = 1", "split the cell so that %%executor starts a new cell."),
        ("%%executor a\nx = 1\n%%executor b", "split the cell so that %%executor starts a new cell."),
    ],
)
def test_misplaced_magic_fix(cell, fix):
    msgs = [m for m in validate(parse(cell, "%%executor ok\nz = 1")) if m.code == "magic-not-first-line"]
    assert [(m.cell, m.fix) for m in msgs] == [(0, fix)]


def test_did_you_mean_lists_known_executors_when_nothing_is_close():
    (msg,) = validate(parse("%%executor load\nx = 1", "%%executor train --requires zzz\ny = 1"))
    assert msg.fix == "fix the name in --requires; known executors: load."
    (msg,) = validate(parse("%%executor load\nx = 1", "%%executor train --requires lod\ny = 1"))
    assert msg.fix == "did you mean 'load'?"


def test_input_that_is_a_parameter_says_so():
    (msg,) = validate(parse({"source": "n = 1", "tags": ["parameters"]}, "%%executor a --inputs n\nx = n"))
    assert (msg.severity, msg.code, msg.cell) == ("error", "input-is-parameter", 1)
    assert msg.text == "executor 'a' lists pipeline parameter 'n' in --inputs."
    assert msg.fix == "remove 'n' from --inputs: parameters are available in every step."


def test_input_that_is_a_parameter_and_an_output_is_about_the_producer():
    # With a producer the input is real data; the clash is reported on the producer's output.
    app = parse({"source": "n = 1", "tags": ["parameters"]}, "%%executor a --outputs n\nn = 2",
                "%%executor b --inputs n\nx = n")
    assert codes(app) == [("error", "output-shadows-parameter", 1)]


def test_keyword_output_reports_only_bad_variable():
    assert [m.code for m in validate(parse("%%executor a --outputs class\ny = 1"))] == ["bad-variable"]


def test_params_magic_line_numbers_count_the_magic_line():
    (msg,) = validate(parse("%%params\nn = 1\nm = n * 2", "%%executor a\nx = 1"))
    assert msg.text == "parameter 'm' (line 3) is not a literal: n * 2."


def test_repeated_output_is_only_a_warning_for_consumers():
    app = parse("%%executor a --outputs x x\nx = 1", "%%executor b --inputs x\ny = x")
    assert codes(app) == [("warning", "duplicate-value", 0)]


def test_repeated_option_values_accumulate_into_one_list():
    app = parse("%%executor a --outputs x --outputs y\nx = 1\ny = 2", "%%executor b --inputs x --inputs y\nz = x + y")
    assert codes(app) == []
    assert app.executor("b").inputs == ["x", "y"]


# --- warnings ---------------------------------------------------------------------------------


def test_empty_executor_is_a_warning():
    assert codes(parse("%%executor a\n\n   \n")) == [("warning", "empty-executor", 0)]


def test_duplicate_values_are_a_warning():
    app = parse(
        "%%executor a --outputs x x\nx = 1",
        "%%executor c --outputs z\nz = 1",
        "%%executor b --requires a a --inputs z z\ny = z",
    )
    assert codes(app) == [("warning", "duplicate-value", 0), ("warning", "duplicate-value", 2),
                          ("warning", "duplicate-value", 2)]


def test_undefined_name_warning():
    app = parse("%%executor a\nx = 1\ny = missing + also_missing + missing")
    msgs = validate(app)
    assert [(m.severity, m.code) for m in msgs] == [("warning", "undefined-name")] * 2
    assert msgs[0].text == ("executor 'a' uses 'missing' (line 3 of the cell), which no %%setup cell, "
                            "parameter or --inputs provides.")
    assert not has_errors(msgs)


def test_names_from_setup_parameters_inputs_builtins_and_kernel_are_defined():
    app = parse(
        "%%setup\nimport numpy as np\ndef helper():\n    return 1",
        {"source": "n = 3", "tags": ["parameters"]},
        "%%executor a --outputs x\nx = 1",
        "%%executor b --inputs x\ny = np.zeros(n) + helper() + x + len([]) + sum(v for v in range(2))\ndisplay(y)",
    )
    assert codes(app) == []


def test_names_from_ignored_cells_are_not_available():
    app = parse("import os", "%%executor a\nprint(os.getcwd())")
    assert codes(app) == [("warning", "undefined-name", 1)]


# --- known bugs (strict xfail) ------------------------------------------------------------------


@pytest.mark.xfail(strict=True, reason="validate.py line 96 assumes the magic is line 1; blank lines above it shift the real line")
def test_syntax_error_line_after_blank_lines():
    msgs = validate(parse("\n\n%%executor a\nx = (\n"))
    (msg,) = [m for m in msgs if m.code == "syntax-error"]
    assert "line 4 of the cell" in msg.text


@pytest.mark.xfail(strict=True, reason="validate.py: a bad --inputs name is also reported as input-without-producer, "
                                       "whose fix (add `--outputs class`) suggests the same bad name")
def test_keyword_input_reports_only_bad_variable():
    assert [m.code for m in validate(parse("%%executor a --inputs class\ny = 1"))] == ["bad-variable"]


def test_memory_hint_for_kilobytes_suggests_valid_quantities():
    (msg,) = validate(with_executor(resources=Resources(memory="100kB")))
    for suggestion in re.findall(r"--memory (\S+)", msg.fix):
        assert not has_errors(validate(with_executor(resources=Resources(memory=suggestion.rstrip(".")))))


@pytest.mark.xfail(strict=True, reason="validate.py _slug does not shorten: a 64-character name gets the same "
                                       "64-character name as its suggested fix")
def test_bad_name_fix_suggests_a_valid_name():
    (msg,) = validate(parse("%%executor " + "a" * 64 + "\nx = 1"))
    suggestion = msg.fix.removeprefix("rename it, e.g. %%executor ").rstrip(".")
    assert NAME_RE.match(suggestion)


def test_did_you_mean_does_not_suggest_the_executor_itself():
    (msg,) = validate(parse("%%executor train --requires trian\nx = 1"))
    assert msg.code == "unknown-dependency"
    assert "'train'" not in msg.fix


@pytest.mark.xfail(strict=True, reason="validate.py: when the name comes from %scanflow_app, renaming the notebook "
                                       "file does not change it, yet the fix suggests it")
def test_bad_app_name_from_the_magic_does_not_suggest_renaming_the_file():
    (msg,) = [m for m in validate(parse("%scanflow_app 1app", "%%executor a\nx = 1")) if m.code == "bad-app-name"]
    assert "notebook file" not in msg.fix


# --- multi-cell steps and refined variables ---------------------------------------------------


def test_refined_variable_is_valid_and_has_no_phantom_cycle():
    app = parse(
        "%%executor load --outputs train_df\ntrain_df = [3, 1, None]",
        "%%executor clean --inputs train_df --outputs train_df\ntrain_df = [v for v in train_df if v is not None]",
        "%%executor feature --inputs train_df --outputs train_df\ntrain_df = sorted(train_df)",
        "%%executor report --inputs train_df\nprint(train_df)",
    )
    assert validate(app) == []
    assert [app.dependencies(e) for e in app.executors] == [[], ["load"], ["clean"], ["feature"]]


def test_input_produced_only_below_names_the_variable_and_the_cell():
    app = parse("x = 0", "%%executor report --inputs df\nprint(df)", "%%executor load --outputs df\ndf = 1")
    (msg,) = [m for m in validate(app) if m.severity == "error"]
    assert (msg.code, msg.cell) == ("input-produced-below", 1)
    assert "'df'" in msg.text and "'load'" in msg.text and "(cell 3)" in msg.text and "(cell 2)" in msg.text
    assert "cycle" not in {m.code for m in validate(app)}


def test_refiner_of_a_variable_produced_only_below_is_an_error_not_a_cycle():
    app = parse("%%executor a --inputs x --outputs x\nx = x + 1", "%%executor b --inputs x --outputs x\nx = x * 2")
    assert [(m.code, m.cell) for m in validate(app) if m.severity == "error"] == [("input-produced-below", 0)]


def test_syntax_error_in_a_continuation_part_is_reported_on_that_cell():
    app = parse("%%executor a --outputs x\nx = 1", "%%executor a\nx = (")
    (msg,) = [m for m in validate(app) if m.code == "syntax-error"]
    assert msg.cell == 1 and "line 2 of the cell" in msg.text


def test_outputs_may_be_assigned_in_any_part():
    app = parse("%%executor a --outputs model\ndata = 1", "%%executor a\nmodel = data + 1")
    assert validate(app) == []


def test_exploration_cell_feeding_a_later_part_is_a_warning():
    app = parse(
        "%%executor train --outputs model\nlr = 0.1\nmodel = lr",
        "lr = 0.5  # tried interactively",
        "%%executor train\nmodel = model * lr",
    )
    (msg,) = validate(app)
    assert (msg.severity, msg.code, msg.cell) == ("warning", "exploration-feeds-step", 1)
    assert "'lr'" in msg.text and "step 'train'" in msg.text and "cell 3" in msg.text
    assert "%%executor train" in msg.fix


def test_exploration_cell_is_fine_when_the_part_reassigns_or_it_is_outside_the_step():
    ok_reassigned = parse("%%executor a --outputs m\nm = 1", "lr = 0.5", "%%executor a\nlr = 0.2\nm = m * lr")
    ok_outside = parse("lr = 0.5", "%%executor a --outputs m\nlr = 1\nm = lr", "%%executor a\nm = m + 1", "m = 3")
    ok_refined_between = parse("%%executor a --outputs m\nm = 1", "lr = 0.5", "%%executor a\nlr = 2", "%%executor a\nm = m * lr")
    assert validate(ok_reassigned) == []
    assert validate(ok_outside) == []
    assert validate(ok_refined_between) == []


def test_exploration_warning_for_augmented_assignment_reads_first():
    app = parse("%%executor a --outputs m\nm = 1", "m = 10", "%%executor a\nm = m + 1")
    assert [m.code for m in validate(app)] == ["exploration-feeds-step"]


# --- IPython syntax in bodies (notebook.ipython_source) ----------------------------------------


def test_ipython_syntax_in_an_executor_body_is_accepted():
    """`!cmd`, `x = !cmd`, line magics, `obj?` and a `%%capture` first line: no syntax error, no warning."""
    app = parse(
        "%%executor a --outputs files took\n!echo hi\nfiles = !ls\n%time took = len(files)\nfiles?\n%matplotlib inline",
        "%%executor b --inputs files took --outputs report\n%%capture log\nreport = [f for f in files]\nprint(took)",
    )
    assert codes(app) == []


def test_a_name_assigned_by_a_magic_feeds_a_later_part_and_a_consumer():
    app = parse(
        "%%executor a --outputs listing\nlisting = !ls",
        "%%executor b --inputs listing --outputs n\n%time n = len(listing)",
        "%%executor c\nprint(n)",
    )
    assert ("warning", "undefined-name", 2) in codes(app)  # c reads n without --inputs: still seen as a read
    assert [m for m in codes(app) if m[2] in (0, 1)] == []


def test_syntax_error_after_a_magic_names_cell_and_line():
    app = parse("%%executor a\nfiles = !ls\nx = (1 +")
    [msg] = [m for m in validate(app) if m.code == "syntax-error"]
    assert msg.cell == 0 and "line 3 of the cell" in msg.text


def test_syntax_error_inside_a_capture_body_names_its_line():
    app = parse("%%executor a\n%%capture\nx = 1\ny = ]")
    [msg] = [m for m in validate(app) if m.code == "syntax-error"]
    assert "line 4 of the cell" in msg.text


def test_magic_lines_in_the_parameters_cell_are_not_parameters():
    app = parse({"source": "%config InlineBackend.figure_format = 'png'\nn = 3", "tags": ["parameters"]}, "%%executor a\nx = n")
    assert app.parameters == {"n": 3} and codes(app) == []
