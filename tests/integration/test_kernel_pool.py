"""KernelPool.acquire(on_started=...) (#14): the step is reported started once its kernel answers,
not after the setup cells that run ahead in it (imports: often seconds). A real kernel (forked by
the zygote) whose setup cell blocks until the callback has run."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from scanflow_jupyter.runtime.kernel_pool import Kernel, KernelPool

pytestmark = pytest.mark.integration


def _cell(source: str) -> dict[str, Any]:
    return {"cell_type": "code", "source": source, "metadata": {"scanflow": {"role": "setup"}}, "outputs": [],
            "execution_count": None}


def test_on_started_comes_before_the_setup_cells_end(tmp_path: Path) -> None:
    hold = tmp_path / "release"
    preamble = [_cell("import pathlib, time\n"
                      f"while not pathlib.Path({str(hold)!r}).exists():\n    time.sleep(0.02)\n"
                      "print('setup done')")]
    seen: list[tuple[int | None, bool]] = []

    async def main() -> Kernel:
        pool = KernelPool("python3", str(tmp_path), dict(os.environ), warm=1, preamble=preamble)
        pool.expect(1)
        try:
            def started(kernel: Kernel) -> None:
                seen.append((kernel.pid, kernel.preamble is not None))
                hold.write_text("go")  # only now may the setup cell finish

            kernel = await asyncio.wait_for(pool.acquire(on_started=started), 120)
            assert kernel.preamble is not None, "the setup cells ran ahead in the kernel"
            assert "setup done" in str(kernel.preamble[0]["outputs"])
            return kernel
        finally:
            await pool.kill_all()

    kernel = asyncio.run(main())
    # the callback ran once, for this kernel, while its setup cell was still blocked
    assert seen == [(kernel.pid, False)]
    assert isinstance(kernel.pid, int) and kernel.pid != os.getpid()


def test_without_on_started_acquire_is_unchanged(tmp_path: Path) -> None:
    async def main() -> Kernel:
        pool = KernelPool("python3", str(tmp_path), dict(os.environ), warm=1, preamble=[_cell("x = 1")])
        pool.expect(1)
        try:
            return await asyncio.wait_for(pool.acquire(), 120)
        finally:
            await pool.kill_all()

    kernel = asyncio.run(main())
    assert kernel.preamble is not None


def test_the_pool_leaves_no_socket_folder_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every run has one pool; its kernels' IPC sockets live in a temp folder that goes with the pool."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR

    async def main() -> None:
        pool = KernelPool("python3", str(tmp_path), dict(os.environ), warm=1)
        pool.expect(2)
        try:
            kernel = await asyncio.wait_for(pool.acquire(), 120)
            assert Path(pool._tmp).parent == scratch, "positive control: the folder is under TMPDIR"
            assert list(Path(pool._tmp).iterdir()), "the kernels' sockets are in it"
            pool.discard_soon(kernel)
        finally:
            await pool.kill_all()

    asyncio.run(main())
    assert list(scratch.iterdir()) == []
