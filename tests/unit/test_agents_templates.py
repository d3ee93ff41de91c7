"""Built-in actions of the templates: the KS drift test (promotion and summaries, which need an
MLflow store, are in tests/integration/test_agents_promotion.py)."""

from __future__ import annotations

import numpy as np
import pytest

from scanflow_jupyter.agents.templates import (
    BUILTIN_ACTUATORS,
    ActionError,
    builtin_actuators,
    drift_test,
)


def test_every_template_has_one_builtin():
    assert set(BUILTIN_ACTUATORS) == {"monitor", "analyzer", "planner", "executor"}
    assert list(builtin_actuators("planner")) == ["run_pipeline"]
    assert builtin_actuators(None) == {}


def test_drift_found_on_the_shifted_feature_only():
    rng = np.random.default_rng(0)
    reference = {"age": rng.normal(40, 5, 500), "income": rng.normal(3, 1, 500)}
    current = {"age": rng.normal(40, 5, 500), "income": rng.normal(4, 1, 500)}
    result = drift_test(reference, current, threshold=0.01)
    assert result["drift"] is True and result["drifted"] == ["income"]
    assert result["features"]["age"]["p_value"] > 0.01
    assert result["features"]["income"]["statistic"] > 0.2


def test_drift_inputs_dataframe_records_and_arrays():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(1)
    a = rng.normal(size=(300, 2))
    b = rng.normal(size=(300, 2))
    frame = drift_test(pd.DataFrame(a, columns=["x", "y"]), pd.DataFrame(b, columns=["x", "y"]))
    assert set(frame["features"]) == {"x", "y"} and frame["drift"] is False
    arrays = drift_test(a, b + [0, 3])
    assert arrays["drifted"] == ["1"]
    records = drift_test([{"x": 1.0, "tag": "a"}] * 20, [{"x": 1.0, "tag": "b"}] * 20)
    assert records["skipped"] == ["tag"] and records["drift"] is False


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"reference": {"x": [1, 2]}, "current": {"y": [1, 2]}}, "share no feature"),
    ({"reference": {"x": [1, 2]}, "current": {"x": [1, 2]}, "features": ["z"]}, "missing"),
    ({"reference": {"x": [1, 2]}, "current": {"x": [1, 2]}, "threshold": 5}, "p-value between 0 and 1"),
])
def test_drift_errors(kwargs, match):
    with pytest.raises(ActionError, match=match):
        drift_test(**kwargs)


def test_run_pipeline_notebooks_stay_in_the_project_or_the_allow_list(tmp_path):
    from scanflow_jupyter.agents.templates import NotebookNotAllowed, check_notebook_allowed

    root = tmp_path / "project"
    (root / "sub").mkdir(parents=True)
    outside = tmp_path / "outside"
    (outside / "shared").mkdir(parents=True)
    (root / "link.ipynb").symlink_to(outside / "evil.ipynb")
    (root / "linked-dir").symlink_to(outside)

    def check(notebook, allow=()):
        return check_notebook_allowed(notebook, base_dir=root / "sub", root=root, allow=allow)

    assert check("train.ipynb") == root / "sub" / "train.ipynb"
    assert check("../train.ipynb") == root / "train.ipynb"
    assert check(root / "x.ipynb") == root / "x.ipynb"
    for attack in ("/tmp/evil.ipynb", str(outside / "evil.ipynb"), "../../outside/evil.ipynb", "../link.ipynb",
                   "../linked-dir/evil.ipynb", str(root) + "/../outside/evil.ipynb", "~/evil.ipynb"):
        with pytest.raises(NotebookNotAllowed, match="outside the project root") as err:
            check(attack)
        assert isinstance(err.value, PermissionError) and "allow_notebooks = [" in str(err.value)
    assert check("../../outside/evil.ipynb", allow=["../../outside/evil.ipynb"]) == outside / "evil.ipynb"
    assert check(str(outside / "shared" / "a.ipynb"), allow=[str(outside / "shared")]) == outside / "shared" / "a.ipynb"
    with pytest.raises(NotebookNotAllowed):  # a file entry allows that file only
        check(str(outside / "other.ipynb"), allow=[str(outside / "evil.ipynb")])
    with pytest.raises(NotebookNotAllowed):  # a folder that is not there allows nothing under it
        check(str(outside / "gone" / "a.ipynb"), allow=[str(outside / "gone")])
