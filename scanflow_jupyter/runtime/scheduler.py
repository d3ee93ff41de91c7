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

OK = ("succeeded", "cached")


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
    ) -> None:
        self.pipeline = pipeline
        self.selected = [s for s in pipeline.steps if s in selected]
        self.status: dict[str, str] = dict(settled)
        self.run_step = run_step
        self.max_parallel = max(1, max_parallel)
        self.on_queued = on_queued
        self.on_skipped = on_skipped
        self.on_progress = on_progress

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
                while ready and len(running) < self.max_parallel:
                    name = ready.pop(0)
                    pending.remove(name)
                    running[asyncio.ensure_future(self.run_step(name))] = name
                self.on_progress(len(pending) + len(running))
                if not running:
                    break
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
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
