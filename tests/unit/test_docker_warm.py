"""docker_warm: which steps are warmed ahead, the setting, and the pipe folders (no engine needed).

`spec_of` returns None here, so the pool never reaches the Docker client: these tests cover the
choice of steps and the host-side bookkeeping; tests/integration/test_docker_warm.py runs real
warm containers.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from scanflow_jupyter.runtime import docker_warm
from scanflow_jupyter.runtime.docker_warm import WarmPool, reap_folders, warm_size

CHAIN = {"a": [], "b": ["a"], "c": ["b"], "d": ["c"]}
FAN = {"root": [], "x": ["root"], "y": ["root"], "z": ["root"], "join": ["x", "y", "z"]}


def _pool(deps: dict[str, list[str]], size: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
          **kwargs: Any) -> WarmPool:
    monkeypatch.setattr(docker_warm.tempfile, "tempdir", str(tmp_path))  # pipe folders under tmp_path
    kwargs.setdefault("spec_of", lambda step: None)
    kwargs.setdefault("booting", size)
    return WarmPool(client=None, size=size, deps=deps, **kwargs)


def _warmed(pool: WarmPool) -> list[str]:
    return sorted(pool._unused)


def test_a_chain_is_warmed_size_steps_ahead_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pool = _pool(CHAIN, 2, tmp_path, monkeypatch)
    try:
        pool.started("a")  # the backend makes its pool when the first step starts (cold)
        assert _warmed(pool) == ["b", "c"]
        warm = pool.take("b")
        assert warm is not None and warm.step == "b" and pool.take("b") is None
        pool.started("b")
        assert _warmed(pool) == ["c", "d"]
        warm.release()
    finally:
        pool.close()


def test_a_fan_out_is_warmed_up_to_size_and_no_more_than_may_still_run(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    pool = _pool(FAN, 2, tmp_path, monkeypatch)
    try:
        pool.started("root")
        assert _warmed(pool) == ["x", "y"]
        pool.expected = 1  # the runner says one attempt may still run: keep what is warm, add nothing
        pool.take("x").release()
        pool.refill()
        assert _warmed(pool) == ["y"]
    finally:
        pool.close()
    pool = _pool(FAN, 3, tmp_path, monkeypatch)
    try:
        pool.expected = 0  # e.g. everything else is served by the cache
        pool.started("root")
        assert _warmed(pool) == []
    finally:
        pool.close()


def test_each_warm_container_gets_a_private_pipe_that_close_removes(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    pool = _pool(CHAIN, 1, tmp_path, monkeypatch)
    pool.started("a")
    warm = pool._unused["b"]
    pipe = warm.folder / "request"
    assert stat.S_ISFIFO(pipe.stat().st_mode) and stat.S_IMODE(pipe.stat().st_mode) == 0o600
    assert warm.folder.parent == pool.root and pool.root.name.startswith(f"scanflow-warm-{os.getpid()}-")
    with pytest.raises(LookupError):
        warm.ready.result(timeout=30)  # spec_of said no: the step would start cold
    pool.close()
    assert not pool.root.exists()
    pool.started("b")  # a closed pool starts nothing
    assert _warmed(pool) == []


def test_a_request_written_before_the_launcher_opens_the_pipe_is_read_whole(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from scanflow_jupyter.runtime.warm_step import open_request, read_request

    pool = _pool(CHAIN, 1, tmp_path, monkeypatch)
    try:
        pool.started("a")
        warm = pool.take("b")
        warm.hand_over({"notebook": "/x/input.ipynb", "attempt": 1})
        fd = open_request(str(warm.folder / "request"))
        assert read_request(fd) == {"notebook": "/x/input.ipynb", "attempt": 1}
        warm.release()  # the runner's end closes: the launcher sees end of file
        assert read_request(fd) is None
        os.close(fd)
        assert not warm.folder.exists()
    finally:
        pool.close()


def test_no_more_than_booting_containers_start_at_once_in_pipeline_order(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A boot is CPU-bound: with `booting=1` the next step's container boots alone, then the one after."""
    booting = threading.Event()  # set: let the boot in progress finish
    done = threading.Event()

    def spec_of(step: str) -> None:
        booting.wait(30)
        return None  # (then the step would start cold; what matters here is the order)

    def on_ready() -> None:
        done.set()

    pool = _pool(CHAIN, 3, tmp_path, monkeypatch, spec_of=spec_of, booting=1, on_ready=on_ready)
    try:
        pool.started("a")
        assert _warmed(pool) == ["b"]
        pool.refill()
        assert _warmed(pool) == ["b"]  # still booting: nothing else starts
        booting.set()
        assert done.wait(30)
        done.clear()
        pool.refill()  # what the backend does on the event loop after on_ready
        assert _warmed(pool) == ["b", "c"]
        assert done.wait(30)
        pool.refill()
        assert _warmed(pool) == ["b", "c", "d"]
    finally:
        booting.set()
        pool.close()


def test_independent_steps_waiting_for_a_slot_are_warmed_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pool = _pool({"s1": [], "s2": [], "s3": [], "s4": []}, 2, tmp_path, monkeypatch)
    try:
        pool.started("s1")
        assert _warmed(pool) == ["s2", "s3"]
    finally:
        pool.close()


def test_pipe_folders_of_dead_runners_are_reaped(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = tmp_path / f"scanflow-warm-{dead.pid}-abc"
    mine = tmp_path / f"scanflow-warm-{os.getpid()}-abc"
    other = tmp_path / "scanflow-warm-notapid-abc"
    for folder in (gone, mine, other):
        folder.mkdir()
    reap_folders(str(tmp_path))
    assert (gone.exists(), mine.exists(), other.exists()) == (False, True, True)


@pytest.mark.parametrize(("raw", "expected"), [(None, 2), ("", 2), ("0", 0), ("5", 5), (" 3 ", 3)])
def test_warm_size_setting(raw: str | None, expected: int) -> None:
    assert warm_size({} if raw is None else {"SCANFLOW_DOCKER_WARM": raw}) == expected


@pytest.mark.parametrize(("raw", "says"), [("two", "not a whole number"), ("-1", "negative")])
def test_a_bad_warm_size_says_how_to_fix_it(raw: str, says: str) -> None:
    with pytest.raises(ValueError, match=says) as info:
        warm_size({"SCANFLOW_DOCKER_WARM": raw})
    assert "SCANFLOW_DOCKER_WARM" in str(info.value) and "0" in str(info.value)
