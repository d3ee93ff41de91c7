"""A warm `scanflow run` process kept ready by the server, so a sidebar Run starts at once.

The worker (`scanflow_jupyter.server.warm_main`) has imported the runner and started the kernel
zygote; a run request turns it into the run's process (`python -m scanflow_jupyter.cli run ...`
in every other respect). Each worker serves one run; the next one is started REFILL_AFTER_S after
that run started, so it does not compete with the run's start for CPU. A worker that died, or that imported package files changed since, is replaced by a fresh
one started for the request. An idle worker dies with the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path

from scanflow_jupyter.platform_support import package_source_mtime as source_mtime
from scanflow_jupyter.server.run_manager import close_transport

log = logging.getLogger(__name__)

REFILL_AFTER_S = 5.0
# variables that decide where a process finds its modules: a run that sets them otherwise gets a
# fresh worker started with them (the idle one imported with its own)
IMPORT_VARS = ("PYTHONPATH", "PYTHONHOME", "PYTHONSAFEPATH", "PYTHONNOUSERSITE", "PYTHONUSERBASE", "VIRTUAL_ENV")


class WarmWorker:
    """One idle warm worker process per server (started on first use of `launch`, or by `start`)."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = Path(root)
        self.env = dict(env)  # the worker's own environment; each request brings the run's
        self.idle: asyncio.subprocess.Process | None = None
        self._idle_source: float = 0.0
        self._refill: asyncio.TimerHandle | None = None
        self.stopped = False
        self._starting = False
        self.launched = 0  # runs handed to a worker that was ready (for tests and logs)

    async def start(self) -> None:
        """Have an idle worker (starts one unless one is alive or starting)."""
        if self.stopped or self._starting or (self.idle is not None and self.idle.returncode is None):
            return
        self._starting = True
        try:
            source = await asyncio.to_thread(source_mtime)
            # from the loop's thread: PR_SET_PDEATHSIG follows the thread that forked the worker
            proc = await self._spawn()
        finally:
            self._starting = False
        if self.stopped:
            self._discard(proc)
            return
        self.idle, self._idle_source = proc, source
        log.debug("scanflow warm worker %s started", proc.pid)

    async def _spawn(self, import_env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
        """A worker; `import_env`: the run's import variables, when they are not the worker's."""
        env = {k: v for k, v in self.env.items() if import_env is None or k not in IMPORT_VARS}
        env.update(import_env or {})
        env["PYTHONUNBUFFERED"] = "1"
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "scanflow_jupyter.server.warm_main", cwd=str(self.root), env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)

    async def _take(self, env: dict[str, str]) -> tuple[asyncio.subprocess.Process | None, str]:
        """The idle worker if it can serve a run with `env` (else None) and why not."""
        proc, self.idle = self.idle, None
        if proc is None:
            return None, "no idle worker"
        if proc.returncode is not None:
            close_transport(proc)
            return None, f"the idle worker {proc.pid} had exited ({proc.returncode})"
        changed = [k for k in IMPORT_VARS if env.get(k) != self.env.get(k)]
        if changed:  # its modules were found with another search path (a plug-in on PYTHONPATH, ...)
            self._discard(proc)
            return None, f"the run's {', '.join(changed)} differs from the idle worker's"
        if await asyncio.to_thread(source_mtime) > self._idle_source:
            self._discard(proc)
            return None, "package files changed since the idle worker started"
        return proc, ""

    async def launch(self, argv: list[str], env: dict[str, str]) -> tuple[asyncio.subprocess.Process, bool]:
        """A process running `scanflow ARGV` with `env` in the server root, and whether it was warm."""
        proc, why = await self._take(env)
        request = (json.dumps({"argv": argv, "env": env, "cwd": str(self.root)}) + "\n").encode()
        warm = proc is not None
        if proc is not None:
            try:
                await self._send(proc, request)
            except (BrokenPipeError, ConnectionResetError) as exc:  # it died just now
                warm, why = False, f"the idle worker {proc.pid} did not take the request ({exc})"
                self._discard(proc)
        if not warm:
            log.info("scanflow: starting a run in a fresh worker: %s", why)
            proc = await self._spawn({k: env[k] for k in IMPORT_VARS if k in env})
            await self._send(proc, request)
        else:
            self.launched += 1
        assert proc is not None
        self._schedule_refill()
        return proc, warm

    @staticmethod
    async def _send(proc: asyncio.subprocess.Process, request: bytes) -> None:
        assert proc.stdin is not None
        proc.stdin.write(request)
        await proc.stdin.drain()
        proc.stdin.close()

    def _schedule_refill(self) -> None:
        """A new idle worker REFILL_AFTER_S from now: after the run's start, not competing with it."""
        if self._refill is not None:
            self._refill.cancel()

        def refill() -> None:
            self._refill = None
            if not self.stopped and self.idle is None:
                asyncio.ensure_future(self._start_logged())

        self._refill = asyncio.get_running_loop().call_later(REFILL_AFTER_S, refill)

    async def _start_logged(self) -> None:
        try:
            await self.start()
        except OSError as exc:  # the next run starts its own worker
            log.warning("scanflow: could not start a warm worker: %s", exc)

    def _discard(self, proc: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        asyncio.ensure_future(self._reap(proc))

    @staticmethod
    async def _reap(proc: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(Exception):
            await proc.communicate()
        close_transport(proc)

    def stop(self) -> None:
        """Stop the idle worker (runs already started are not touched). Safe at interpreter exit."""
        self.stopped = True
        if self._refill is not None:
            self._refill.cancel()
            self._refill = None
        proc, self.idle = self.idle, None
        if proc is not None:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError, OSError):
                    os.kill(proc.pid, signal.SIGKILL)
                    # until it is gone (not reaped: asyncio's child watcher does that while the loop runs)
                    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
            with contextlib.suppress(Exception):  # its pipes now (at interpreter exit the loop may be closed)
                close_transport(proc)
