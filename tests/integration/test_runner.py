"""The pipeline runner through its Python API: real kernels, a real run store, real MLflow.

Each test runs in its own project folder (see the `project` fixture in tests/conftest.py).
Orderings are read from the event stream (positions in the list), never from clocks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

LINEAR = ["extract", "transform", "report"]
DIAMOND = ["load", "features", "stats", "train"]
FAILING = ["prepare", "explode", "after_explode", "independent"]
LIFECYCLE = {"step_queued", "step_started", "step_succeeded", "step_failed", "step_cached",
             "step_skipped", "step_retrying", "step_killed"}
READINGS = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3]

REPORT_WITH_MIN = '''%%executor report --inputs scaled --outputs summary
summary = {
    "count": len(scaled),
    "mean": statistics.mean(scaled),
    "max": max(scaled),
    "min": min(scaled),
}
print(summary)
'''

# The same code as REPORT_WITH_MIN, with comments, blank lines and other spacing only.
REPORT_WITH_MIN_COMMENTED = '''%%executor report --inputs scaled --outputs summary
# Summarise the scaled readings.


summary = {
    "count": len(scaled),     # how many
    "mean": statistics.mean(scaled),
    "max": max( scaled ),
    "min": min(scaled),       # the smallest one
}
print( summary )  # show it
'''

EXPLODE_FIXED = '''%%executor explode --inputs data --outputs doubled
doubled = [value * 2 for value in data]
'''


def lifecycle(out: Any, step: str) -> list[str]:
    return [t for t in out.types(step) if t in LIFECYCLE]


def max_concurrency(out: Any) -> int:
    """Most steps that were between step_started and step_succeeded/failed at the same point."""
    running: set[str] = set()
    most = 0
    for e in out.events:
        if e.type == "step_started":
            running.add(e.step)
            most = max(most, len(running))
        elif e.type in ("step_succeeded", "step_failed", "step_killed", "step_retrying"):
            running.discard(e.step)
    return most


def pid_alive(pid: int) -> bool:
    """True if `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X", "x")


def mlflow_runs(project: Any, app: str) -> tuple[Any, dict[str, Any]]:
    """(parent run, {step name: nested run}) of the only pipeline run of experiment `app`."""
    client = project.mlflow_client()
    exp = client.get_experiment_by_name(app)
    assert exp is not None, f"no MLflow experiment named {app!r}"
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, [r.data.tags for r in parents]
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == len(runs) - 1, "every other run is nested under the pipeline run"
    by_step = {r.data.tags.get("scanflow.step"): r for r in children}
    assert len(by_step) == len(children), "one nested run per step"
    return parent, by_step


def mlflow_runs_of(project: Any, app: str, parent_id: str) -> tuple[Any, dict[str, Any]]:
    """(parent run, {step: nested run}) of the pipeline run `parent_id`."""
    client = project.mlflow_client()
    parent = client.get_run(parent_id)
    exp = client.get_experiment_by_name(app)
    runs = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'",
                              max_results=1000)
    return parent, {r.data.tags["scanflow.step"]: r for r in runs}


# ---------------------------------------------------------------------------- linear chain


def test_linear_chain_succeeds_passes_outputs_and_streams_events(runner, project):
    out = runner.run("linear_chain", max_parallel=2)

    assert out.result.status == "succeeded"
    assert out.result.exit_code == 0
    assert list(out.result.steps) == LINEAR
    assert out.statuses() == dict.fromkeys(LINEAR, "succeeded")
    assert [s.attempts for s in out.result.steps.values()] == [1, 1, 1]
    assert out.state.status == "succeeded" and out.state.finished_at is not None

    assert out.output("extract", "readings") == READINGS
    assert out.output("transform", "scaled") == [r * 10 for r in READINGS]
    assert out.output("report", "summary") == {"count": 10, "mean": 39, "max": 90}

    events = out.events
    assert events[0].type == "run_started" and events[-1].type == "run_finished"
    assert [e.type for e in events].count("run_started") == 1
    assert [e.type for e in events].count("run_finished") == 1
    assert {e.run_id for e in events} == {out.result.run_id}
    assert events[0].data["steps"] == LINEAR
    assert events[-1].data["status"] == "succeeded"
    for step in LINEAR:
        assert lifecycle(out, step) == ["step_queued", "step_started", "step_succeeded"], step
        started = out.of(step, "step_started")[0]
        assert started.attempt == 1
        assert isinstance(started.data.get("kernel_pid"), int)
    # data flows downstream: a consumer starts only after its producer succeeded
    assert out.index("step_succeeded", "extract") < out.index("step_started", "transform")
    assert out.index("step_succeeded", "transform") < out.index("step_started", "report")
    # each step ran in its own fresh kernel
    pids = [out.of(step, "step_started")[0].data["kernel_pid"] for step in LINEAR]
    assert len(set(pids)) == 3
    for step in LINEAR:
        folder = out.step_dir(step)
        assert (folder / "input.ipynb").is_file() and (folder / "output.ipynb").is_file()


def test_events_are_journaled_in_the_run_folder(runner):
    from scanflow_jupyter.runtime.events import EVENTS_FILE, read_journal

    out = runner.run("linear_chain", max_parallel=2)
    run_dir = Path(out.result.run_dir)
    journal = read_journal(run_dir)
    expected = [e.to_dict() for e in out.events if e.type != "step_log"]
    assert [(e["type"], e["step"], e["attempt"]) for e in journal] == \
        [(e["type"], e["step"], e["attempt"]) for e in expected]
    assert journal[-1]["type"] == "run_finished" and journal[-1]["data"]["status"] == "succeeded"
    assert read_journal(run_dir, after=len(journal) - 1) == journal[-1:]
    # a torn last line (writer died mid-write) is not returned
    with (run_dir / EVENTS_FILE).open("a") as fh:
        fh.write('{"type": "step_sta')
    assert len(read_journal(run_dir)) == len(journal)


# ---------------------------------------------------------------------------- diamond


def test_diamond_branches_overlap_with_two_slots(runner, require):
    require("sklearn")
    out = runner.run("diamond", max_parallel=2)

    assert out.statuses() == dict.fromkeys(DIAMOND, "succeeded")
    f_start, f_end = out.index("step_started", "features"), out.index("step_succeeded", "features")
    s_start, s_end = out.index("step_started", "stats"), out.index("step_succeeded", "stats")
    assert f_start < s_end and s_start < f_end, "features and stats must run at the same time"
    assert max_concurrency(out) == 2
    assert out.index("step_succeeded", "load") < min(f_start, s_start)
    assert max(f_end, s_end) < out.index("step_started", "train")

    X = out.output("load", "X")
    df = out.output("load", "df")
    assert X.shape == (100, 3) and list(df.columns) == ["label", "group"]
    assert out.output("features", "features").shape == (100, 4)
    assert out.output("stats", "stats")["rows"] == 100
    model = out.output("train", "model")
    assert type(model).__name__ == "LogisticRegression"
    assert model.predict(out.output("features", "features")).shape == (100,)


def test_diamond_branches_run_one_at_a_time_with_one_slot(runner, require):
    require("sklearn")
    out = runner.run("diamond", max_parallel=1)

    assert out.statuses() == dict.fromkeys(DIAMOND, "succeeded")
    f_start, f_end = out.index("step_started", "features"), out.index("step_succeeded", "features")
    s_start, s_end = out.index("step_started", "stats"), out.index("step_succeeded", "stats")
    assert f_end < s_start or s_end < f_start, "with one slot the branches must not overlap"
    assert max_concurrency(out) == 1


def test_diamond_is_tracked_in_mlflow(runner, project, require, tmp_path):
    require("sklearn")
    out = runner.run("diamond", max_parallel=2)
    assert out.result.status == "succeeded"

    parent, steps = mlflow_runs(project, "diamond")
    client = project.mlflow_client()
    assert parent.info.run_id == out.result.mlflow_run_id == out.state.mlflow_run_id
    assert parent.info.status == "FINISHED"
    # the parent run spans the pipeline run, though the recorder starts after it
    assert parent.info.start_time == int(out.state.started_at * 1000)
    tags = parent.data.tags
    assert tags["scanflow.app"] == "diamond"
    assert tags["scanflow.run_id"] == out.result.run_id
    assert tags["scanflow.backend"] == "local"
    assert Path(tags["scanflow.notebook"]).resolve() == project.nb("diamond").resolve()

    assert set(steps) == set(DIAMOND)
    for name, run in steps.items():
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["scanflow.attempt"] == "1"
        assert run.data.tags["scanflow.cache_hit"] == "false"
        assert run.info.status == "FINISHED", name
        assert run.info.run_id == out.state.steps[name].mlflow_run_id
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"output.ipynb", "log.txt"} <= artifacts, (name, artifacts)
        # the step run spans the step's real execution, also when recorded after the fact
        state = out.state.steps[name]
        if name != "train":  # train uses mlflow itself, so its run is created before it starts
            assert run.info.start_time == int(state.started_at * 1000), name
            assert run.info.end_time == int(state.finished_at * 1000), name
        assert run.info.end_time - run.info.start_time >= 0.8 * state.duration_s * 1000 - 5, name
    # user code logged with plain mlflow.log_metric into the step's own run
    accuracy = steps["train"].data.metrics.get("accuracy")
    assert accuracy is not None and 0.5 < accuracy <= 1.0
    assert "accuracy" not in parent.data.metrics
    # the artifact is the executed step notebook
    local = client.download_artifacts(steps["train"].info.run_id, "output.ipynb", str(tmp_path / "dl"))
    cells = json.loads(Path(local).read_text(encoding="utf-8"))["cells"]
    assert any("mlflow.log_metric" in "".join(c["source"]) and c.get("outputs") for c in cells)


# ---------------------------------------------------------------------------- failures


def test_failing_step_fails_alone_and_skips_its_dependents(runner, project):
    out = runner.run("failing_step", max_parallel=2)
    explode_cell = project.cell_index("failing_step", "%%executor explode")

    assert out.result.status == "failed" and out.result.exit_code == 1
    assert out.statuses() == {"prepare": "succeeded", "explode": "failed",
                              "after_explode": "skipped", "independent": "succeeded"}
    error = out.state.steps["explode"].error
    assert error is not None
    assert error.cell == explode_cell
    assert error.ename == "ValueError" and error.evalue == "this step fails on purpose"
    assert any("fails on purpose" in line for line in error.traceback)

    failed = out.of("explode", "step_failed")
    assert len(failed) == 1
    assert failed[0].data["cell"] == explode_cell and failed[0].data["ename"] == "ValueError"
    assert lifecycle(out, "after_explode") == ["step_queued", "step_skipped"]
    assert out.of("after_explode", "step_skipped")[0].data.get("upstream") == "explode"
    assert out.state.steps["after_explode"].attempts == 0
    assert not out.step_dir("after_explode").joinpath("output.ipynb").exists()
    assert out.output("independent", "greeting") == "the independent branch still runs"
    assert out.events[-1].type == "run_finished" and out.events[-1].data["status"] == "failed"

    nb = json.loads(out.step_dir("explode").joinpath("output.ipynb").read_text(encoding="utf-8"))
    banners = [c for c in nb["cells"] if c["cell_type"] == "markdown"
               and "An Exception was encountered" in "".join(c["source"])]
    assert banners, "the output notebook keeps papermill's error banner"
    errors = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert [o["ename"] for o in errors] == ["ValueError"]


def test_failing_step_mlflow_statuses(runner, project):
    out = runner.run("failing_step", max_parallel=2)
    assert out.result.status == "failed"

    parent, steps = mlflow_runs(project, "failing-step")
    assert parent.info.run_id == out.result.mlflow_run_id
    assert parent.info.status == "FAILED"
    assert {name: run.info.status for name, run in steps.items()} == {
        "prepare": "FINISHED", "independent": "FINISHED", "explode": "FAILED", "after_explode": "KILLED"}
    for run in steps.values():
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["scanflow.cache_hit"] == "false"
    assert steps["explode"].data.tags["scanflow.attempt"] == "1"


# ---------------------------------------------------------------------------- cache


def test_cache_reuses_unchanged_steps_and_reruns_edited_ones(runner, project):
    first = runner.run("linear_chain")
    assert first.statuses() == dict.fromkeys(LINEAR, "succeeded")

    second = runner.run("linear_chain")
    assert second.statuses() == dict.fromkeys(LINEAR, "cached")
    assert second.result.status == "succeeded"
    assert not second.of(type_="step_started")
    for step in LINEAR:
        assert lifecycle(second, step) == ["step_queued", "step_cached"], step
        assert second.state.steps[step].cached_from == first.result.run_id
        assert second.state.steps[step].cache_key == first.state.steps[step].cache_key
    assert second.output("report", "summary") == first.output("report", "summary")
    parent, steps = mlflow_runs_of(project, "linear-chain", second.result.mlflow_run_id)
    assert {n: r.data.tags["scanflow.cache_hit"] for n, r in steps.items()} == dict.fromkeys(LINEAR, "true")

    # edit only the body of the last executor: only it runs
    project.edit_cell("linear_chain", "%%executor report", REPORT_WITH_MIN)
    third = runner.run("linear_chain")
    assert third.statuses() == {"extract": "cached", "transform": "cached", "report": "succeeded"}
    assert lifecycle(third, "report") == ["step_queued", "step_started", "step_succeeded"]
    assert third.state.steps["report"].cache_key != first.state.steps["report"].cache_key
    assert third.output("report", "summary") == {"count": 10, "mean": 39, "max": 90, "min": 10}

    # comments, blank lines and spacing do not change the cache key
    project.edit_cell("linear_chain", "%%executor report", REPORT_WITH_MIN_COMMENTED)
    fourth = runner.run("linear_chain")
    assert fourth.statuses() == dict.fromkeys(LINEAR, "cached")
    assert fourth.state.steps["report"].cached_from == third.result.run_id

    # --no-cache runs everything
    fifth = runner.run("linear_chain", no_cache=True)
    assert fifth.statuses() == dict.fromkeys(LINEAR, "succeeded")
    for step in LINEAR:
        assert lifecycle(fifth, step) == ["step_queued", "step_started", "step_succeeded"], step
    assert fifth.output("report", "summary")["min"] == 10


# ---------------------------------------------------------------------------- parameters


def expected_result(n_rows: int, learning_rate: float, label: Any) -> dict[str, Any]:
    rows = [{"x": i, "y": round(i * learning_rate, 3)} for i in range(n_rows)]
    return {"n_rows": n_rows, "learning_rate": learning_rate, "label": label,
            "total_y": round(sum(r["y"] for r in rows), 3)}


def test_params_override_changes_output_and_cache_key(runner):
    default = runner.run("parameterised")
    assert default.output("report", "result") == expected_result(50, 0.1, "demo")

    override = runner.run("parameterised", params={"n_rows": 7})
    assert override.statuses() == {"make_data": "succeeded", "report": "succeeded"}
    assert override.state.params == {"n_rows": 7, "learning_rate": 0.1, "label": "demo"}
    assert len(override.output("make_data", "rows")) == 7
    assert override.output("report", "result") == expected_result(7, 0.1, "demo")
    for step in ("make_data", "report"):
        assert override.state.steps[step].cache_key != default.state.steps[step].cache_key, step

    # the same override again is a cache hit: the key depends on the values, deterministically
    again = runner.run("parameterised", params={"n_rows": 7})
    assert again.statuses() == {"make_data": "cached", "report": "cached"}
    assert again.state.steps["make_data"].cached_from == override.result.run_id


def test_unknown_parameter_is_invalid(runner, project):
    from scanflow_jupyter.runtime.runner import InvalidApplication

    with pytest.raises(InvalidApplication) as info:
        runner.run("parameterised", params={"n_row": 7})
    assert [m.code for m in info.value.messages] == ["unknown-parameter"]
    assert project.run_folders() == []
    assert project.mlflow_run_count() == 0


# ---------------------------------------------------------------------------- --only


def test_only_before_any_run_is_invalid(runner, project):
    from scanflow_jupyter.runtime.runner import InvalidApplication

    with pytest.raises(InvalidApplication) as info:
        runner.run("linear_chain", only=["report"])
    codes = [m.code for m in info.value.messages]
    assert "no-upstream-outputs" in codes, codes
    message = next(m for m in info.value.messages if m.code == "no-upstream-outputs")
    assert "transform" in message.text and message.fix
    assert project.run_folders() == [], "nothing may be created for an invalid request"
    assert project.mlflow_run_count() == 0


def test_only_runs_the_step_with_upstream_outputs_reused(runner, project):
    full = runner.run("linear_chain")
    assert full.statuses() == dict.fromkeys(LINEAR, "succeeded")

    # unchanged code, cache off: the selected step runs, upstream outputs are reused
    only = runner.run("linear_chain", only=["report"])  # --only re-executes the step even when cached
    assert only.statuses() == {"extract": "cached", "transform": "cached", "report": "succeeded"}
    assert lifecycle(only, "report") == ["step_queued", "step_started", "step_succeeded"]
    assert not only.of("extract", "step_started") and not only.of("transform", "step_started")
    assert only.state.steps["transform"].cached_from == full.result.run_id
    assert only.output("report", "summary") == full.output("report", "summary")

    # edited selected step, cache on: it runs with the new code
    project.edit_cell("linear_chain", "%%executor report", REPORT_WITH_MIN)
    edited = runner.run("linear_chain", only=["report"])
    assert edited.statuses() == {"extract": "cached", "transform": "cached", "report": "succeeded"}
    assert edited.output("report", "summary")["min"] == 10

    # a step's downstream is not part of an --only run
    middle = runner.run("linear_chain", only=["transform"], no_cache=True)
    assert middle.statuses() == {"extract": "cached", "transform": "succeeded"}
    assert not middle.of("report")


# ---------------------------------------------------------------------------- --resume


def test_resume_reruns_only_what_did_not_succeed(runner, project):
    failed = runner.run("failing_step")
    assert failed.result.status == "failed"

    project.edit_cell("failing_step", "%%executor explode", EXPLODE_FIXED)
    resumed = runner.run("failing_step", resume=failed.result.run_id)

    assert resumed.result.run_id != failed.result.run_id
    assert resumed.result.status == "succeeded"
    assert resumed.statuses() == {"prepare": "cached", "explode": "succeeded",
                                  "after_explode": "succeeded", "independent": "cached"}
    assert resumed.state.resumed_from == failed.result.run_id
    for step in ("prepare", "independent"):
        assert not resumed.of(step, "step_started"), step
        assert resumed.state.steps[step].cached_from == failed.result.run_id
    assert resumed.output("explode", "doubled") == [2, 4, 6]
    assert resumed.output("after_explode", "total") == 12


def test_resume_of_unknown_run_is_invalid(runner, project):
    from scanflow_jupyter.runtime.runner import InvalidApplication

    with pytest.raises(InvalidApplication) as info:
        runner.run("linear_chain", resume="20990101T000000-abcdef")
    assert [m.code for m in info.value.messages] == ["unknown-run"]
    assert project.run_folders() == []


# ---------------------------------------------------------------------------- retries, timeout


def test_retries_a_flaky_step(runner, project):
    marker = project.root / "attempt-1.marker"
    nb = project.write_notebook("flaky", [
        "%load_ext scanflow_jupyter\n%scanflow_app flaky",
        "%%executor flaky --retries 2 --outputs value\n"
        "import pathlib\n"
        f"marker = pathlib.Path({str(marker)!r})\n"
        "if not marker.exists():\n"
        "    marker.write_text('attempt 1 was here')\n"
        "    raise RuntimeError('attempt 1 fails on purpose')\n"
        "value = 42\n",
    ])
    out = runner.run(nb)

    assert out.result.status == "succeeded"
    assert out.statuses() == {"flaky": "succeeded"}
    assert out.result.steps["flaky"].attempts == 2
    assert out.state.steps["flaky"].attempts == 2
    assert lifecycle(out, "flaky") == ["step_queued", "step_started", "step_retrying",
                                       "step_started", "step_succeeded"]
    retrying = out.of("flaky", "step_retrying")[0]
    assert retrying.attempt == 1
    assert retrying.data["next_attempt"] == 2 and retrying.data["ename"] == "RuntimeError"
    assert [e.attempt for e in out.of("flaky", "step_started")] == [1, 2]
    assert out.of("flaky", "step_succeeded")[0].attempt == 2
    starts = [e.data["kernel_pid"] for e in out.of("flaky", "step_started")]
    assert starts[0] != starts[1], "every attempt gets a fresh kernel"
    assert out.output("flaky", "value") == 42
    assert marker.read_text() == "attempt 1 was here"


def test_timeout_stops_the_step(runner, project):
    marker = project.root / "slept.marker"
    nb = project.write_notebook("slow", [
        "%load_ext scanflow_jupyter\n%scanflow_app slow",
        "%%executor slow --timeout 1\n"
        "import time\n"
        "time.sleep(30)\n"
        f"open({str(marker)!r}, 'w').close()\n",
    ])
    out = runner.run(nb)

    assert out.result.status == "failed"
    assert out.statuses() == {"slow": "failed"}
    error = out.state.steps["slow"].error
    assert error is not None and error.ename == "TimeoutError"
    assert out.of("slow", "step_failed")[0].data["ename"] == "TimeoutError"
    # interrupted, not waited for: shorter than the sleep, the kernel is gone, code after it never ran
    assert out.result.steps["slow"].duration_s < 30
    pid = out.of("slow", "step_started")[0].data["kernel_pid"]
    assert not pid_alive(pid), f"kernel {pid} of the timed-out step is still alive"
    assert not marker.exists()
