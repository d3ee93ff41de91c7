"""Pipeline parameters: `-p` values parse as YAML (1.2 core rules), `-f` files, type checks."""

from __future__ import annotations

import math

import pytest

from scanflow_jupyter.params import (
    check_param_types,
    fits,
    load_params_file,
    parse_param_value,
    parse_params,
)


@pytest.mark.parametrize(("text", "value"), [
    ("[1,2]", [1, 2]),
    ("[1, 2.5, x]", [1, 2.5, "x"]),
    ("{a: 1, b: [x, 2]}", {"a": 1, "b": ["x", 2]}),
    ("5", 5),
    ("-5", -5),
    ("010", 10),  # YAML 1.2: decimal, not octal
    ("0x1f", 31),
    ("0.1", 0.1),
    ("1e-3", 0.001),  # YAML 1.1 (PyYAML's default) would give the string '1e-3'
    ("1.", 1.0),
    ("true", True),
    ("False", False),
    ("null", None),
    ("~", None),
    ("None", None),  # papermill's spelling
    ("abc", "abc"),
    ("on", "on"),  # YAML 1.1 would give True
    ("yes", "yes"),
    ("2024-01-01", "2024-01-01"),  # no timestamps
    ("1:30", "1:30"),  # no sexagesimal numbers
    ('"1"', "1"),
    ("'None'", "None"),
    ("", ""),
    ("#1", "#1"),  # a '#' on the command line is not a comment
    ("a #b", "a #b"),
    ("a: b: c", "a: b: c"),  # not YAML: the text itself
])
def test_values_parse_as_yaml(text, value):
    assert parse_param_value(text) == value
    assert type(parse_param_value(text)) is type(value)


def test_special_floats():
    assert parse_param_value(".inf") == math.inf
    assert parse_param_value("-.inf") == -math.inf
    assert math.isnan(parse_param_value(".nan"))


def test_parse_params_splits_on_the_first_equals_sign():
    assert parse_params(["b=[1,2]", "expr=a=b", "lr=1e-4"]) == {"b": [1, 2], "expr": "a=b", "lr": 0.0001}


@pytest.mark.parametrize("item", ["lr", "=1", "1x=2", "a b=1"])
def test_malformed_items_are_named(item):
    with pytest.raises(ValueError, match="-p expects KEY=VALUE") as err:
        parse_params([item])
    assert repr(item)[1:-1] in str(err.value)


def test_params_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("lr: 1e-3\nlayers: [64, 32]\nname: run 1\nopts: {a: on}\n", encoding="utf-8")
    assert load_params_file(path) == {"lr": 0.001, "layers": [64, 32], "name": "run 1", "opts": {"a": "on"}}
    path.write_text('{"lr": 0.5, "tag": "1"}', encoding="utf-8")  # JSON is YAML
    assert load_params_file(path) == {"lr": 0.5, "tag": "1"}
    path.write_text("", encoding="utf-8")
    assert load_params_file(path) == {}


@pytest.mark.parametrize(("text", "fragment"), [
    ("- 1\n- 2\n", "must be a mapping"),
    ("1 x: 2\n", "must be a mapping"),
    ("a: [1\n", "not valid YAML"),
])
def test_bad_params_files_say_what_is_wrong(tmp_path, text, fragment):
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=fragment):
        load_params_file(path)


def test_missing_params_file(tmp_path):
    with pytest.raises(ValueError, match="cannot read parameters file"):
        load_params_file(tmp_path / "absent.yaml")


@pytest.mark.parametrize(("default", "value", "ok"), [
    (0.1, 1, True),  # int -> float is fine
    (0.1, 2.5, True),
    (0.1, "abc", False),
    (0.1, True, False),
    (0.1, None, False),
    (1, 2, True),
    (1, 1.5, False),
    (1, False, False),
    (True, False, True),
    (True, 1, False),
    ("x", "y", True),
    ("x", 1, False),  # a string parameter accepts only strings
    ("x", None, False),
    ([1], [2, 3], True),
    ([1], "a", False),
    ({"a": 1}, {"b": 2}, True),
    ({"a": 1}, [1], False),
    (None, "anything", True),
    (None, [1, {"a": None}], True),
])
def test_fits(default, value, ok):
    assert fits(default, value) is ok


def test_type_problems_name_parameter_type_and_value():
    problems = check_param_types({"lr": 0.1, "n": 5, "label": "demo", "free": None},
                                 {"lr": "abc", "n": 3, "label": 7, "free": [1], "unknown": 1})
    assert [p[0] for p in problems] == ["lr", "label"]
    (_, text, fix), (_, text2, fix2) = problems
    assert "'lr'" in text and "number" in text and "'abc'" in text and "string" in text
    assert "'label'" in text2 and "string" in text2 and "7" in text2
    assert "None" in fix and "quote" in fix2


def test_non_literal_parameter_fix_names_setup_below_the_parameters_cell():
    from scanflow_jupyter.notebook.parser import parse_notebook_dict

    app = parse_notebook_dict({"cells": [{"cell_type": "code", "metadata": {"tags": ["parameters"]},
                                          "source": "n = 4\nhalf = n / 2\nprint(n)"}],
                               "metadata": {"kernelspec": {"name": "python3"}}}, "/x/nb.ipynb")
    fixes = {m.text: m.fix for m in app.messages if m.code == "non-literal-parameter"}
    assert len(fixes) == 2, fixes
    for fix in fixes.values():
        assert "%%setup cell placed below the parameters cell" in fix, fix
    assert "`half = n / 2`" in fixes["parameter 'half' (line 2) is not a literal: n / 2."]
