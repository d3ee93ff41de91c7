"""Supervised child processes, shared by the agents' and the services' supervisors.

A daemon (one detached process per notebook) keeps a listening socket per child on 127.0.0.1
for the child's whole life and starts the child with it (`python -m MODULE --spec S --fd N
--boot B --parent PID`), so its port never changes and a request sent during a restart waits in
the backlog. The child writes `boot.json` (`ready`, or `refused`/`failed` with exit code 3: not
restarted); a crashed child restarts with backoff (0.25 s, 0.5 s, … 30 s; back to 0.25 s once it
ran 30 s). The daemon publishes each child's state into a registry (`SupervisedRegistry`:
0600 JSON under a file lock) under the notebook's entry, in the section `agents` or `services`.

The client side (`start_daemon`, `wait_settled`, `stop_notebooks`) is what `up`/`down` call.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from scanflow_jupyter import process_liveness
from scanflow_jupyter.agents.state import atomic_write_json
from scanflow_jupyter.redact import redact_uri

__all__ = ["BACKOFF_S", "STABLE_AFTER_S", "STOP_GRACE_S", "Child", "Daemon", "SupervisedRegistry", "daemon_args", "daemonize", "listen",
           "pid_alive", "signal_group", "start_daemon", "stop_notebooks", "wait_gone", "wait_settled", "watch_parent"]

BACKOFF_S = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
STABLE_AFTER_S = 30.0
STOP_GRACE_S = 10.0
EXIT_GIVEN_UP = 3  # a child that cannot run (its boot file says why): not restarted


def pid_alive(pid: int | None, marker: str | None = None) -> bool:
    """True if process `pid` runs (and is not a zombie); with `marker`, its command line must
    contain it (protects against a recycled pid)."""
    if not pid:
        return False
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own exited child
    if not process_liveness.alive(pid):
        return False
    return marker is None or marker in process_liveness.command_text(pid)


class SupervisedRegistry:
    """`<home>/NAME`: the supervised children of each notebook (mode 0600, written under a
    `flock` on `NAME.lock` and replaced atomically; `tracking_uri` is kept redacted)."""

    def __init__(self, home: Path, name: str) -> None:
        self.home = Path(home)
        self.path = self.home / name
        self.lock_path = self.home / (name + ".lock")

    def read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            data = {}
        if not isinstance(data, dict):
            data = {}
        data.setdefault("version", 1)
        data.setdefault("notebooks", {})
        return data

    @contextlib.contextmanager
    def edit(self) -> Iterator[dict[str, Any]]:
        """Lock, read, let the caller change the dict, write it back atomically."""
        self.home.mkdir(parents=True, exist_ok=True)
        with os.fdopen(os.open(self.lock_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                data = self.read()
                yield data
                for entry in data["notebooks"].values():  # entries written by older versions too
                    if isinstance(entry, dict) and entry.get("tracking_uri"):
                        entry["tracking_uri"] = redact_uri(str(entry["tracking_uri"]))
                atomic_write_json(self.path, data, private=True)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def notebook(self, notebook: str) -> dict[str, Any] | None:
        return self.read()["notebooks"].get(notebook)


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one); OSError if it is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # accepted connections inherit it: uvicorn serving a socket it did not create leaves Nagle on,
    # and Nagle + the client's delayed ACK add ~40 ms to every answer
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


def signal_group(pid: int, sig: int) -> None:
    """Send `sig` to the process group `pid` leads (children start their own session) and to `pid`."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def wait_gone(pids: list[tuple[int, str]], timeout: float) -> list[tuple[int, str]]:
    """Wait until each `(pid, command-line marker)` is gone; returns those still alive."""
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [(p, m) for p, m in alive if pid_alive(p, m)]
        if alive:
            time.sleep(0.05)
    return alive


# -- client side ------------------------------------------------------------------------------


