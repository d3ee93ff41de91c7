"""Unit tests for scanflow_jupyter.tracking: store location, status mapping, lazy mlflow import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scanflow_jupyter import tracking
from scanflow_jupyter.tracking import (
    Recorder,
    Tracker,
    default_artifact_root,
    default_tracking_uri,
    git_commit,
    mlflow_status,
    resolve_tracking_uri,
    scanflow_home,
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("SCANFLOW_HOME", raising=False)
    monkeypatch.chdir(tmp_path)


def test_home_defaults_to_dot_scanflow_in_cwd(tmp_path: Path) -> None:
    assert scanflow_home() == tmp_path / ".scanflow"
    assert scanflow_home(tmp_path / "proj") == tmp_path / "proj" / ".scanflow"
    assert not (tmp_path / ".scanflow").exists()  # only resolve_tracking_uri creates it


def test_home_from_env_is_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SCANFLOW_HOME", "elsewhere")
    assert scanflow_home(tmp_path / "ignored") == tmp_path / "elsewhere"
    assert scanflow_home().is_absolute()


def test_default_uri_and_artifact_root(tmp_path: Path) -> None:
    home = tmp_path / "h"
    assert default_tracking_uri(home) == f"sqlite:///{home}/mlflow.db"
    assert default_tracking_uri(home).startswith("sqlite:////")  # absolute path
    assert default_artifact_root(home) == str(home / "mlartifacts")


def test_resolve_uses_default_and_creates_home(tmp_path: Path) -> None:
    uri = resolve_tracking_uri()
    assert uri == default_tracking_uri(tmp_path / ".scanflow")
    assert (tmp_path / ".scanflow").is_dir()


def test_resolve_with_explicit_home(tmp_path: Path) -> None:
    home = tmp_path / "a" / "b"
    assert resolve_tracking_uri(home) == default_tracking_uri(home)
    assert home.is_dir()


def test_resolve_honours_scanflow_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SCANFLOW_HOME", str(tmp_path / "sh"))
    assert resolve_tracking_uri() == default_tracking_uri(tmp_path / "sh")


def test_mlflow_tracking_uri_env_always_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SCANFLOW_HOME", str(tmp_path / "sh"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracker:5000")
    assert resolve_tracking_uri() == "http://tracker:5000"
    assert resolve_tracking_uri(tmp_path / "explicit") == "http://tracker:5000"
    assert not (tmp_path / "sh").exists()
    assert not (tmp_path / "explicit").exists()


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ("succeeded", "FINISHED"),
        ("cached", "FINISHED"),
        ("failed", "FAILED"),
        ("killed", "KILLED"),
        ("skipped", "KILLED"),
    ],
)
def test_status_mapping(ours: str, theirs: str) -> None:
    assert mlflow_status(ours) == theirs


def test_unknown_status_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown step/pipeline status 'done'"):
        mlflow_status("done")


def test_tag_names() -> None:
    assert tracking.TAG_APP == "scanflow.app"
    assert tracking.TAG_RUN_ID == "scanflow.run_id"
    assert tracking.TAG_BACKEND == "scanflow.backend"
    assert tracking.TAG_NOTEBOOK == "scanflow.notebook"
    assert tracking.TAG_KIND == "scanflow.kind"
    assert tracking.TAG_STEP == "scanflow.step"
    assert tracking.TAG_ATTEMPT == "scanflow.attempt"
    assert tracking.TAG_CACHE_HIT == "scanflow.cache_hit"
    assert tracking.TAG_STATUS == "scanflow.status"
    assert tracking.TAG_CACHED_FROM == "scanflow.cached_from"


def test_param_items_respect_mlflow_limits() -> None:
    items = tracking._param_items({"lr": 0.1, "bad key!": "x", "long": "v" * 7000, 3: None})
    assert items["lr"] == "0.1"
    assert items["bad key_"] == "x"
    assert len(items["long"]) == 6000
    assert items["3"] == "None"


def test_git_commit_outside_a_repo_is_none(tmp_path: Path) -> None:
    assert git_commit(tmp_path) is None
    assert git_commit(tmp_path / "missing") is None


def test_git_commit_inside_a_repo(tmp_path: Path) -> None:
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    try:
        subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
        subprocess.run([*git, "-C", str(tmp_path), "commit", "-q", "--allow-empty", "-m", "x"],
                       check=True)  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git is not usable here")
    sub = tmp_path / "notebooks"
    sub.mkdir()
    sha = git_commit(sub)
    assert sha is not None and len(sha) == 40


def test_recorder_satisfies_tracker_protocol() -> None:
    assert isinstance(Recorder("sqlite:///x.db"), Tracker)


def test_importing_does_not_import_mlflow() -> None:
    code = (
        "import sys, json\n"
        "import scanflow_jupyter.tracking as t\n"
        "import scanflow_jupyter.runtime.recorder_process as rp\n"
        "r = t.Recorder('sqlite:///unused.db')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == []
