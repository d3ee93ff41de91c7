"""Request schemas of services: pydantic annotations of custom cells, MLflow scoring payloads."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from scanflow_jupyter.services.schema import (
    PayloadError,
    custom_adapter,
    jsonable,
    parse_custom,
    parse_mlflow,
)


class Row(BaseModel):
    age: int


def test_custom_annotation_is_the_schema_and_errors_name_the_field() -> None:
    def predict(inputs: list[Row]) -> Any:
        return inputs

    adapter = custom_adapter(predict)
    assert parse_custom(adapter, {"inputs": [{"age": "3"}]}) == [Row(age=3)]
    with pytest.raises(PayloadError) as err:
        parse_custom(adapter, {"inputs": [{"age": 1}, {"age": "x"}]})
    assert err.value.status == 422
    assert [f["field"] for f in err.value.fields] == ["inputs.1.age"]
    with pytest.raises(PayloadError) as err:
        parse_custom(adapter, [1, 2])
    assert err.value.fields == [{"field": "inputs", "message": "field required"}]


def test_no_annotation_accepts_any_json() -> None:
    def predict(inputs):  # noqa: ANN001, ANN202 - the point of the test
        return inputs

    assert parse_custom(custom_adapter(predict), {"inputs": {"any": [1, "x", None]}}) == {"any": [1, "x", None]}


def test_mlflow_payload_needs_exactly_one_format() -> None:
    pytest.importorskip("mlflow")
    with pytest.raises(PayloadError) as err:
        parse_mlflow({"inputs": [1], "instances": [1]}, None)
    assert {f["field"] for f in err.value.fields} == {"inputs", "instances"}
    with pytest.raises(PayloadError, match="exactly one of"):
        parse_mlflow({}, None)
    with pytest.raises(PayloadError, match="JSON object"):
        parse_mlflow([1, 2], None)
    data, params = parse_mlflow({"dataframe_split": {"columns": ["a"], "data": [[1], [2]]}, "params": {"k": 1}}, None)
    assert list(data["a"]) == [1, 2] and params == {"k": 1}


def test_jsonable_numpy_and_pandas() -> None:
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    assert jsonable({"a": np.array([1, 2]), "b": np.float32(0.5)}) == {"a": [1, 2], "b": 0.5}
    assert jsonable(pd.DataFrame({"x": [1, 2]})) == [{"x": 1}, {"x": 2}]


def test_an_annotation_that_does_not_resolve_is_named() -> None:
    def predict(inputs: list[Missing]) -> Any:  # noqa: F821 - the point of the test (a string under __future__)
        return inputs

    with pytest.raises(TypeError, match="of predict's parameter 'inputs' does not resolve"):
        custom_adapter(predict)