def start_daemon(module: str, notebook: Path, home: Path, env: dict[str, str], what: str) -> int:
    """Run `python -m module --daemon` for `notebook`; returns the detached daemon's pid."""
    proc = subprocess.run([sys.executable, "-m", module, "--notebook", str(notebook), "--home", str(home),
                           "--daemon"], env=env, cwd=notebook.parent, capture_output=True, text=True, timeout=60,
                          check=False)
    try:
        return int(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RuntimeError(f"the {what} did not start (exit {proc.returncode}): "
                           f"{proc.stderr.strip()[-2000:]}") from None


def wait_settled(registry: SupervisedRegistry, notebook: str, section: str, settled: tuple[str, ...], daemon_pid: int,
                 daemon_module: str, timeout: float) -> None:
    """Wait until every child of `notebook` is in a `settled` state (or the daemon is gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = registry.notebook(notebook) or {}
        if all(c.get("state") in settled for c in (entry.get(section) or {}).values()):
            return
        if not pid_alive(daemon_pid, daemon_module):
            return
        time.sleep(0.05)


def stop_notebooks(registry: SupervisedRegistry, notebook: str | None, *, section: str, daemon_module: str,
                   child_module: str, timeout: float) -> tuple[dict[str, dict[str, Any]], list[int]]:
    """Stop the daemons of `notebook` (of every notebook if None) with SIGTERM (SIGKILL after
    `timeout`), then any child left (SIGTERM, SIGKILL after STOP_GRACE_S), and drop their
    registry entries. Returns (the entries stopped, the pids that needed SIGKILL)."""
    entries = {nb: e for nb, e in registry.read()["notebooks"].items() if notebook is None or nb == notebook}
    killed: list[int] = []
    daemons: list[tuple[int, str]] = []
    children: list[tuple[int, str]] = []
    for entry in entries.values():
        spid = entry.get("supervisor_pid")
        if pid_alive(spid, daemon_module):
            os.kill(spid, signal.SIGTERM)
            daemons.append((spid, daemon_module))
        children += [(int(c["pid"]), child_module) for c in (entry.get(section) or {}).values() if c.get("pid")]
    for pid, _ in wait_gone(daemons, timeout):
        killed.append(pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    left = [(p, m) for p, m in children if pid_alive(p, m)]
    for pid, _ in left:  # the daemon was gone or did not finish: stop its children here
        signal_group(pid, signal.SIGTERM)
    for pid, _ in wait_gone(left, STOP_GRACE_S):
        killed.append(pid)
        signal_group(pid, signal.SIGKILL)
    wait_gone(children + daemons, 2.0)
    if entries:
        with registry.edit() as data:
            for nb in entries:
                data["notebooks"].pop(nb, None)
    return entries, killed


# -- the daemon -------------------------------------------------------------------------------


class Child:
    """One supervised child: its socket (kept across restarts), its process, restart bookkeeping.

    `kind` names it in logs ("agent", "service"); `given_up` is the state of a child that exited
    with EXIT_GIVEN_UP and said so in its boot file; `fail_unready` reports a child that crashed
    before it was ever ready as `failed` (still restarted); `ready_keys` are boot-file fields
    published when it is ready."""

    def __init__(self, daemon: Daemon, name: str, folder: Path, log: Path, port: int = 0) -> None:
        self.daemon, self.name, self.dir, self.log = daemon, name, folder, log
        self.sock = listen("127.0.0.1", port)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.state = "starting"
        self.started_at = self.restart_at = 0.0
        self.restarts = self.crashes = 0

    def spawn(self) -> None:
        boot = self.dir / "boot.json"
        with contextlib.suppress(FileNotFoundError):
            boot.unlink()
        self.log.parent.mkdir(parents=True, exist_ok=True)
        kind = self.daemon.kind
        with open(self.log, "ab") as log:
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {kind} {self.name} on {self.url}"
                      f" (start {self.restarts + 1}) ---\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.daemon.child_module, "--spec", str(self.dir / "spec.json"), "--fd",
                 str(self.sock.fileno()), "--boot", str(boot), "--parent", str(os.getpid())],
                pass_fds=(self.sock.fileno(),), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.daemon.notebook.parent, start_new_session=True)
        self.started_at = time.time()
        self.state = "starting"
        self.daemon.publish(self.name, state="starting", pid=self.proc.pid, port=self.port, url=self.url,
                            restarts=self.restarts, started_at=self.started_at)

    def _boot(self) -> dict[str, Any]:
        try:
            return json.loads((self.dir / "boot.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def tick(self, now: float) -> None:
        given_up = self.daemon.given_up
        if self.state in (given_up, "stopped"):
            return
        if self.proc is not None and self.proc.poll() is not None:
            code, boot, self.proc = self.proc.returncode, self._boot(), None
            if code == EXIT_GIVEN_UP and boot.get("state") == given_up:
                self.state = given_up
                self.daemon.publish(self.name, state=given_up, pid=None, message=boot.get("message"))
                return
            self.crashes = 1 if now - self.started_at >= STABLE_AFTER_S else self.crashes + 1
            delay = BACKOFF_S[min(self.crashes, len(BACKOFF_S)) - 1]
            self.restart_at = now + delay
            how = f"signal {-code}" if code < 0 else f"exit code {code}"
            never_ready = self.daemon.fail_unready and self.state != "running" and not self.restarts
            self.state = "failed" if never_ready else "restarting"  # `up` stops waiting for a failed one
            self.daemon.publish(self.name, state=self.state, pid=None, last_exit=how, last_exit_at=now,
                                next_start_at=self.restart_at)
            with contextlib.suppress(OSError), open(self.log, "ab") as log:
                log.write(f"--- {self.daemon.kind} {self.name} exited ({how}); restarting in {delay:g} s ---\n"
                          .encode())
            return
        if self.proc is None:
            if now >= self.restart_at:
                self.restarts += 1
                self.spawn()
            return
        if self.state != "running":
            boot = self._boot()
            if boot.get("pid") == self.proc.pid and boot.get("state") == "ready":
                self.state = "running"
                self.daemon.publish(self.name, state="running", ready_at=now,
                                    **{k: boot.get(k) for k in self.daemon.ready_keys})

    def stop(self) -> subprocess.Popen[bytes] | None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            signal_group(proc.pid, signal.SIGTERM)
            return proc
        return None


class Daemon:
    """Keeps the children of one notebook running; subclasses set the class attributes and
    `children`."""

    kind = "child"  # a child's name in logs
    section = "children"  # the registry's key of the children of a notebook
    title = "supervisor"
    child_module = ""
    given_up = "failed"
    fail_unready = False
    ready_keys: tuple[str, ...] = ()

    def __init__(self, notebook: Path, home: Path, registry: SupervisedRegistry) -> None:
        self.notebook, self.home, self.registry = notebook, home, registry
        self.entry = registry.notebook(str(notebook)) or {}
        self.stopping = False
        self.children: list[Child] = []

    def publish(self, name: str, **fields: Any) -> None:
        with self.registry.edit() as data:
            entry = data["notebooks"].get(str(self.notebook))
            if entry is None or entry.get("supervisor_pid") not in (None, os.getpid()):
                return  # replaced by a newer `up`
            entry["supervisor_pid"] = os.getpid()
            entry.setdefault(self.section, {}).setdefault(name, {}).update(fields)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.stopping = True

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        with self.registry.edit() as data:
            entry = data["notebooks"].get(str(self.notebook))
            if entry is not None:
                entry["supervisor_pid"] = os.getpid()
        print(f"{self.title} {os.getpid()} for {self.notebook}: {self.section} "
              f"{', '.join(c.name for c in self.children)}", flush=True)
        for child in self.children:
            child.spawn()
        while not self.stopping:
            now = time.time()
            for child in self.children:
                child.tick(now)
            time.sleep(0.05)
        self.shutdown()
        return 0

    def shutdown(self) -> None:
        stopping = [(c, p) for c in self.children if (p := c.stop()) is not None]
        deadline = time.monotonic() + STOP_GRACE_S
        for child, proc in stopping:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"{self.kind} {child.name} (pid {proc.pid}) ignored SIGTERM: killing it", flush=True)
                signal_group(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=2)
        for child in self.children:
            child.sock.close()
        with self.registry.edit() as data:
            entry = data["notebooks"].get(str(self.notebook))
            if entry is not None and entry.get("supervisor_pid") == os.getpid():
                data["notebooks"].pop(str(self.notebook), None)
        print(f"{self.title} {os.getpid()} stopped", flush=True)


def daemonize(log: Path) -> None:
    """Fork: the parent prints the child's pid and exits; the child leaves the caller's session."""
    pid = os.fork()
    if pid > 0:
        print(pid, flush=True)
        os._exit(0)
    os.setsid()
    log.parent.mkdir(parents=True, exist_ok=True)
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    os.close(null)


def daemon_args(module: str, argv: list[str] | None) -> argparse.Namespace:
    """The daemon's command line: `--notebook NB --home HOME [--daemon]`."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}")
    parser.add_argument("--notebook", required=True)
    parser.add_argument("--home", required=True)
    parser.add_argument("--daemon", action="store_true", help="detach (print the supervisor's pid)")
    return parser.parse_args(argv)


async def watch_parent(parent: int, server: Any, log: logging.Logger) -> None:
    """In a child: ask its uvicorn `server` to exit once the supervisor `parent` is gone."""
    while True:
        await asyncio.sleep(0.5)
        if os.getppid() != parent:
            log.warning("supervisor (pid %s) is gone: stopping", parent)
            server.should_exit = True
            return
