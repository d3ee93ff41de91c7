"""Run store: state round trips, atomic run.json, run listing, cache index and output linking."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

from scanflow_jupyter.contracts import StepRecord
from scanflow_jupyter.data import files
from scanflow_jupyter.data import store as store_mod
from scanflow_jupyter.data.serializers import dump_value, load_value, read_record
from scanflow_jupyter.data.store import (
    CacheEntry,
    RunNotFoundError,
    RunState,
    RunStore,
    RunUnreadableError,
    StepError,
    StepState,
    StoreError,
    UnreadableRun,
    output_entry,
    shown_status,
)


def make_state(run_id: str, created_at: float = 1_764_240_901.25, **kw) -> RunState:
    steps = {
        "prep": StepState(
            name="prep",
            status="succeeded",
            attempts=1,
            started_at=created_at + 1,
            finished_at=created_at + 3.5,
            duration_s=2.5,
            cache_key="ab" * 32,
            outputs={
                "x": {
                    "name": "x",
                    "file": "x.npy",
                    "serializer": "numpy",
                    "digest": "sha256:" + "cd" * 32,
                    "size": 128,
                    "folder": "/store/run/prep/outputs",
                }
            },
            mlflow_run_id="m-prep",
        ),
        "train": StepState(
            name="train",
            status="failed",
            attempts=2,
            error=StepError(cell=4, ename="ValueError", evalue="bad", traceback=["l1", "l2"]),
        ),
        "report": StepState(name="report", status="cached", cached_from="20260101T000000-aaaaaa"),
        "deploy": StepState(name="deploy"),
    }
    fields = dict(
        run_id=run_id,
        app="churn",
        notebook="/work/churn.ipynb",
        backend="local",
        status="failed",
        created_at=created_at,
        started_at=created_at + 0.5,
        finished_at=created_at + 9,
        params={"lr": 0.1, "layers": [1, 2], "name": "x", "flag": None},
        mlflow_run_id="m-parent",
        pid=4242,
        steps=steps,
        resumed_from=None,
    )
    fields.update(kw)
    return RunState(**fields)


# --------------------------------------------------------------------------- dataclasses


def test_run_state_json_roundtrip_is_exact():
    state = make_state("20261127T105501-3f9a1c")
    text = json.dumps(state.to_dict())
    back = RunState.from_dict(json.loads(text))
    assert back == state
    assert list(back.steps) == ["prep", "train", "report", "deploy"]
    assert isinstance(back.steps["train"].error, StepError)
    assert back.to_dict() == state.to_dict()


def test_step_state_defaults():
    step = StepState(name="s")
    assert (step.status, step.attempts, step.outputs, step.error) == ("pending", 0, {}, None)
    assert StepState.from_record(StepRecord.model_validate(step.to_dict())) == step


@pytest.mark.parametrize("status", ["done", "SUCCEEDED", ""])
def test_unknown_statuses_are_rejected(status):
    with pytest.raises(ValueError, match="invalid step status"):
        StepState(name="s", status=status)
    with pytest.raises(ValueError, match="invalid run status"):
        make_state("r", status=status)
    state = make_state("r")
    state.status = status  # a typo made after construction is caught when writing
    with pytest.raises(ValueError):
        state.to_dict()


def test_interrupted_is_a_run_status_but_not_a_step_status():
    make_state("r", status="interrupted")
    with pytest.raises(ValueError):
        StepState(name="s", status="interrupted")


def test_cache_entry_roundtrip():
    entry = CacheEntry(key="ab12", run_id="r", step="s", outputs={}, created_at=5.0)
    assert CacheEntry.from_dict(json.loads(json.dumps(entry.to_dict()))) == entry


# --------------------------------------------------------------------------- paths and ids


def test_new_run_ids_are_unique_time_sortable_and_reserved(tmp_path):
    store = RunStore(tmp_path / "runs")
    ids = [store.new_run_id() for _ in range(50)]
    assert len(set(ids)) == 50
    for run_id in ids:
        assert re.fullmatch(r"\d{8}T\d{6}-[0-9a-f]{6}", run_id)
        assert store.run_dir(run_id).is_dir()
    stamps = [run_id.split("-")[0] for run_id in ids]
    assert stamps == sorted(stamps)  # generated in time order, so they sort that way


def test_paths_follow_the_documented_layout(tmp_path):
    store = RunStore(tmp_path)
    assert store.root == tmp_path.absolute()
    assert store.run_dir("r1") == tmp_path / "r1"
    assert store.step_dir("r1", "train") == tmp_path / "r1" / "train"
    assert store.outputs_dir("r1", "train") == tmp_path / "r1" / "train" / "outputs"


@pytest.mark.parametrize("bad", ["..", "../x", "a/b", ".hidden", "", "cache"])
def test_unsafe_run_ids_are_refused(tmp_path, bad):
    with pytest.raises(StoreError):
        RunStore(tmp_path).run_dir(bad)


def test_unsafe_step_names_are_refused(tmp_path):
    with pytest.raises(StoreError):
        RunStore(tmp_path).step_dir("r1", "../other")


# --------------------------------------------------------------------------- run.json


def test_write_then_read_state(tmp_path):
    store = RunStore(tmp_path)
    state = make_state("20261127T105501-3f9a1c")
    store.write_state(state)
    assert store.read_state(state.run_id) == state
    assert json.loads(store.state_path(state.run_id).read_text())["app"] == "churn"


def test_reading_a_missing_run_says_how_to_list_runs(tmp_path):
    with pytest.raises(RunNotFoundError, match="scanflow runs") as info:
        RunStore(tmp_path).read_state("20990101T000000-000000")
    assert isinstance(info.value, LookupError)


def test_unreadable_state_is_a_store_error(tmp_path):
    store = RunStore(tmp_path)
    store.run_dir("r1").mkdir()
    store.state_path("r1").write_text("{ not json")
    with pytest.raises(StoreError, match="unreadable"):
        store.read_state("r1")


RUN = "20260101T000000-aaaaaa"


def _valid_doc() -> dict:
    return make_state(RUN).to_dict()


def _with(**changes) -> bytes:
    doc = _valid_doc()
    for key, value in changes.items():
        if value is KeyError:
            del doc[key]
        else:
            doc[key] = value
    return json.dumps(doc).encode()


def _step_with(**changes) -> bytes:
    doc = _valid_doc()
    doc["steps"]["train"].update(changes)
    return json.dumps(doc).encode()


# content of run.json -> what the message must say is wrong
CORRUPT_STATES = [
    ("garbage", b"\x00\xff garbage", "not valid JSON"),
    ("truncated", json.dumps(make_state(RUN).to_dict()).encode()[:200], "truncated"),
    ("empty", b"", "the file is empty"),
    ("blank", b"  \n", "the file is empty"),
    ("list", b"[1, 2]", "holds a list, not a JSON object"),
    ("null", b"null", "holds null"),
    ("deep", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ("missing_key", _with(run_id=KeyError), "has no 'run_id' key"),
    ("wrong_type", _with(created_at="yesterday"), "'created_at' of the run is a string, expected"),
    ("bool_pid", _with(pid=True), "'pid' of the run is true/false"),
    ("steps_list", _with(steps=[1]), "'steps' of the run is a list, expected an object"),
    ("bad_status", _with(status="banana"), "'status' is 'banana', expected one of"),
    ("other_run_id", _with(run_id="20990101T000000-ffffff"), "folder is named"),
    ("step_not_object", _with(steps={"a": "x"}), "step 'a' is a string, not a JSON object"),
    ("step_bad_status", _step_with(status="melted"), "'status' of step 'train' is 'melted'"),
    ("step_attempts", _step_with(attempts="2"), "'attempts' of step 'train' is a string"),
    ("step_error_type", _step_with(error=["x"]), "'error' of step 'train' is a list"),
    ("step_error_cell", _step_with(error={"cell": "4", "ename": "E", "evalue": ""}), "'error.cell' of step 'train'"),
    ("step_output", _step_with(outputs={"x": "x.npy"}), "output 'x' of step 'train' is a string"),
]


@pytest.mark.parametrize(("content", "wanted"), [c[1:] for c in CORRUPT_STATES],
                         ids=[c[0] for c in CORRUPT_STATES])
def test_corrupt_run_json_is_unreadable_with_file_problem_and_fix(tmp_path, content, wanted):
    store = RunStore(tmp_path)
    store.run_dir(RUN).mkdir()
    store.state_path(RUN).write_bytes(content)
    with pytest.raises(RunUnreadableError) as info:
        store.read_state(RUN)
    err = info.value
    assert isinstance(err, StoreError) and not isinstance(err, RunNotFoundError)
    assert str(store.state_path(RUN)) in str(err) and wanted in str(err), str(err)
    assert "unreadable" in str(err) and "start a new run" in err.fix and str(store.run_dir(RUN)) in err.fix


def test_unreadable_because_of_permissions(tmp_path):
    store = RunStore(tmp_path)
    store.write_state(make_state(RUN))
    store.state_path(RUN).unlink()
    store.state_path(RUN).mkdir()  # a directory where the file should be: EISDIR, not "missing"
    with pytest.raises(RunUnreadableError, match="cannot be read"):
        store.read_state(RUN)


def test_an_overlong_run_id_is_not_found_not_an_os_error(tmp_path):
    with pytest.raises(RunNotFoundError, match="too long"):
        RunStore(tmp_path).read_state("a" * 300)


def test_the_valid_document_passes_the_schema(tmp_path):
    store = RunStore(tmp_path)
    store.write_state(make_state(RUN))
    assert store.read_state(RUN) == make_state(RUN)


def test_list_entries_shows_unreadable_runs_list_runs_skips_them(tmp_path):
    store = RunStore(tmp_path)
    store.write_state(make_state("20260101T000000-aaaaaa", created_at=1767225600.0))
    (tmp_path / "20260101T000005-bbbbbb").mkdir()
    (tmp_path / "20260101T000005-bbbbbb" / "run.json").write_text("{ truncated")
    (tmp_path / "20260101T000009-cccccc").mkdir()  # reserved id, no run.json yet: not a run
    entries = store.list_entries()
    assert [e.run_id for e in entries] == ["20260101T000005-bbbbbb", "20260101T000000-aaaaaa"]
    bad = entries[0]
    assert isinstance(bad, UnreadableRun) and bad.status == "unreadable"
    doc = bad.to_dict()
    assert doc["status"] == "unreadable" and "not valid JSON" in doc["reason"]
    assert doc["path"].endswith("run.json") and doc["fix"] and doc["message"].startswith("the state of run")
    assert doc["created_at"] == 1767225605.0  # from the id
    assert [r.run_id for r in store.list_runs()] == ["20260101T000000-aaaaaa"]
    assert [e.run_id for e in store.list_entries(limit=1)] == ["20260101T000005-bbbbbb"]


def test_shown_status_one_rule_for_dead_runners(tmp_path):
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: this pid is gone
    dead = make_state(RUN, status="running", pid=proc.pid)
    assert shown_status(dead) == "interrupted"
    assert shown_status(make_state(RUN, status="running", pid=os.getpid())) == "running"
    assert shown_status(make_state(RUN, status="running", pid=None)) == "interrupted"
    assert shown_status(make_state(RUN, status="running", pid=os.getpid()), alive=False) == "interrupted"
    assert shown_status(make_state(RUN, status="failed", pid=proc.pid)) == "failed"


def test_crash_while_writing_state_keeps_the_previous_run_json(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    state = make_state("20261127T105501-3f9a1c", status="running")
    store.write_state(state)

    # Fault injection: a crash between writing the temp file and renaming it over run.json
    # cannot be provoked from outside the process, so os.replace is made to fail instead.
    def crash(src, dst):
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(files.os, "replace", crash)
    state.status = "succeeded"
    state.steps["deploy"].status = "succeeded"
    with pytest.raises(OSError, match="simulated crash"):
        store.write_state(state)
    monkeypatch.undo()

    back = store.read_state(state.run_id)
    assert back.status == "running"
    assert back.steps["deploy"].status == "pending"
    assert os.listdir(store.run_dir(state.run_id)) == ["run.json"]  # no temp file left


def test_state_write_is_flushed_to_disk_before_the_rename(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    calls: list[str] = []
    real_fsync, real_replace = files.os.fsync, files.os.replace
    monkeypatch.setattr(files.os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(
        files.os, "replace", lambda a, b: (calls.append("replace"), real_replace(a, b))[1]
    )
    store.write_state(make_state("r1"))
    assert calls[:2] == ["fsync", "replace"]


# --------------------------------------------------------------------------- listing


def test_list_runs_newest_first_and_skips_unreadable_folders(tmp_path):
    store = RunStore(tmp_path)
    store.write_state(make_state("20260101T000000-aaaaaa", created_at=100.0))
    store.write_state(make_state("20260101T000002-bbbbbb", created_at=102.0))
    store.write_state(make_state("20260101T000001-cccccc", created_at=101.0))
    (tmp_path / "20260101T000003-dddddd").mkdir()  # reserved id, no state yet
    (tmp_path / "20260101T000004-eeeeee").mkdir()
    (tmp_path / "20260101T000004-eeeeee" / "run.json").write_text("garbage")
    store.cache_record("ab" * 4, CacheEntry("ab" * 4, "r", "s", {}))  # the cache folder

    runs = store.list_runs()
    assert [r.run_id for r in runs] == [
        "20260101T000002-bbbbbb",
        "20260101T000001-cccccc",
        "20260101T000000-aaaaaa",
    ]
    assert [r.run_id for r in store.list_runs(limit=2)] == [
        "20260101T000002-bbbbbb",
        "20260101T000001-cccccc",
    ]


def test_list_runs_orders_runs_of_the_same_second_by_creation_time(tmp_path):
    store = RunStore(tmp_path)
    # Same second: the random suffixes sort the opposite way to the creation times.
    store.write_state(make_state("20260101T000000-ffffff", created_at=100.1))
    store.write_state(make_state("20260101T000000-000000", created_at=100.9))
    store.write_state(make_state("20250101T000000-999999", created_at=50.0))
    assert [r.run_id for r in store.list_runs(limit=1)] == ["20260101T000000-000000"]


def test_list_runs_of_a_missing_store_is_empty(tmp_path):
    assert RunStore(tmp_path / "nothing").list_runs() == []


# --------------------------------------------------------------------------- cache


@pytest.fixture
def produced(tmp_path):
    """A store whose run r1 / step prep saved two real variables."""
    store = RunStore(tmp_path / "store")
    folder = store.outputs_dir("r1", "prep")
    outputs = {
        "x": output_entry(dump_value("x", np.arange(10.0), folder), folder),
        "meta": output_entry(dump_value("meta", {"rows": 10}, folder), folder),
    }
    return store, folder, outputs


def test_cache_record_and_lookup(produced):
    store, folder, outputs = produced
    key = "f0" * 32
    assert store.cache_lookup(key) is None
    entry = CacheEntry(key=key, run_id="r1", step="prep", outputs=outputs)
    store.cache_record(key, entry)
    assert store.cache_path(key) == store.root / "cache" / "f0" / f"{key}.json"
    assert store.cache_lookup(key) == entry


def test_cache_lookup_is_invalidated_when_an_output_file_is_deleted(produced):
    store, folder, outputs = produced
    key = "0a" * 32
    store.cache_record(key, CacheEntry(key=key, run_id="r1", step="prep", outputs=outputs))
    assert store.cache_lookup(key) is not None
    (folder / "x.npy").unlink()
    assert store.cache_lookup(key) is None


def test_cache_lookup_is_invalidated_when_an_output_file_changes_size(produced):
    store, folder, outputs = produced
    key = "0b" * 32
    store.cache_record(key, CacheEntry(key=key, run_id="r1", step="prep", outputs=outputs))
    (folder / "meta.json").write_text('{"rows": 1000000}')
    assert store.cache_lookup(key) is None


def test_corrupt_cache_entry_is_a_miss(produced):
    store, _, _ = produced
    key = "0c" * 32
    path = store.cache_path(key)
    path.parent.mkdir(parents=True)
    path.write_text("{")
    assert store.cache_lookup(key) is None


@pytest.mark.parametrize("key", ["a", "../../etc", "ab/cd", ""])
def test_invalid_cache_keys_are_refused(tmp_path, key):
    with pytest.raises(StoreError, match="cache key"):
        RunStore(tmp_path).cache_path(key)


def test_cache_record_refuses_a_mismatched_key(tmp_path):
    with pytest.raises(StoreError):
        RunStore(tmp_path).cache_record("aa11", CacheEntry("bb22", "r", "s", {}))


def test_link_outputs_into_a_new_run(produced):
    store, folder, outputs = produced
    dest = store.outputs_dir("r2", "prep")
    linked = store.link_outputs(outputs, dest)

    assert set(linked) == {"x", "meta"}
    for var, out in linked.items():
        assert out["folder"] == str(dest.absolute())
        assert {k: v for k, v in out.items() if k != "folder"} == {
            k: v for k, v in outputs[var].items() if k != "folder"
        }
        assert os.stat(dest / out["file"]).st_ino == os.stat(folder / out["file"]).st_ino
        assert read_record(dest, var).digest == out["digest"]
    # The new run keeps its copy when the old run's files go away.
    (folder / "x.npy").unlink()
    x = load_value(dest, read_record(dest, "x"), verify=True)
    np.testing.assert_array_equal(x, np.arange(10.0))


def test_link_outputs_copies_when_hard_links_are_impossible(produced, monkeypatch):
    store, folder, outputs = produced

    def no_links(src, dst):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(store_mod.os, "link", no_links)
    dest = store.outputs_dir("r3", "prep")
    linked = store.link_outputs(outputs, dest)
    out = linked["x"]
    assert os.stat(dest / out["file"]).st_ino != os.stat(folder / out["file"]).st_ino
    assert load_value(dest, read_record(dest, "x"), verify=True)[3] == 3.0


def test_link_outputs_of_a_vanished_file_is_a_store_error(produced):
    store, folder, outputs = produced
    (folder / "meta.json").unlink()
    with pytest.raises(StoreError, match="vanished"):
        store.link_outputs(outputs, store.outputs_dir("r4", "prep"))
