"""DAG scheduling with bounded parallelism and failure isolation.

The scheduler knows nothing about kernels or MLflow: it starts `run_step(name)` for every
step whose dependencies succeeded, at most `max_parallel` at a time, skips the dependents of
a failed step (independent branches finish), and on cancellation reports unfinished steps
as killed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from scanflow_jupyter.model import Pipeline
from scanflow_jupyter.runtime.admission import CpuSampler, allows, default_cap, hint_for_admission

OK = ("succeeded", "cached")
SAMPLE_WINDOW = 0.3  # seconds between CPU samples while steps wait for adaptive admission


class Scheduler:
    """Runs the steps of `pipeline` named in `selected` (others must be settled already)."""

    def __init__(
        self,
        pipeline: Pipeline,
        selected: list[str],
        settled: dict[str, str],
        run_step: Callable[[str], Awaitable[str]],
        max_parallel: int,
        on_queued: Callable[[str], None] = lambda name: None,
        on_skipped: Callable[[str, str], None] = lambda name, reason: None,
        on_progress: Callable[[int], None] = lambda left: None,
        adaptive: bool = False,
    ) -> None:
        self.pipeline = pipeline
        self.selected = [s for s in pipeline.steps if s in selected]
        self.status: dict[str, str] = dict(settled)
        self.run_step = run_step
        self.max_parallel = max(1, max_parallel)
        self.on_queued = on_queued
        self.on_skipped = on_skipped
        self.on_progress = on_progress
        self.adaptive = adaptive  # max_parallel = cores; more while running steps wait (admission.py)
        self._cap = default_cap(self.max_parallel) if adaptive else self.max_parallel
        self._sampler = CpuSampler()
        self._started: set[str] = set()  # steps whose kernel runs their code (started() was called)

    def _deps(self, name: str) -> list[str]:
        return self.pipeline.steps[name].depends_on

    async def run(self) -> dict[str, str]:
        """Run to completion (or cancellation); returns the final status of every step."""
        pending = [s for s in self.selected if s not in self.status]
        for name in pending:
            self.on_queued(name)
        running: dict[asyncio.Task[str], str] = {}
        try:
            while pending or running:
                self._skip_blocked(pending)
                ready = [s for s in pending if all(self.status.get(d) in OK for d in self._deps(s))]
                busy = self._sample(running)
                while ready and self._admit(ready[0], running, busy):
                    name = ready.pop(0)
                    pending.remove(name)
                    running[asyncio.ensure_future(self.run_step(name))] = name
                self.on_progress(len(pending) + len(running))
                if not running:
                    break
                # adaptive and steps wait for admission: look again after a sample window
                timeout = SAMPLE_WINDOW if self.adaptive and ready and len(running) < self._cap else None
                done, _ = await asyncio.wait(running, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    name = running.pop(task)
                    self.status[name] = task.result()
        except asyncio.CancelledError:
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            for name in self.selected:
                if self.status.get(name) not in ("succeeded", "cached", "failed", "skipped"):
                    self.status[name] = "killed"
            raise
        return self.status

    def _hint(self, name: str) -> float:
        return hint_for_admission(self.pipeline.steps[name].executor.resources.cpu)

    def started(self, name: str | None) -> None:
        """The step's kernel started running it: sample afresh (its own CPU use now counts)."""
        if name:
            self._started.add(name)
            self._sampler.reset()

    def _sample(self, running: dict[asyncio.Task[str], str]) -> float | None:
        """Cores the running steps used over the last window (adaptive, at the CPU count, all started)."""
        if not self.adaptive or len(running) < self.max_parallel:
            return None
        if not all(name in self._started for name in running.values()):
            self._sampler.reset()
            return None
        return self._sampler.sample()

    def _admit(self, name: str, running: dict[asyncio.Task[str], str], busy: float | None) -> bool:
        """Whether `name` may start now (one sample decides a whole batch beyond the CPU count)."""
        if not self.adaptive:
            return len(running) < self.max_parallel
        hints = sum(self._hint(n) for n in running.values())
        return allows(len(running), self.max_parallel, self._cap, busy, hints, self._hint(name),
                      idle_cores=self._sampler.idle)

    def _skip_blocked(self, pending: list[str]) -> None:
        """Mark as skipped every pending step that depends on a failed/skipped/killed step."""
        changed = True
        while changed:
            changed = False
            for name in list(pending):
                bad = [d for d in self._deps(name) if self.status.get(d) in ("failed", "skipped", "killed")]
                if bad:
                    pending.remove(name)
                    self.status[name] = "skipped"
                    self.on_skipped(name, bad[0])
                    changed = True
