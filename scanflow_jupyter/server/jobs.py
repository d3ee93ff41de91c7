"""Builds and deployments: `scanflow build|deploy|undeploy|status NB --json` as subprocess jobs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scanflow_jupyter.server.run_manager import close_transport

LOG_LIMIT = 200_000


@dataclass
class Job:
    """One CLI subprocess started by the server."""

    job_id: str
    kind: str
    notebook: str
    command: list[str]
    status: str = "running"  # running | succeeded | failed
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    result: Any = None

    def to_dict(self) -> dict[str, Any]:
        log = (self.stderr + ("\n" if self.stderr and self.stdout else "") + self.stdout)[-LOG_LIMIT:]
        images = None
        if isinstance(self.result, dict) and isinstance(self.result.get("steps"), dict):
            images = {name: r.get("image") for name, r in self.result["steps"].items() if isinstance(r, dict)}
        return {"build_id" if self.kind == "build" else "job_id": self.job_id, "kind": self.kind,
                "notebook": self.notebook, "status": self.status, "exit_code": self.exit_code,
                "started_at": self.started_at, "finished_at": self.finished_at, "log": log,
                "images": images, "result": self.result}


def cli_command(name: str) -> Any:
    """The click command `scanflow NAME` if this installation has it, else None."""
    from scanflow_jupyter.cli import main

    return main.commands.get(name)


class JobManager:
    """Start CLI jobs in the server root and keep their output (in memory, per server)."""

    def __init__(self, root: Path, home: Path, env: dict[str, str] | None = None) -> None:
        self.root = Path(root)
        self.home = Path(home)
        self.extra_env = dict(env or {})
        self.jobs: dict[str, Job] = {}

    def _env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {**os.environ, **self.extra_env, **(extra or {})}
        env["SCANFLOW_HOME"] = str(self.home)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def base_command(self, name: str, notebook: Path, options: dict[str, str | None]) -> list[str]:
        """`python -m scanflow_jupyter.cli NAME NB --json` plus the options the command accepts."""
        cmd = [sys.executable, "-m", "scanflow_jupyter.cli", name, str(notebook), "--json"]
        from scanflow_jupyter.cli.grammar import accepts_option

        for flag, value in options.items():
            if value and accepts_option(name, flag):
                cmd.append(f"{flag}={value}")  # one argument: a value starting with '-' stays a value
        return cmd

    async def start(self, kind: str, notebook: Path, command: list[str], env: dict[str, str] | None = None) -> Job:
        """Start `command`; `env` is added to the child's environment."""
        job = Job(uuid.uuid4().hex[:12], kind, str(notebook), command)
        proc = await asyncio.create_subprocess_exec(*command, cwd=str(self.root), env=self._env(env),
                                                    stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        self.jobs[job.job_id] = job
        asyncio.ensure_future(self._wait(job, proc))
        return job

    async def _wait(self, job: Job, proc: asyncio.subprocess.Process) -> None:
        out, err = await proc.communicate()
        close_transport(proc)
        job.stdout = out.decode(errors="replace")
        job.stderr = err.decode(errors="replace")
        job.exit_code = proc.returncode
        job.finished_at = time.time()
        with contextlib.suppress(json.JSONDecodeError):
            job.result = json.loads(job.stdout)
        job.status = "succeeded" if proc.returncode == 0 else "failed"

    async def run_once(self, command: list[str], timeout: float = 60.0,
                       env: dict[str, str] | None = None) -> tuple[int, Any, str]:
        """Run a short command (e.g. `status --json`) and return (exit code, JSON or None, stderr)."""
        proc = await asyncio.create_subprocess_exec(*command, cwd=str(self.root), env=self._env(env),
                                                    stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            close_transport(proc)
            return -1, None, f"timed out after {timeout:.0f} s"
        close_transport(proc)
        doc = None
        with contextlib.suppress(json.JSONDecodeError):
            doc = json.loads(out.decode(errors="replace"))
        return proc.returncode or 0, doc, err.decode(errors="replace")
