"""Linear validation: the executor lookups are built once per application, not once per step.

Counts how often the O(n) index is built while validating, ordering and inspecting a long chain
(no timing): a return to a per-step scan of all executors makes these counts grow with the chain.
"""

from __future__ import annotations

import pytest

from scanflow_jupyter import model
from scanflow_jupyter.model import Application, Executor, Pipeline
from scanflow_jupyter.notebook.parser import parse_notebook_dict
from scanflow_jupyter.notebook.validate import validate
from tests.benchmarks.notebooks import notebook

STEPS = 300


def _chain(steps: int) -> Application:
    cells: list = ["%load_ext scanflow_jupyter\n%scanflow_app chain"]
    for i in range(steps):
        io = f"--outputs x{i}" if i == 0 else f"--inputs x{i - 1} --outputs x{i}"
        cells.append(f"%%executor s{i} {io}\nx{i} = {'0' if i == 0 else f'x{i - 1}'} + 1")
    return parse_notebook_dict(notebook(cells), "chain.ipynb")


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the size of every ProducerIndex built (instrumentation of the real class, not a mock)."""
    sizes: list[int] = []
    real_init = model.ProducerIndex.__init__

    def counting(self: model.ProducerIndex, executors: list[Executor]) -> None:
        sizes.append(len(executors))
        real_init(self, executors)

    monkeypatch.setattr(model.ProducerIndex, "__init__", counting)
    return sizes


def test_validate_and_pipeline_build_the_index_once(builds: list[int]) -> None:
    app = _chain(STEPS)
    builds.clear()  # parsing may look a continued step up; count from the parsed application on
    assert validate(app) == []
    order = list(Pipeline.from_application(app).steps)
    for ex in app.executors:
        app.dependencies(ex)
        app.producers()
    assert order == [f"s{i}" for i in range(STEPS)]
    assert builds == [STEPS]


def test_index_is_rebuilt_when_executors_change(builds: list[int]) -> None:
    app = _chain(3)
    builds.clear()
    assert app.dependencies(app.executor("s2")) == ["s1"]
    app.executors.append(Executor("s3", cell=99, source="x3 = x2", inputs=["x2"], outputs=["x2"]))
    assert app.producer_above(app.executors[-1], "x2") == "s2"
    app.executors = app.executors[:2]
    with pytest.raises(KeyError):
        app.executor("s2")
    app.executors[1].outputs.append("y")
    app.invalidate_index()
    assert app.producers()["y"] == ["s1"]
    assert builds == [3, 4, 2, 2]


def _brute_above(app: Application, ex: Executor, var: str) -> str | None:
    """The definition the index replaces (a scan of every executor)."""
    above = [e for e in app.executors if e.name != ex.name and e.cell < ex.cell and var in e.outputs]
    return max(above, key=lambda e: e.cell).name if above else None


def test_producer_above_matches_the_scan_of_every_executor() -> None:
    # Refined variables, a duplicate name, two executors on one cell (invalid, but answered the same).
    execs = [Executor("a", 1, "", outputs=["v"]), Executor("b", 3, "", inputs=["v"], outputs=["v"]),
             Executor("c", 3, "", outputs=["v", "v"]), Executor("b", 5, "", outputs=["v"]),
             Executor("d", 7, "", inputs=["v"]), Executor("e", 0, "", inputs=["v"], outputs=["w"]),
             Executor("b", 9, "", inputs=["v", "w"])]
    app = Application("x", "x.ipynb", executors=execs)
    for ex in execs:
        for var in ("v", "w", "missing"):
            assert app.producer_above(ex, var) == _brute_above(app, ex, var), (ex, var)


def test_pipeline_order_is_level_by_level_in_declaration_order() -> None:
    execs = [Executor("late", 1, "", requires=["mid"]), Executor("root2", 2, ""), Executor("mid", 3, "", requires=["root1"]),
             Executor("root1", 4, ""), Executor("join", 5, "", requires=["late", "root2"])]
    order = list(Pipeline.from_application(Application("x", "x.ipynb", executors=execs)).steps)
    assert order == ["root2", "root1", "mid", "late", "join"]
    cyclic = Application("x", "x.ipynb", executors=[Executor("p", 1, "", requires=["q"]), Executor("q", 2, "", requires=["p"]),
                                                    Executor("r", 3, "")])
    with pytest.raises(ValueError, match="cycle among steps: p, q"):
        Pipeline.from_application(cyclic)
