"""The one platform decision: portable mode (SCANFLOW_PORTABLE=1 or not Linux) and the zygote switch."""

from __future__ import annotations

import sys

import pytest

from scanflow_jupyter import platform_support as ps
from scanflow_jupyter.runtime.fork_provisioner import _forkable


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCANFLOW_PORTABLE", raising=False)
    monkeypatch.delenv("SCANFLOW_NO_ZYGOTE", raising=False)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the default on Linux")
def test_linux_default_is_not_portable_and_forks_kernels() -> None:
    assert not ps.portable_mode() and ps.portable_reason() == ""
    assert ps.zygote_enabled()
    assert _forkable([sys.executable, "-m", "ipykernel_launcher", "-f", "c.json"])


@pytest.mark.parametrize("value", ["1", "true", "YES"])
def test_the_switch_turns_portable_mode_on(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SCANFLOW_PORTABLE", value)
    assert ps.portable_mode() and ps.portable_reason() == f"SCANFLOW_PORTABLE={value}"
    assert not ps.zygote_enabled()
    assert not _forkable([sys.executable, "-m", "ipykernel_launcher", "-f", "c.json"])


def test_other_platforms_are_portable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setenv("SCANFLOW_PORTABLE", "0")
    assert ps.portable_mode() and ps.portable_reason() == "platform darwin is not Linux"
    assert not ps.zygote_enabled() and not ps.is_linux()


def test_no_zygote_alone_keeps_the_rest_of_the_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCANFLOW_NO_ZYGOTE", "1")
    assert not ps.zygote_enabled()
    assert ps.portable_mode() == (not sys.platform.startswith("linux"))
