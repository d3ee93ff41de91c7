"""The warm recorder: `import mlflow` paid once, not by every run.

One long-lived process per (interpreter, installed package, PYTHONPATH) has mlflow imported and
listens on a private unix socket (`/tmp/scanflow-<uid>/recorder-<key>.sock`, in a 0700 folder
that must belong to the user). A run's `RecorderProcess(warm=True)` connects and sends its
configuration, environment and working directory; the daemon forks a child that takes them on
and answers the run's Recorder calls on the socket exactly as a `recorder_process` child does on
its pipes (own log file, exits when the socket closes — also when the run dies). A run that finds
no daemon starts one in the background and spawns its own child as before.

The daemon exits after `SCANFLOW_RECORDER_IDLE` seconds without a connection (default 300).
`SCANFLOW_WARM_RECORDER=0` turns it off; so do portable mode (no fork) and platforms without
AF_UNIX. Code changes start a new daemon (the key hashes the package's file times).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from scanflow_jupyter.runtime.child_protocol import load_message, write_message

__all__ = ["IDLE_ENV", "SWITCH_ENV", "SocketChild", "connect", "enabled", "private_dir", "socket_path", "start_daemon"]

SWITCH_ENV = "SCANFLOW_WARM_RECORDER"
IDLE_ENV = "SCANFLOW_RECORDER_IDLE"
DEFAULT_IDLE_S = 300.0
_HELLO_TIMEOUT_S = 10.0


def enabled() -> bool:
    """May runs use the warm recorder here?"""
    from scanflow_jupyter.platform_support import portable_mode

    if os.environ.get(SWITCH_ENV, "").strip().lower() in ("0", "false", "no", "off"):
        return False
    return not portable_mode() and hasattr(os, "fork") and hasattr(socket, "AF_UNIX")


def _key() -> str:
    """Interpreter, package folder and its code's age, PYTHONPATH: a change means another daemon."""
    from scanflow_jupyter.platform_support import package_source_mtime

    parts = (sys.executable, str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", ""),
             repr(package_source_mtime()))
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def private_dir(base: Path | None = None) -> Path | None:
    """`/tmp/scanflow-<uid>` (or under `base`), created 0700; None if it exists but is not ours
    and private. Not TMPDIR: a run with its own TMPDIR (every test) must find the same daemon."""
    if base is None:
        base = Path("/tmp") if Path("/tmp").is_dir() else Path(tempfile.gettempdir())
    folder = base / f"scanflow-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    try:
        info = os.lstat(folder)
    except OSError:
        return None
    import stat

    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        return None  # another user's folder, or a symlink: never connect there
    return folder


def socket_path() -> Path | None:
    """Where this installation's daemon listens (None: no safe place)."""
    folder = private_dir()
    return None if folder is None else folder / f"recorder-{_key()}.sock"


class SocketChild:
    """The forked child of the daemon serving one run, shaped like the `subprocess.Popen` the
    classic path uses (pid, stdin, stdout, wait, kill, poll, returncode)."""

    def __init__(self, sock: socket.socket, pid: int, reader: Any) -> None:
        self._sock, self.pid = sock, pid
        self.stdout = reader
        self.stdin = _WriteEnd(sock)
        self.returncode: int | None = None
        self._eof = threading.Event()

    def saw_eof(self, code: int | None) -> None:
        """The reader reached the end of the socket (`code` from the child's `exit` event)."""
        if self.returncode is None:
            # no `exit` event: the child vanished (killed; we cannot wait for another's child)
            self.returncode = code if code is not None else -signal.SIGKILL
        self._eof.set()
        with contextlib.suppress(OSError):
            self._sock.close()

    def wait(self, timeout: float | None = None) -> int:
        if not self._eof.wait(timeout):
            raise subprocess.TimeoutExpired("scanflow recorder (warm)", timeout or 0)
        return self.returncode if self.returncode is not None else 0

    def poll(self) -> int | None:
        return self.returncode if self._eof.is_set() else None

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(self.pid, signal.SIGKILL)
        self.returncode = -signal.SIGKILL
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)


