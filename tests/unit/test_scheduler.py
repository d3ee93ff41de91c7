"""The DAG scheduler: bounded parallelism, failure isolation, cancellation."""

from __future__ import annotations

import asyncio

import pytest

from scanflow_jupyter.model import Application, Executor, Pipeline
from scanflow_jupyter.runtime.scheduler import Scheduler


def _pipeline(edges: dict[str, list[str]]) -> Pipeline:
    app = Application(name="t", notebook="t.ipynb")
    app.executors = [Executor(name=n, cell=i, source="", requires=deps) for i, (n, deps) in enumerate(edges.items())]
    return Pipeline.from_application(app)


def _run(pipeline: Pipeline, results: dict[str, str], max_parallel: int = 2, delay: float = 0.01):
    started: list[str] = []
    running = {"now": 0, "max": 0}
    skipped: list[tuple[str, str]] = []

    async def step(name: str) -> str:
        started.append(name)
        running["now"] += 1
        running["max"] = max(running["max"], running["now"])
        await asyncio.sleep(delay)
        running["now"] -= 1
        return results.get(name, "succeeded")

    sched = Scheduler(pipeline, list(pipeline.steps), {}, step, max_parallel,
                      on_skipped=lambda n, why: skipped.append((n, why)))
    status = asyncio.run(sched.run())
    return status, started, running["max"], skipped


def test_diamond_runs_in_dependency_order_and_in_parallel():
    p = _pipeline({"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]})
    status, started, peak, _ = _run(p, {})
    assert status == dict.fromkeys("abcd", "succeeded")
    assert started[0] == "a" and started[-1] == "d"
    assert peak == 2


def test_max_parallel_one_is_sequential():
    p = _pipeline({n: [] for n in "abcdef"})
    _, _, peak, _ = _run(p, {}, max_parallel=1)
    assert peak == 1


def test_failure_skips_dependents_but_independent_branch_finishes():
    p = _pipeline({"a": [], "b": ["a"], "c": ["b"], "x": [], "y": ["x"]})
    status, started, _, skipped = _run(p, {"a": "failed"})
    assert status["a"] == "failed"
    assert status["b"] == status["c"] == "skipped"
    assert status["x"] == status["y"] == "succeeded"
    assert "b" not in started and "c" not in started
    assert ("b", "a") in skipped and ("c", "b") in skipped


def test_cached_dependency_counts_as_success():
    p = _pipeline({"a": [], "b": ["a"]})
    status, _, _, _ = _run(p, {"a": "cached"})
    assert status == {"a": "cached", "b": "succeeded"}


def test_cancellation_marks_unfinished_steps_killed():
    p = _pipeline({"a": [], "b": ["a"]})

    async def main() -> dict[str, str]:
        async def step(name: str) -> str:
            await asyncio.sleep(30)
            return "succeeded"

        sched = Scheduler(p, list(p.steps), {}, step, 2)
        task = asyncio.ensure_future(sched.run())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return sched.status

    assert asyncio.run(main()) == {"a": "killed", "b": "killed"}
