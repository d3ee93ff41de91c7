"""The local backend: each step attempt runs in its own fresh kernel on this machine (nbclient).

Output notebooks are saved after every cell (a crash leaves what ran so far) and, on
failure, carry papermill's error banner pointing at the failing cell.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from pathlib import Path
from typing import Any

from scanflow_jupyter.redact import (
    process_secrets,
    redact_json,
    redact_outputs,
    tracking_environment,
)
from scanflow_jupyter.runtime.backends import Backend, StepJob, StepOutcome
from scanflow_jupyter.runtime.execute_step import _source_cell, _stream_text, failure
from scanflow_jupyter.runtime.execute_step import _write_atomic as _write_json_atomic
from scanflow_jupyter.runtime.figures import INLINE_BACKEND
from scanflow_jupyter.runtime.kernel_pool import Kernel, KernelPool

OUTPUT_EVERY_S = 0.25  # a step's output.ipynb is rewritten at most this often while it runs (and at its end)


def _load_nbclient() -> None:
    """Import what `_execute` needs (run in a thread by `prepare`), and build nbformat's output
    validator (compiling its JSON schema costs 0.3-0.6 s, which the first output message of the
    first step would otherwise wait for)."""
    import nbclient  # noqa: F401
    import nbformat.v4

    nbformat.v4.new_output("stream", name="stdout", text="")  # validates: builds and caches the validator


class LocalBackend(Backend):
    """Run steps in kernels started by a warm pool (zygote-forked unless in portable mode)."""

    name = "local"

    def __init__(self, app: Any, options: dict[str, Any] | None = None) -> None:
        super().__init__(app, options)
        self.pool: KernelPool | None = None
        self._running: dict[str, Kernel] = {}
        self.secrets: list[str] = []
        self._imports: asyncio.Future[None] | None = None

    async def prepare(self, steps_to_run: int) -> None:
        from scanflow_jupyter.runtime.fork_provisioner import start_shared_zygote

        if steps_to_run:  # none in portable mode (classic kernel start)
            start_shared_zygote()  # from this (the loop's) thread, if not yet: kernels die with the runner
        env = dict(os.environ)
        env["MPLBACKEND"] = INLINE_BACKEND  # figures reach output.ipynb, as in JupyterLab
        env["SCANFLOW_STEP"] = "1"
        uri = self.options.get("tracking_uri") or env.get("MLFLOW_TRACKING_URI")
        if uri:  # credentials reach the kernel only as environment, never in the step notebook
            env.update(tracking_environment(uri, env))
        self.secrets = process_secrets(env)
        cwd = str(Path(self.app.notebook).parent)
        warm = int(self.options.get("max_parallel") or 1) + 1
        preamble = []
        if os.environ.get("SCANFLOW_SETUP_AHEAD", "1") != "0" and self.app.executors:
            from scanflow_jupyter.notebook.compile import compile_step

            step_nb = compile_step(self.app, self.app.executors[0])
            # only the setup cells above the parameters cell: those below it read the run's parameters
            preamble = list(itertools.takewhile(lambda c: c["metadata"]["scanflow"]["role"] == "setup", step_nb["cells"]))
        self.pool = KernelPool(self.app.kernel_name or "python3", cwd, env, warm=warm, preamble=preamble)
        self.pool.expect(steps_to_run)
        if steps_to_run and self._imports is None:
            # nbclient imports nbformat -> jsonschema (1-2 s of CPU): load it in a thread while the
            # first kernel starts instead of blocking the event loop when the first step executes
            self._imports = asyncio.ensure_future(asyncio.to_thread(_load_nbclient))

    def expect(self, steps_left: int) -> None:
        if self.pool:
            self.pool.expect(steps_left)

    async def run_step(self, job: StepJob) -> StepOutcome:
        assert self.pool is not None, "prepare() was not called"
        started: list[int | None] = []

        def kernel_started(kernel: Kernel) -> None:
            # the step is running once its kernel is: the setup cells that run ahead in it (imports,
            # often seconds) are part of the step, so step_started does not wait for them
            started.append(kernel.pid)
            job.emit("step_started", kernel_pid=kernel.pid)

        kernel = await self.pool.acquire(on_started=kernel_started)
        self._running[job.step] = kernel
        if not started:
            job.emit("step_started", kernel_pid=kernel.pid)
        try:
            task = asyncio.ensure_future(self._execute(job, kernel))
            try:
                done, _ = await asyncio.wait({task}, timeout=job.timeout)
            except asyncio.CancelledError:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                raise
            if task in done:
                return task.result()
            # nbclient turns the cancellation into DeadKernelError: report the timeout instead
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return StepOutcome("failed", {
                "cell": None, "ename": "TimeoutError",
                "evalue": f"step '{job.step}' did not finish within --timeout {job.timeout:g} s; the kernel was stopped.",
                "traceback": [],
            })
        finally:
            self._running.pop(job.step, None)
            self.pool.discard_soon(kernel)

    async def _execute(self, job: StepJob, kernel: Kernel) -> StepOutcome:
        if self._imports is not None:
            await asyncio.shield(self._imports)
        import nbformat
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError, DeadKernelError

        nb = nbformat.from_dict(job.notebook)
        output_path = job.step_dir / "output.ipynb"
        log_path = job.step_dir / "log.txt"
        log = log_path.open("a", encoding="utf-8")
        log.write(f"--- attempt {job.attempt} ({time.strftime('%Y-%m-%d %H:%M:%S')}) ---\n")

        def cell_done(cell: Any, cell_index: int, **_: Any) -> None:
            redact_outputs(cell, self.secrets)
            text = _stream_text(cell.get("outputs", []))
            if text:
                log.write(text)
                log.flush()
                job.emit("step_log", text=text, cell=self._source_cell(cell))
            job.emit("step_cell", index=cell_index, cell=self._source_cell(cell),
                     role=cell.metadata.get("scanflow", {}).get("role"))
            if live["later"] is None:  # at most one write of the growing output.ipynb per OUTPUT_EVERY_S
                wait = OUTPUT_EVERY_S - (time.monotonic() - live["written"])
                live["later"] = loop.call_later(max(0.0, wait), write_live)

        loop = asyncio.get_running_loop()
        live: dict[str, Any] = {"later": None, "written": 0.0}

        def write_live() -> None:
            live["later"], live["written"] = None, time.monotonic()
            _write_json_atomic(output_path, nb)

        def flush_live() -> None:
            if live["later"] is not None:
                live["later"].cancel()
                write_live()

        client = NotebookClient(
            nb,
            km=kernel.km,
            timeout=None,
            allow_errors=False,
            record_timing=True,
            shutdown_kernel="immediate",
            resources={"metadata": {"path": str(Path(self.app.notebook).parent)}},
            on_cell_executed=cell_done,
        )
        client.kc = kernel.kc  # already connected and answering: skip nbclient's own handshake
        kernel.kc.allow_stdin = False
        done_ahead = {c["id"]: c for c in kernel.preamble or []}
        # No `async_setup_kernel()`: the kernel is ours and already connected, and that context
        # would replace the runner's SIGINT/SIGTERM handlers with nbclient's own.
        try:
            for index, cell in enumerate(nb.cells):
                ahead = done_ahead.get(cell.get("id"))
                if ahead is not None and ahead["source"] == cell["source"]:
                    cell.outputs = ahead["outputs"]
                    cell.execution_count = ahead["execution_count"]
                    cell.metadata.update({k: v for k, v in ahead["metadata"].items() if k == "execution"})
                    cell.metadata["scanflow"]["ran_ahead"] = True
                    cell_done(cell, index)
                    continue
                await client.async_execute_cell(cell, index)
        except CellExecutionError as exc:
            flush_live()
            return self._failure(nb, output_path, exc)
        except DeadKernelError:
            flush_live()
            _write_json_atomic(output_path, nb)
            return StepOutcome("failed", {
                "cell": None, "ename": "DeadKernelError",
                "evalue": "the step's kernel died (killed by a signal or out of memory).",
                "traceback": [],
            })
        finally:
            log.close()
            flush_live()  # cancelled or timed out: every cell that ran is on disk
        _write_json_atomic(output_path, nb)
        return StepOutcome("succeeded")

    @staticmethod
    def _source_cell(cell: Any) -> int | None:
        return _source_cell(cell)

    def _failure(self, nb: Any, output_path: Path, exc: Exception) -> StepOutcome:
        """Map the failing cell back to the user's notebook; keep papermill's error banner."""
        return StepOutcome("failed", redact_json(failure(nb, output_path, exc), self.secrets))

    async def cancel_step(self, step: str) -> None:
        kernel = self._running.get(step)
        if kernel:
            await self.pool.discard(kernel)  # type: ignore[union-attr]

    async def close(self) -> None:
        if self.pool:
            await self.pool.kill_all()
        from scanflow_jupyter.runtime.fork_provisioner import Zygote

        if Zygote._instance is not None:
            Zygote._instance.kill_children()
