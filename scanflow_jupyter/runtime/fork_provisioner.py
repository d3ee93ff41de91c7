"""A jupyter_client kernel provisioner that gets kernels from the zygote (fast fresh kernels).

Registered as entry point `scanflow-fork` in group `jupyter_client.kernel_provisioners`.
Kernels whose command is not `<this python> -m ipykernel_launcher` start the usual way, as do all
kernels in portable mode or with `SCANFLOW_NO_ZYGOTE=1` (`platform_support.zygote_enabled`).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from jupyter_client.provisioning.local_provisioner import LocalProvisioner

from scanflow_jupyter.platform_support import zygote_enabled
from scanflow_jupyter.process_liveness import ProcessIdentity

PROVISIONER_NAME = "scanflow-fork"


class ZygoteError(RuntimeError):
    """The zygote process could not fork a kernel."""


class Zygote:
    """Client of one zygote process (`python -m scanflow_jupyter.runtime.zygote`)."""

    _instance: Zygote | None = None
    _instance_lock = threading.Lock()

    def __init__(self) -> None:
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "scanflow_jupyter.runtime.zygote"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
            env=env,
        )
        self._lock = threading.Lock()
        self._ready = False
        self.children: set[int] = set()

    @classmethod
    def shared(cls) -> Zygote:
        """The process-wide zygote, started on first use."""
        with cls._instance_lock:
            if cls._instance is None or cls._instance._proc.poll() is not None:
                cls._instance = cls()
                atexit.register(cls._instance.close)
            return cls._instance

    def _read(self) -> dict[str, Any]:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise ZygoteError(f"the kernel zygote exited (code {self._proc.poll()})")
        return json.loads(line)

    def fork(self, argv: list[str], env: dict[str, str], cwd: str | None, log: str | None = None) -> int:
        """Fork a kernel running `argv`; return its pid."""
        with self._lock:
            assert self._proc.stdin is not None
            if not self._ready:
                self._read()  # {"ready": pid}: preloading finished
                self._ready = True
            request = {"argv": argv, "env": env, "cwd": cwd, "log": log}
            self._proc.stdin.write(json.dumps(request) + "\n")
            self._proc.stdin.flush()
            answer = self._read()
        if "pid" not in answer:
            raise ZygoteError(answer.get("error", "unknown zygote error"))
        self.children.add(answer["pid"])
        return answer["pid"]

    def kill_children(self) -> None:
        """SIGKILL every kernel this zygote forked (their process groups)."""
        for pid in list(self.children):
            _kill_group(pid, signal.SIGKILL)
        self.children.clear()

    def close(self) -> None:
        """Stop the zygote and every kernel it forked. The zygote holds no state, so it is
        SIGKILLed rather than left to finalize its interpreter (0.3-2 s at every run's exit)."""
        self.kill_children()
        with contextlib.suppress(OSError):
            assert self._proc.stdin is not None
            self._proc.stdin.close()
        if self._proc.poll() is None:
            with contextlib.suppress(OSError):
                self._proc.kill()
            self._proc.wait()


def start_shared_zygote() -> None:
    """Start the process-wide zygote now, unless running or disabled (portable mode): its imports
    (≈0.5 s) then overlap the caller's own parsing, validation and imports instead of following
    them on the first step's path. Stopped at exit, also when no step needs a kernel."""
    if zygote_enabled():
        Zygote.shared()


def _kill_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


class ForkedProcess:
    """The Popen-like handle the provisioner keeps for a forked kernel (not our child)."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.identity = ProcessIdentity.of(pid)  # just forked: a later process reusing the pid is not it
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is not None:
            return self.returncode
        if self.identity.alive():
            return None
        self.returncode = 0
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
            time.sleep(0.02)
        return self.returncode or 0

    def send_signal(self, signum: int) -> None:
        _kill_group(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


def _forkable(cmd: list[str]) -> bool:
    return (
        len(cmd) >= 3
        and cmd[1:3] == ["-m", "ipykernel_launcher"]
        and os.path.realpath(cmd[0]) == os.path.realpath(sys.executable)
        and zygote_enabled()
    )


class ForkProvisioner(LocalProvisioner):
    """Launch ipykernel kernels by forking the pre-loaded zygote."""

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> Any:
        if not _forkable(cmd):
            return await super().launch_kernel(cmd, **kwargs)
        env = {k: str(v) for k, v in (kwargs.get("env") or os.environ).items()}
        cwd = kwargs.get("cwd")
        zygote = Zygote.shared()
        log = os.environ.get("SCANFLOW_KERNEL_LOG")
        # the first fork waits for the zygote's preloading: do not block the event loop
        pid = await asyncio.get_running_loop().run_in_executor(
            None, zygote.fork, cmd, env, str(cwd) if cwd else None, log)
        self.process = ForkedProcess(pid)  # type: ignore[assignment]
        self.pid = pid
        self.pgid = pid
        self.cwd = cwd or os.getcwd()
        return self.connection_info

    async def wait(self) -> int | None:
        ret = 0
        if self.process:
            while await self.poll() is None:
                await asyncio.sleep(0.02)
            ret = self.process.returncode or 0
            self.process = None
        return ret