class _WriteEnd:
    """The request side of the socket; `close()` half-closes it so the child sees end of input."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def write(self, data: bytes) -> int:
        self._sock.sendall(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)


def connect(config: dict[str, Any], env: dict[str, str]) -> SocketChild | None:
    """A warm child for one run, or None (no daemon yet: the caller spawns its own child and
    calls `start_daemon()` once that child is ready — not at once: two cold `import mlflow`
    side by side would slow this run's own recording down on a small machine)."""
    if not enabled():
        return None
    path = socket_path()
    if path is None:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(_HELLO_TIMEOUT_S)
        sock.connect(str(path))
        reader = sock.makefile("rb")
        write_message(_WriteEnd(sock), {"config": config, "env": env, "cwd": os.getcwd()})
        hello = load_message(reader.readline() or b"null")
        pid = int(hello["pid"])
        sock.settimeout(None)
    except (OSError, ValueError, KeyError, TypeError):
        sock.close()
        return None
    return SocketChild(sock, pid, reader)


def start_daemon() -> None:
    """Start a daemon for the next runs, detached (its own session; it forks again so no run is
    its parent). Nothing when disabled; a second daemon of the same key exits at once (its lock)."""
    path = socket_path() if enabled() else None
    if path is None:
        return
    env = dict(os.environ)
    src_root = Path(__file__).resolve().parents[2]
    if src_root.name not in ("site-packages", "dist-packages"):
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(src_root), env.get("PYTHONPATH")) if p)
    with contextlib.suppress(OSError):
        launcher = subprocess.Popen(  # exits at once (double fork): reaped by a thread
            [sys.executable, "-m", "scanflow_jupyter.runtime.recorder_daemon", str(path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=True, start_new_session=True, env=env)
        threading.Thread(target=launcher.wait, name="scanflow-recorder-daemon-launcher", daemon=True).start()


# --- the daemon ---------------------------------------------------------------------------------


def _serve_child(conn: socket.socket) -> None:
    """In the forked child: take on the run's environment and serve its Recorder calls."""
    from scanflow_jupyter.runtime.recorder_process import serve_calls

    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    reader = conn.makefile("rb")
    proto = _WriteEnd(conn)
    hello = load_message(reader.readline() or b"{}")
    config, env = hello.get("config") or {}, hello.get("env") or {}
    with contextlib.suppress(OSError):
        os.chdir(hello.get("cwd") or "/")
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in env.items()})
    log_fd = os.open(config.get("log_path") or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    sys.stdout = sys.stderr
    write_message(proto, {"pid": os.getpid()})
    serve_calls(config, reader, proto)
    parent = config.get("parent_pid")
    if parent:
        from scanflow_jupyter.process_liveness import alive

        if not alive(int(parent)):  # the run died without closing us: nobody will delete the log
            with contextlib.suppress(OSError):
                os.unlink(config["log_path"])
    write_message(proto, {"event": "exit", "code": 0})


def _warm_up() -> None:
    """Make, once, the calls every run's child makes, on a throwaway sqlite store: SQLAlchemy's
    mappers, MLflow's schema check (alembic) and their first-call paths are then ready in every
    forked child (its store opening + first records: ≈0.8 s -> ≈0.06 s). No failure matters:
    the children then pay those first calls themselves."""
    import shutil

    from scanflow_jupyter.tracking import Recorder

    folder = Path(tempfile.mkdtemp(prefix="scanflow-recorder-warm-"))
    recorder = Recorder(f"sqlite:///{folder / 'mlflow.db'}", str(folder / "artifacts"))
    try:
        recorder.warm_up()
        parent = recorder.start_pipeline("warm-up", "warm-up", "local", folder / "warm-up.ipynb", {"p": 1})
        first = recorder.start_step(parent, "warm-up", "warm-up", "first")
        recorder.finish_step(first, "succeeded", 1, False, duration_s=0.0)
        cached = recorder.start_step(parent, "warm-up", "warm-up", "cached")
        recorder.finish_step(cached, "cached", 0, True, duration_s=0.0, cached_from="warm-up",
                             reused_step="first", parent_mlflow_id=parent)
        recorder.finish_pipeline(parent, "succeeded", 0.0)
    except Exception:  # noqa: BLE001, S110 - see the docstring
        pass
    finally:
        with contextlib.suppress(Exception):
            recorder.close()
        with contextlib.suppress(Exception):  # no pooled connection to a deleted file in the children
            recorder.client._tracking_client.store.engine.dispose()  # noqa: SLF001
        shutil.rmtree(folder, ignore_errors=True)


def _daemon(path: Path) -> int:
    import fcntl

    lock = os.open(str(path) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return 0  # another daemon of this key is starting or running
    # the heavy imports every run's child would pay, done once here
    import mlflow  # noqa: F401
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
    import mlflow.tracking  # noqa: F401

    import scanflow_jupyter.tracking  # noqa: F401
    import scanflow_jupyter.tracking_store  # noqa: F401
    import scanflow_jupyter.tracking_sync  # noqa: F401

    _warm_up()
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    os.chmod(path, 0o600)
    server.listen(16)
    idle = float(os.environ.get(IDLE_ENV) or DEFAULT_IDLE_S)
    server.settimeout(idle)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        while True:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                break
            if os.fork() == 0:
                code = 0
                try:
                    server.close()
                    os.close(lock)  # a long run's child must not keep the next daemon out
                    conn.settimeout(None)
                    _serve_child(conn)
                except BaseException:  # noqa: BLE001 - the run sees the socket close
                    code = 1
                finally:
                    os._exit(code)
            conn.close()
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # ours: the lock keeps any other daemon of this key from binding it
        server.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m scanflow_jupyter.runtime.recorder_daemon SOCKET_PATH", file=sys.stderr)
        return 2
    if os.fork() > 0:  # the launcher returns at once; the daemon belongs to no run
        return 0
    os.setsid()
    return _daemon(Path(args[0]))


if __name__ == "__main__":
    _code = main()
    os._exit(_code)
