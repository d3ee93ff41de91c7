"""kernel_ready.wait_for_ready (#14): a kernel is ready only once its IOPub stream reaches us — the
first cell's every output arrives — and a kernel that dies while starting is an error, not a hang.
Real kernels (classic start and forked by the zygote)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import AsyncKernelManager

from scanflow_jupyter.runtime.fork_provisioner import PROVISIONER_NAME
from scanflow_jupyter.runtime.kernel_ready import wait_for_ready

pytestmark = pytest.mark.integration


async def _start(tmp_path: Path, forked: bool, name: str) -> tuple[Any, Any]:
    km = AsyncKernelManager(kernel_name="python3", transport="ipc", ip=str(tmp_path / name))
    if forked:
        spec = km.kernel_spec
        spec.metadata = {**spec.metadata, "kernel_provisioner": {"provisioner_name": PROVISIONER_NAME}}
    await km.start_kernel(cwd=str(tmp_path), env=dict(os.environ))
    kc = km.client()
    kc.start_channels(hb=False)
    return km, kc


async def _outputs_of_first_cell(kc: Any) -> list[str]:
    """Run a cell at once after ready and collect its stream text up to its idle status."""
    msg_id = kc.execute("for i in range(3):\n    print('line', i, flush=True)")
    texts: list[str] = []
    while True:
        msg = await asyncio.wait_for(kc.iopub_channel.get_msg(), 30)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            texts.append(msg["content"]["text"])
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return texts


@pytest.mark.parametrize("forked", [True, False], ids=["zygote", "classic"])
def test_first_cell_outputs_all_arrive(tmp_path: Path, forked: bool) -> None:
    async def main() -> None:
        for n in range(3):  # each start is a fresh race between IOPub's join and the first output
            km, kc = await _start(tmp_path, forked, f"k{n}")
            try:
                await asyncio.wait_for(wait_for_ready(kc, 60), 90)
                assert "".join(await _outputs_of_first_cell(kc)) == "line 0\nline 1\nline 2\n"
            finally:
                kc.stop_channels()
                await km.shutdown_kernel(now=True)

    asyncio.run(main())


def test_a_kernel_that_dies_while_starting_is_an_error(tmp_path: Path) -> None:
    async def main() -> None:
        km, kc = await _start(tmp_path, False, "dead")
        try:
            os.kill(km.provisioner.process.pid, signal.SIGKILL)
            with pytest.raises(RuntimeError, match="died"):
                await asyncio.wait_for(wait_for_ready(kc, 60), 90)
        finally:
            kc.stop_channels()
            await km.shutdown_kernel(now=True)

    asyncio.run(main())


def test_a_kernel_that_never_answers_times_out(tmp_path: Path) -> None:
    async def main() -> None:
        km, kc = await _start(tmp_path, False, "stopped")
        pid = km.provisioner.process.pid
        os.kill(pid, signal.SIGSTOP)  # alive, but never answers
        try:
            with pytest.raises(RuntimeError, match="didn't respond in 2 seconds"):
                await asyncio.wait_for(wait_for_ready(kc, 2), 30)
        finally:
            os.kill(pid, signal.SIGCONT)
            kc.stop_channels()
            await km.shutdown_kernel(now=True)

    asyncio.run(main())
