"""Warm kernels for the local backend: started before steps need them, one fresh kernel per step.

Kernels use the IPC transport (no TCP port races when several start at once), come from the
fork zygote when possible (not in portable mode: `platform_support`), and are handed out already answering `kernel_info`. A kernel is
never reused: after its step it is shut down immediately.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jupyter_client.manager import AsyncKernelManager

from scanflow_jupyter.platform_support import zygote_enabled
from scanflow_jupyter.runtime.fork_provisioner import PROVISIONER_NAME
from scanflow_jupyter.runtime.kernel_ready import wait_for_ready

STARTUP_TIMEOUT = 60.0


@dataclass(eq=False)
class Kernel:
    """A started kernel with a ready client."""

    km: AsyncKernelManager
    kc: Any
    preamble: list[dict[str, Any]] | None = None  # setup cells already run in it, with outputs

    @property
    def pid(self) -> int | None:
        provisioner = self.km.provisioner
        return getattr(provisioner, "pid", None) if provisioner else None


class KernelPool:
    """Keeps up to `warm` kernels started ahead of demand, bounded by the steps left to run."""

    def __init__(self, kernel_name: str, cwd: str, env: dict[str, str], warm: int = 2,
                 preamble: list[dict[str, Any]] | None = None) -> None:
        self.kernel_name = kernel_name
        self.preamble = preamble or []
        self.cwd = cwd
        self.env = env
        self.warm = max(1, warm)
        self.demand = 0
        self._ready: list[asyncio.Task[Kernel]] = []
        self._live: set[Kernel] = set()
        self._tmp = tempfile.mkdtemp(prefix="scanflow-kernels-")
        self._ids = itertools.count()
        self._closed = False
        self._discarding: set[asyncio.Task[None]] = set()
        # per pre-started kernel: resolved once its process answers, before its setup cells run
        self._started: dict[asyncio.Task[Kernel], asyncio.Future[Kernel]] = {}

    def expect(self, steps_left: int) -> None:
        """Tell the pool how many more kernels may be needed; it pre-starts up to `warm`."""
        self.demand = max(0, steps_left)
        self._fill()

    def _fill(self) -> None:
        while not self._closed and len(self._ready) < min(self.warm, self.demand):
            started: asyncio.Future[Kernel] = asyncio.get_running_loop().create_future()
            task = asyncio.ensure_future(self._start(started=started))
            self._started[task] = started
            self._ready.append(task)

    async def _start(self, with_preamble: bool = True, started: asyncio.Future[Kernel] | None = None) -> Kernel:
        km = AsyncKernelManager(
            kernel_name=self.kernel_name,
            transport="ipc",
            ip=os.path.join(self._tmp, f"k{next(self._ids)}"),
        )
        spec = km.kernel_spec
        if not spec.metadata.get("kernel_provisioner") and zygote_enabled():  # else jupyter_client's own
            spec.metadata = {**spec.metadata, "kernel_provisioner": {"provisioner_name": PROVISIONER_NAME}}
        await km.start_kernel(cwd=self.cwd, env=self.env)
        kc = km.client()
        kc.start_channels(hb=False)  # liveness comes from km.is_alive() (the client's parent); no ping thread per kernel
        kernel = Kernel(km, kc)
        self._live.add(kernel)
        try:
            await wait_for_ready(kc, STARTUP_TIMEOUT)  # without jupyter_client's fixed 0.2 s IOPub flush
        except Exception:
            await self.discard(kernel)
            raise
        if started is not None and not started.done():
            started.set_result(kernel)
        if with_preamble and self.preamble:
            kernel.preamble = await self._run_preamble(kernel)
        return kernel

    async def _run_preamble(self, kernel: Kernel) -> list[dict[str, Any]] | None:
        """Run the setup cells ahead of time; None if one fails (the step then runs them itself)."""
        import nbformat
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError

        nb = nbformat.from_dict({"cells": copy.deepcopy(self.preamble), "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
        client = NotebookClient(nb, km=kernel.km, timeout=None, record_timing=True,
                                resources={"metadata": {"path": self.cwd}})
        client.kc = kernel.kc
        try:  # executed directly, not in async_setup_kernel(): see LocalBackend._execute
            for index, cell in enumerate(nb.cells):
                await client.async_execute_cell(cell, index)
        except CellExecutionError:
            return None
        return [dict(cell) for cell in nb.cells]

    async def acquire(self, on_started: Callable[[Kernel], None] | None = None) -> Kernel:
        """A ready kernel (waits for one being started, or starts one). `on_started(kernel)` is
        called as soon as the kernel's process answers, before the setup cells run ahead in it have finished."""
        if not self._ready:
            self.demand = max(self.demand, 1)
            self._fill()
        task = self._ready.pop(0)
        started = self._started.pop(task, None)
        self.demand = max(0, self.demand - 1)
        self._fill()
        if on_started is not None and started is not None:
            try:
                await asyncio.wait({started, task}, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                task.cancel()  # as `await task` would: the kernel is not left starting unowned
                raise
            if started.done():
                on_started(started.result())
        kernel = await task
        if self.preamble and kernel.preamble is None:  # setup failed ahead: rerun it in the step
            self.discard_soon(kernel)
            kernel = await self._start(with_preamble=False)
        return kernel

    async def discard(self, kernel: Kernel) -> None:
        """Shut a kernel down at once (its step is over: nothing to wait for)."""
        self._live.discard(kernel)
        try:
            kernel.kc.stop_channels()
        except Exception:  # noqa: BLE001
            pass
        try:
            await kernel.km.shutdown_kernel(now=True)
        except Exception:  # noqa: BLE001 - already dead is fine
            pass

    def discard_soon(self, kernel: Kernel) -> None:
        """Shut a kernel down in the background (the step does not wait for it)."""
        task = asyncio.ensure_future(self.discard(kernel))
        self._discarding.add(task)
        task.add_done_callback(self._discarding.discard)

    async def kill_all(self) -> None:
        """Stop every kernel of this pool now (cancellation, end of run)."""
        self._closed = True
        for task in self._ready:
            task.cancel()
        for task in self._ready:
            try:
                kernel = await task
            except BaseException:  # noqa: BLE001
                continue
            self._live.add(kernel)
        self._ready.clear()
        await asyncio.gather(*(self.discard(k) for k in list(self._live)), *self._discarding,
                             return_exceptions=True)
        shutil.rmtree(self._tmp, ignore_errors=True)  # the kernels' IPC socket folder (one per run)
