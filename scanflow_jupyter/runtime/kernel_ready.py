"""Wait until a freshly started kernel answers on shell AND its IOPub stream reaches us.

`jupyter_client`'s `wait_for_ready` ends with a fixed flush: it reads IOPub until 0.2 s pass
without a message, so every kernel start costs at least 0.2 s more than the kernel needs. Here
the proof that IOPub is connected is the kernel's own `status: idle` for our `kernel_info_request`
(the kernel publishes it after the reply): once it arrived, every IOPub message of that request
has been read and nothing is left to flush. If IOPub joined too late to see it (ZeroMQ's slow
joiner), the request is sent again.
"""

from __future__ import annotations

import time
from queue import Empty
from typing import Any

from jupyter_core.utils import ensure_async

SHELL_POLL_S = 0.5  # between liveness checks while the kernel starts
IOPUB_WAIT_S = 0.05  # for the idle status of one request before asking again (a busy kernel answers in ms)


async def wait_for_ready(kc: Any, timeout: float) -> None:
    """Return once the kernel of client `kc` answered kernel_info and its IOPub idle for that
    request arrived. Raises RuntimeError if the kernel dies or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        msg_id = kc.kernel_info()
        reply = await _reply(kc, msg_id, deadline)
        if reply is not None:
            kc._handle_kernel_info_reply(reply)  # protocol version adaptation, as jupyter_client does
            if await _idle_seen(kc, msg_id):
                return
        if not await _alive(kc):
            raise RuntimeError("Kernel died before replying to kernel_info")
        if time.monotonic() > deadline:
            raise RuntimeError(f"Kernel didn't respond in {timeout:g} seconds")


async def _reply(kc: Any, msg_id: str, deadline: float) -> dict[str, Any] | None:
    """The kernel_info_reply to `msg_id` (None: none within SHELL_POLL_S)."""
    until = min(deadline, time.monotonic() + SHELL_POLL_S)
    while True:
        left = until - time.monotonic()
        if left <= 0:
            return None
        try:
            msg = await kc.shell_channel.get_msg(timeout=left)
        except Empty:
            return None
        if msg.get("msg_type") == "kernel_info_reply" and msg.get("parent_header", {}).get("msg_id") == msg_id:
            return msg


async def _idle_seen(kc: Any, msg_id: str) -> bool:
    """Read IOPub until the idle status of request `msg_id` (True) or IOPUB_WAIT_S of silence."""
    while True:
        try:
            msg = await kc.iopub_channel.get_msg(timeout=IOPUB_WAIT_S)
        except Empty:
            return False
        if (msg.get("msg_type") == "status" and msg.get("content", {}).get("execution_state") == "idle"
                and msg.get("parent_header", {}).get("msg_id") == msg_id):
            return True


async def _alive(kc: Any) -> bool:
    parent = getattr(kc, "parent", None)  # the KernelManager (sync or async) that started it
    return parent is None or bool(await ensure_async(parent.is_alive()))
