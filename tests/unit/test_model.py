"""The application model: JSON round trip, dependencies and the pipeline DAG."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scanflow_jupyter.model import (
    Agent,
    Application,
    CodeBlock,
    Executor,
    Message,
    Part,
    Pipeline,
    Resources,
    Service,
)
from scanflow_jupyter.notebook.parser import parse_notebook

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def ex(name: str, requires=(), inputs=(), outputs=(), cell: int = 0) -> Executor:
    return Executor(name, cell, "pass", requires=list(requires), inputs=list(inputs), outputs=list(outputs))


def app_of(*executors: Executor) -> Application:
    """An application with the executors in this order (cells numbered by position, as in a notebook)."""
    for index, executor in enumerate(executors):
        executor.cell = executor.cell or index
    return Application(name="demo", notebook="demo.ipynb", executors=list(executors))


def json_round_trip(app: Application) -> Application:
    return Application.from_dict(json.loads(json.dumps(app.to_dict())))


# --- JSON round trip -------------------------------------------------------------------------


def test_round_trip_of_a_full_application():
    app = Application(
        name="shop",
        notebook="/work/shop.ipynb",
        team="data-science",
        kernel_name="python3",
        kernel_display_name="Python 3",
        language="python",
        setup=[CodeBlock(1, "import numpy as np"), CodeBlock(3, "def f():\n    return 1")],
        parameters={"n": 3, "rate": 0.5, "label": "x", "flags": [True, False, None], "cfg": {"a": [1, 2]}},
        parameters_cell=2,
        app_cell=0,
        executors=[
            Executor("load", 4, "x = 1", outputs=["x"], image="python:3.11-slim",
                     requirements=["pandas>=2"], retries=2, timeout=30.5,
                     resources=Resources(cpu="500m", memory="1Gi", gpu=1), cache=False),
            Executor("train", 5, "y = x", requires=["load"], inputs=["x"], outputs=["y"]),
        ],
        services=[Service("api", 6, "def predict(i):\n    return i", model="models:/m@champion", replicas=3)],
        agents=[Agent("watch", 7, "pass", template="monitor")],
        ignored_cells=[0, 8],
        messages=[Message("warning", "empty-executor", "text.", "fix.", 4), Message("error", "x", "t.", "f.")],
        cell_count=9,
    )
    back = json_round_trip(app)
    assert back == app
    assert isinstance(back.executors[0].resources, Resources)
    assert isinstance(back.setup[0], CodeBlock)
    assert isinstance(back.services[0], Service) and isinstance(back.agents[0], Agent)
    assert isinstance(back.messages[0], Message)


def test_round_trip_of_defaults():
    app = Application(name="a", notebook="a.ipynb")
    assert app.app_cell is None
    assert json_round_trip(app) == app
    assert Application.from_dict({"name": "a", "notebook": "a.ipynb"}) == app


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_round_trip_of_example_notebooks(notebook: Path):
    app = parse_notebook(notebook)
    assert json_round_trip(app) == app


def test_from_dict_does_not_mutate_its_input():
    data = app_of(ex("a", outputs=["x"])).to_dict()
    snapshot = json.dumps(data, sort_keys=True)
    Application.from_dict(data)
    assert json.dumps(data, sort_keys=True) == snapshot


def test_message_str():
    assert str(Message("error", "c", "it broke.", "fix it.", 3)) == "error: cell 4: it broke. Fix: fix it."  # index 3, shown 1-based
    assert str(Message("warning", "c", "hm.", "look.")) == "warning: notebook: hm. Fix: look."


# --- dependencies ------------------------------------------------------------------------------


def test_dependencies_are_requires_then_producers():
    app = app_of(
        ex("a", outputs=["x"]),
        ex("b", outputs=["y", "z"]),
        ex("c"),
        ex("d", requires=["c", "a"], inputs=["y", "x", "z"]),
    )
    # --requires first (as written), then each input's producer, without repeats.
    assert app.dependencies(app.executor("d")) == ["c", "a", "b"]
    assert set(app.dependencies(app.executor("d"))) == set(app.executor("d").requires) | {
        p for var in app.executor("d").inputs for p in app.producers()[var]
    }


def test_dependencies_ignore_own_outputs_and_unknown_inputs():
    app = app_of(ex("a", inputs=["x", "nobody"], outputs=["x"]))
    assert app.dependencies(app.executor("a")) == []


def test_dependencies_ignore_self_and_repeats():
    app = app_of(ex("a", outputs=["x"]), ex("b", requires=["b", "a", "a"], inputs=["x", "x"]))
    assert app.dependencies(app.executor("b")) == ["a"]


def test_dependencies_with_two_producers_take_the_nearest_above():
    # a refined variable: each consumer reads the version of the last producer above it
    app = app_of(ex("a", outputs=["x"]), ex("b", inputs=["x"], outputs=["x"]), ex("c", inputs=["x"]),
                 ex("d", inputs=["x"], outputs=["x"]))
    assert app.dependencies(app.executor("b")) == ["a"]
    assert app.dependencies(app.executor("c")) == ["b"]
    assert app.input_producers(app.executor("d")) == {"x": "b"}
    assert Pipeline.from_application(app).steps.keys() == {"a", "b", "c", "d"}


def test_input_produced_only_below_is_no_dependency():
    app = app_of(ex("a", inputs=["x"]), ex("b", outputs=["x"]))
    assert app.dependencies(app.executor("a")) == []
    assert app.producer_above(app.executor("a"), "x") is None


def test_parts_round_trip():
    app = app_of(Executor("a", 2, "x = 1\n\ny = x", parts=[Part(2, "x = 1"), Part(3, "# prose", "markdown"), Part(5, "y = x")]))
    back = json_round_trip(app)
    assert back == app
    assert [p.cell for p in back.executor("a").code_parts()] == [2, 5]
    assert Executor("b", 7, "pass").all_parts() == [Part(7, "pass")]


def test_producers_and_executor_lookup():
    app = app_of(ex("a", outputs=["x", "y"]), ex("b", outputs=["x"]))
    assert app.producers() == {"x": ["a", "b"], "y": ["a"]}
    # A repeated output counts its executor once.
    assert app_of(ex("a", outputs=["x", "x"])).producers() == {"x": ["a"]}
    assert app.executor("b").name == "b"
    with pytest.raises(KeyError):
        app.executor("nope")


# --- pipeline ---------------------------------------------------------------------------------


def diamond() -> Application:
    return app_of(
        ex("load", outputs=["X", "df"]),
        ex("features", inputs=["X", "df"], outputs=["features"]),
        ex("stats", inputs=["X", "df"], outputs=["stats"]),
        ex("train", inputs=["features", "stats"], outputs=["model"]),
        ex("report", requires=["train"]),
        ex("lonely"),
    )


def _is_topological(pipeline: Pipeline) -> bool:
    order = list(pipeline.steps)
    return all(order.index(d) < order.index(s.name) for s in pipeline.steps.values() for d in s.depends_on)


def test_pipeline_topological_order():
    pipeline = Pipeline.from_application(diamond())
    assert pipeline.app == "demo"
    # Wave by wave, declaration order inside a wave.
    assert list(pipeline.steps) == ["load", "lonely", "features", "stats", "train", "report"]
    assert _is_topological(pipeline)
    assert pipeline.steps["train"].depends_on == ["features", "stats"]
    assert pipeline.steps["train"].executor.name == "train"


def test_pipeline_order_does_not_depend_on_declaration_order():
    app = diamond()
    app.executors.reverse()
    pipeline = Pipeline.from_application(app)
    assert _is_topological(pipeline)
    assert list(pipeline.steps)[0] in {"load", "lonely"}
    assert list(pipeline.steps)[-1] == "report"


def test_pipeline_of_example_notebooks():
    pipeline = Pipeline.from_application(parse_notebook(ROOT / "notebooks" / "diamond.ipynb"))
    assert list(pipeline.steps) == ["load", "features", "stats", "train"]
    chain = Pipeline.from_application(parse_notebook(ROOT / "notebooks" / "linear_chain.ipynb"))
    assert list(chain.steps) == ["extract", "transform", "report"]
    failing = Pipeline.from_application(parse_notebook(ROOT / "notebooks" / "failing_step.ipynb"))
    assert failing.downstream("explode") == {"after_explode"}
    assert failing.upstream(["independent"]) == set()


def test_upstream_and_downstream():
    pipeline = Pipeline.from_application(diamond())
    assert pipeline.dependents("load") == ["features", "stats"]
    assert pipeline.downstream("load") == {"features", "stats", "train", "report"}
    assert pipeline.downstream("features") == {"train", "report"}
    assert pipeline.downstream("report") == set()
    assert pipeline.upstream(["train"]) == {"load", "features", "stats"}
    assert pipeline.upstream(["report"]) == {"load", "features", "stats", "train"}
    assert pipeline.upstream(["load", "lonely"]) == set()
    # The names themselves are excluded, even when one is upstream of another.
    assert pipeline.upstream(["features", "train"]) == {"load", "stats"}


def test_empty_pipeline():
    pipeline = Pipeline.from_application(app_of())
    assert pipeline.steps == {}


@pytest.mark.parametrize(
    "executors",
    [
        [ex("a", requires=["b"]), ex("b", requires=["a"])],
        [ex("a", requires=["b"], outputs=["x"]), ex("b", inputs=["x"])],
        [ex("a", requires=["b"]), ex("b", requires=["c"]), ex("c", requires=["a"])],
    ],
    ids=["requires", "data", "three"],
)
def test_pipeline_rejects_cycles(executors):
    with pytest.raises(ValueError, match="^cycle among steps: "):
        Pipeline.from_application(app_of(*executors))


def test_pipeline_ignores_self_dependency():
    # validate() reports "self-dependency"; the DAG builder does not treat it as a cycle.
    pipeline = Pipeline.from_application(app_of(ex("a", requires=["a"]), ex("b", requires=["a", "b"])))
    assert list(pipeline.steps) == ["a", "b"]
    assert pipeline.steps["a"].depends_on == []
    assert pipeline.steps["b"].depends_on == ["a"]


def test_pipeline_with_unknown_dependency_raises():
    # validate() reports "unknown-dependency" first; the DAG builder refuses and names the step.
    with pytest.raises(ValueError, match=r"^step a depends on unknown step\(s\): ghost$"):
        Pipeline.from_application(app_of(ex("a", requires=["ghost"])))
    with pytest.raises(ValueError, match=r"^step b depends on unknown step\(s\): x, y$"):
        Pipeline.from_application(app_of(ex("a"), ex("b", requires=["a", "x", "y"])))


def test_pipeline_with_unknown_input_producer_is_not_a_dependency():
    # An input nobody produces is a validation error, not an unknown step.
    pipeline = Pipeline.from_application(app_of(ex("a", inputs=["nobody"])))
    assert pipeline.steps["a"].depends_on == []
