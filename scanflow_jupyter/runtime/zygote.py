"""A pre-loaded process that forks fresh IPython kernels on request (kernel start in ~0.1 s).

Starting a kernel the usual way spends most of its ~0.8 s importing ipykernel. The zygote
imports it once, then forks one child per kernel: every step still gets its own fresh,
isolated process. Protocol: one JSON request per line on stdin
(`{"argv": [...], "env": {...}, "cwd": "...", "log": "..."}`), one JSON answer per line on
stdout (`{"pid": N}` or `{"error": "..."}`). The zygote exits when its stdin closes, and
with `PR_SET_PDEATHSIG` each kernel dies with the zygote and the zygote with its parent, so a
killed runner leaves no orphan kernels.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys

from scanflow_jupyter.platform_support import is_linux

PRELOAD = (
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "ipykernel.zmqshell",
    "IPython.core.interactiveshell",
    "IPython.core.completer",
    "jupyter_client.session",
    "ipykernel.debugger",
    "IPython.core.history",
    "scanflow_jupyter.data.step_io",
)
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Linux only (`prctl`); elsewhere the runner's own cleanup still kills kernels."""
    if not is_linux():
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # a Linux without glibc (musl): same as elsewhere
        pass


def _reap(_signum: int, _frame: object) -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _child(request: dict) -> None:
    """Runs in the forked child: become the kernel described by `request`."""
    os.setsid()
    _die_with_parent()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.environ.clear()
    os.environ.update(request.get("env") or {})
    if request.get("cwd"):
        os.chdir(request["cwd"])
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    log = os.open(request.get("log") or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    argv = request["argv"]
    # argv is [python, -m, ipykernel_launcher, -f, CONNECTION_FILE, ...]
    sys.argv = ["ipykernel_launcher", *argv[3:]]
    code = 0
    try:
        from ipykernel import kernelapp

        kernelapp.launch_new_instance(argv=argv[3:])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    except BaseException:  # noqa: BLE001 - report and exit, never return into the zygote loop
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main() -> None:
    """Serve fork requests until stdin closes."""
    _die_with_parent()
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    out = sys.stdout
    for name in PRELOAD + tuple(filter(None, os.environ.get("SCANFLOW_PRELOAD", "").split(","))):
        try:
            __import__(name)
        except ImportError as exc:
            print(f"scanflow zygote: cannot preload {name}: {exc}", file=sys.stderr)
    signal.signal(signal.SIGCHLD, _reap)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the runner's to handle
    out.write(json.dumps({"ready": os.getpid()}) + "\n")
    out.flush()
    for line in sys.stdin:
        try:
            request = json.loads(line)
        except json.JSONDecodeError as exc:
            out.write(json.dumps({"error": f"bad request: {exc}"}) + "\n")
            out.flush()
            continue
        pid = os.fork()
        if pid == 0:
            _child(request)
        out.write(json.dumps({"pid": pid}) + "\n")
        out.flush()
    os._exit(0)  # stdin closed: nothing to clean up, no interpreter finalization (≈0.3 s of CPU)


if __name__ == "__main__":
    main()
