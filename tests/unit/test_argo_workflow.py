"""Argo Workflow compilation: golden files for the examples, magics -> pod spec, event translation."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from scanflow_jupyter.kubernetes.argo_run import ArgoFollower, parse_log
from scanflow_jupyter.kubernetes.workflow import (
    LABEL_APP,
    LABEL_RUN_ID,
    LABEL_STEP,
    LABEL_TEAM,
    STORE_MOUNT,
    WorkflowCompileError,
    WorkflowOptions,
    compile_workflow,
    default_namespace,
    dump_yaml,
    export_workflow_yaml,
    parse_image_overrides,
    pinned_reference,
    task_names,
)
from scanflow_jupyter.model import Pipeline
from scanflow_jupyter.notebook.parser import parse_notebook_dict
from scanflow_jupyter.runtime.kubernetes_backend import params_from_env
from scanflow_jupyter.runtime.runner import InvalidApplication, load_application
from tests.conftest import load_script, notebook_dict

ROOT = Path(__file__).resolve().parents[2]
RUN_ID = "20261127T120000-a1b2c3"




def _app(cells: list[str], name: str = "nb.ipynb"):
    return parse_notebook_dict(notebook_dict(cells), name)


def _templates(wf: dict) -> dict[str, dict]:
    return {t["name"]: t for t in wf["spec"]["templates"]}


def _compile(app, **kw):
    kw.setdefault("images", {"*": "registry.example/scanflow/x@sha256:" + "0" * 64})
    kw.setdefault("run_id", RUN_ID)
    return compile_workflow(app, WorkflowOptions(**kw))


@pytest.mark.parametrize("stem", ["diamond", "linear_chain", "parameterised"])
def test_golden_workflows_are_current(stem: str) -> None:
    regen = load_script("regen_argo_golden")
    golden = ROOT / "tests" / "golden" / "argo" / f"{stem}.yaml"
    assert golden.exists(), f"missing {golden}: run python scripts/regen_argo_golden.py"
    assert golden.read_text(encoding="utf-8") == regen.golden_text(stem), \
        "the compiled Workflow changed: run python scripts/regen_argo_golden.py and review the diff"


@pytest.mark.parametrize("stem", ["diamond", "linear_chain", "parameterised", "failing_step"])
def test_one_task_per_executor_with_pipeline_edges(stem: str) -> None:
    app, _ = load_application(ROOT / "notebooks" / f"{stem}.ipynb")
    wf = _compile(app)
    pipeline = Pipeline.from_application(app)
    names = task_names(list(pipeline.steps))
    dag = _templates(wf)["pipeline"]["dag"]
    assert dag["failFast"] is False  # independent branches finish, as locally
    tasks = {t["name"]: sorted(t.get("dependencies") or []) for t in dag["tasks"]}
    assert tasks == {names[s]: sorted(names[d] for d in step.depends_on) for s, step in pipeline.steps.items()}
    assert wf["spec"]["entrypoint"] == "pipeline"
    assert wf["metadata"]["namespace"] == f"scanflow-{stem.replace('_', '-')}-default" == default_namespace(app)
    for step in pipeline.steps:
        tpl = _templates(wf)[names[step]]
        assert tpl["metadata"]["labels"] == {LABEL_APP: app.name, LABEL_TEAM: "default", LABEL_RUN_ID: RUN_ID,
                                             LABEL_STEP: step}
        assert tpl["container"]["volumeMounts"] == [{"mountPath": STORE_MOUNT, "name": "scanflow-store"}]
        assert tpl["container"]["args"][:2] == ["--step", step]


def test_magic_options_become_resources_retries_and_deadlines() -> None:
    app = _app(["%scanflow_app shop --team ml",
                "%%executor make_data --outputs rows --retries 2 --timeout 90.5 --cpu 500m --memory 1Gi --gpu 1\nrows = [1]",
                "%%executor report --inputs rows\nprint(rows)"])
    wf = _compile(app)
    tpl = _templates(wf)
    assert set(tpl) == {"pipeline", "make-data", "report"}
    make = tpl["make-data"]
    assert make["retryStrategy"] == {"limit": 2, "retryPolicy": "Always"}
    assert make["activeDeadlineSeconds"] == 91
    assert make["container"]["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"},
                                              "limits": {"cpu": "500m", "memory": "1Gi", "nvidia.com/gpu": "1"}}
    assert make["container"]["args"] == ["--step", "make_data", "--store", STORE_MOUNT, "--run-id", RUN_ID]
    report = tpl["report"]
    assert "retryStrategy" not in report and "activeDeadlineSeconds" not in report
    assert "resources" not in report["container"]
    assert report["container"]["args"][-2:] == ["--input", "rows=make_data"]
    assert wf["metadata"]["namespace"] == "scanflow-shop-ml"
    assert wf["metadata"]["labels"][LABEL_TEAM] == "ml"


def test_credentials_only_as_secret_references(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "super-secret-value-123")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "another-secret-456")
    app, _ = load_application(ROOT / "notebooks" / "diamond.ipynb")
    wf = _compile(app)
    text = dump_yaml(wf)
    assert "super-secret-value-123" not in text and "another-secret-456" not in text
    container = _templates(wf)["train"]["container"]
    assert container["envFrom"] == [{"configMapRef": {"name": "scanflow-env", "optional": True}}]
    secret_vars = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert secret_vars["AWS_SECRET_ACCESS_KEY"] == {"name": "scanflow-tracker", "key": "aws-secret-access-key",
                                                    "optional": True}
    plain = {e["name"] for e in container["env"] if "value" in e}
    assert not any("SECRET" in n or "PASSWORD" in n or "KEY" in n for n in plain)


def test_every_pod_container_is_pod_security_restricted() -> None:
    # the API server's admission of these pods is tested in tests/integration/test_k8s_pod_security.py
    app, _ = load_application(ROOT / "notebooks" / "diamond.ipynb")
    spec = _compile(app)["spec"]
    assert spec["securityContext"] == {"fsGroup": 1000, "fsGroupChangePolicy": "OnRootMismatch", "runAsGroup": 1000,
                                       "runAsNonRoot": True, "runAsUser": 1000,
                                       "seccompProfile": {"type": "RuntimeDefault"}}
    restricted = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True,
                  "seccompProfile": {"type": "RuntimeDefault"}}
    patch = yaml.safe_load(spec["podSpecPatch"])  # Argo's executor containers, whatever its controller config
    assert patch == {"initContainers": [{"name": "init", "securityContext": restricted}],
                     "containers": [{"name": "wait", "securityContext": restricted}]}
    for name, template in _templates(_compile(app)).items():
        if "container" in template:
            assert template["container"]["securityContext"] == restricted, name
            for var, value in (("HOME", "/tmp"), ("USER", "scanflow"), ("LOGNAME", "scanflow")):
                assert {"name": var, "value": value} in template["container"]["env"], (name, var)


def test_parameters_are_workflow_arguments_read_back_as_literals() -> None:
    app, _ = load_application(ROOT / "notebooks" / "parameterised.ipynb")
    wf = _compile(app, params={"n_rows": 3, "label": "it's"})
    args = {p["name"]: p["value"] for p in wf["spec"]["arguments"]["parameters"]}
    assert args == {"n_rows": "3", "learning_rate": "0.1", "label": '"it\'s"'}
    env = {e["name"]: e["value"] for e in _templates(wf)["report"]["container"]["env"] if "value" in e}
    assert env["SCANFLOW_PARAM_label"] == "{{workflow.parameters.label}}"
    # what the pod reads once Argo has substituted the arguments
    assert params_from_env({f"SCANFLOW_PARAM_{k}": v for k, v in args.items()}) == \
        {"n_rows": 3, "learning_rate": 0.1, "label": "it's"}
    with pytest.raises(WorkflowCompileError, match="no parameter 'epochs'.*n_rows"):
        _compile(app, params={"epochs": 1})
    with pytest.raises(ValueError, match="not a Python literal"):
        params_from_env({"SCANFLOW_PARAM_label": "demo"})


def test_pod_metadata_only_on_the_chosen_step_and_no_run_id_for_export() -> None:
    app, _ = load_application(ROOT / "notebooks" / "failing_step.ipynb")
    wf = _compile(app, run_id=None, pod_metadata={"explode": {"labels": {"scanflow.io/kwok-fail": "true"}}})
    labels = {name: t.get("metadata", {}).get("labels", {}) for name, t in _templates(wf).items()}
    assert labels["explode"]["scanflow.io/kwok-fail"] == "true"
    assert [n for n, lab in labels.items() if "scanflow.io/kwok-fail" in lab] == ["explode"]
    assert "name" not in wf["metadata"] and wf["metadata"]["generateName"] == "scanflow-failing-step-"
    assert LABEL_RUN_ID not in wf["metadata"]["labels"]
    assert _templates(wf)["explode"]["container"]["args"][5] == "{{workflow.name}}"


def test_store_claim_and_volume_claim_template() -> None:
    app, _ = load_application(ROOT / "notebooks" / "linear_chain.ipynb")
    with_claim = _compile(app, store_claim="team-runs")["spec"]
    assert with_claim["volumes"] == [{"name": "scanflow-store", "persistentVolumeClaim": {"claimName": "team-runs"}}]
    assert "volumeClaimTemplates" not in with_claim
    fresh = _compile(app, store_size="3Gi")["spec"]
    assert fresh["volumeClaimTemplates"][0]["spec"]["resources"] == {"requests": {"storage": "3Gi"}}
    assert "volumes" not in fresh


def test_bad_requests_say_how_to_fix_them() -> None:
    app, _ = load_application(ROOT / "notebooks" / "diamond.ipynb")
    with pytest.raises(WorkflowCompileError, match=r"no image for step\(s\) features, stats, train.*--image"):
        _compile(app, images={"load": "scanflow/diamond-load:1"})
    with pytest.raises(WorkflowCompileError, match="no executor named nope"):
        _compile(app, steps=["nope"])
    with pytest.raises(ValueError, match="STEP=REF"):
        parse_image_overrides(["train"])
    assert parse_image_overrides(["*=a:1", "train=b:2"]) == {"*": "a:1", "train": "b:2"}


def test_step_names_become_distinct_dns_labels() -> None:
    names = task_names(["make_data", "make-data", "Report", "pipeline"])
    assert names["make_data"] == "make-data"
    assert names["make-data"].startswith("make-data-") and len(set(names.values())) == 4
    assert names["Report"] == "report" and names["pipeline"].startswith("pipeline-")


def test_pushed_images_are_pinned_by_digest() -> None:
    digest = "127.0.0.1:5000/scanflow/d-train@sha256:" + "ab" * 32
    ref = "127.0.0.1:5000/scanflow/d-train:0123456789ab"
    assert pinned_reference(ref, ["other/x@sha256:00", digest], "127.0.0.1:5000") == digest
    assert pinned_reference(ref, [], "127.0.0.1:5000") == ref  # not pushed: the content tag
    assert pinned_reference("scanflow/d-train:0123456789ab", [digest], None) == "scanflow/d-train:0123456789ab"


def test_export_yaml_and_invalid_notebook(tmp_path: Path) -> None:
    text = export_workflow_yaml(ROOT / "notebooks" / "diamond.ipynb", images={"*": "scanflow/diamond:1"},
                                namespace="team-a")
    doc = yaml.safe_load(text)
    assert doc["kind"] == "Workflow" and doc["metadata"]["namespace"] == "team-a"
    assert {t["container"]["image"] for t in doc["spec"]["templates"] if "container" in t} == {"scanflow/diamond:1"}
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(InvalidApplication):
        export_workflow_yaml(bad, images={"*": "x:1"})


# ------------------------------------------------------------------ status -> events

def _node(wf: str, task: str, phase: str, type_: str = "Pod", suffix: str = "", children=None, started="") -> dict:
    node = {"id": f"{wf}-{task}{suffix}", "name": f"{wf}.{task}{suffix}", "displayName": f"{task}{suffix}",
            "type": type_, "phase": phase, "startedAt": started}
    if children:
        node["children"] = children
    return node


def _workflow(nodes: list[dict], phase: str = "Running") -> dict:
    return {"metadata": {"name": "wf"}, "status": {"phase": phase, "nodes": {n["id"]: n for n in nodes}}}


def _follower(stem: str, retries: dict[str, int] | None = None):
    app, _ = load_application(ROOT / "notebooks" / f"{stem}.ipynb")
    pipeline = Pipeline.from_application(app)
    events: list[tuple] = []
    follower = ArgoFollower(pipeline, list(pipeline.steps), task_names(list(pipeline.steps)), retries or {},
                            lambda t, s, a, **d: events.append((t, s, a, d)))
    return follower, events


def test_follower_failure_skips_dependents_and_lets_branches_finish() -> None:
    follower, events = _follower("failing_step")
    dag = {"id": "wf", "name": "wf", "type": "DAG", "phase": "Running"}
    assert not follower.update(_workflow([dag, _node("wf", "prepare", "Succeeded"), _node("wf", "independent", "Running")]))
    assert not follower.update(_workflow([dag, _node("wf", "prepare", "Succeeded"), _node("wf", "independent", "Succeeded"),
                                          {**_node("wf", "explode", "Failed"), "message": "Error (exit code 1)"}]))
    done = follower.update(_workflow([dag, _node("wf", "prepare", "Succeeded"), _node("wf", "independent", "Succeeded"),
                                      _node("wf", "explode", "Failed")], phase="Failed"))
    assert done
    seen = [(t, s) for t, s, _, _ in events]
    assert seen == [("step_started", "prepare"), ("step_succeeded", "prepare"), ("step_started", "independent"),
                    ("step_succeeded", "independent"), ("step_started", "explode"), ("step_failed", "explode"),
                    ("step_skipped", "after_explode")]
    failed = next(d for t, _, _, d in events if t == "step_failed")
    assert failed["ename"] == "PodFailed" and failed["evalue"] == "Error (exit code 1)"
    skipped = next(d for t, _, _, d in events if t == "step_skipped")
    assert skipped["upstream"] == "explode"


def test_follower_retries_count_attempts() -> None:
    follower, events = _follower("linear_chain", retries={"extract": 1})
    a1 = _node("wf", "extract", "Failed", suffix="(0)", started="2026-01-01T00:00:01Z")
    a2 = _node("wf", "extract", "Succeeded", suffix="(1)", started="2026-01-01T00:00:05Z")
    retry = _node("wf", "extract", "Running", type_="Retry", children=[a1["id"]])
    follower.update(_workflow([retry, a1]))
    retry_done = {**retry, "phase": "Succeeded", "children": [a1["id"], a2["id"]]}
    follower.update(_workflow([retry_done, a1, a2]))
    assert [(t, a) for t, s, a, _ in events if s == "extract"] == [
        ("step_started", 1), ("step_retrying", 1), ("step_started", 2), ("step_succeeded", 2)]


def test_a_new_attempt_without_start_time_is_still_the_next_attempt() -> None:
    """A deleted pod's node is an Error; Argo appends a Pending attempt with no startedAt yet."""
    follower, events = _follower("linear_chain", retries={"extract": 1})
    a1 = _node("wf", "extract", "Running", suffix="(0)", started="2026-01-01T00:00:01Z")
    retry = _node("wf", "extract", "Running", type_="Retry", children=[a1["id"]])
    follower.update(_workflow([retry, a1]))
    a1 = {**a1, "phase": "Error", "message": "pod deleted"}
    a2 = _node("wf", "extract", "Pending", suffix="(1)")
    retry = {**retry, "children": [a1["id"], a2["id"]]}
    follower.update(_workflow([retry, a1, a2]))
    follower.update(_workflow([retry, a1, {**a2, "phase": "Running", "startedAt": "2026-01-01T00:00:09Z"}]))
    done = {**a2, "phase": "Succeeded", "startedAt": "2026-01-01T00:00:09Z"}
    follower.update(_workflow([{**retry, "phase": "Succeeded"}, a1, done]))
    assert [(t, a) for t, s, a, _ in events if s == "extract" and t != "step_log"] == [
        ("step_started", 1), ("step_retrying", 1), ("step_started", 2), ("step_succeeded", 2)]


def test_the_same_node_run_again_after_its_pod_was_deleted_is_the_next_attempt() -> None:
    """Argo v4 may reset the deleted pod's node (Error -> Pending -> Running -> Succeeded) instead of
    adding a child: the snapshots below were recorded from the test cluster's workflow-controller."""
    follower, events = _follower("linear_chain", retries={"extract": 1})
    a1 = _node("wf", "extract", "Running", suffix="(0)", started="2026-01-01T00:00:01Z")
    retry = _node("wf", "extract", "Running", type_="Retry", children=[a1["id"]])
    for phase in ("Running", "Error", "Pending", "Running"):
        follower.update(_workflow([retry, {**a1, "phase": phase, "message": "pod deleted" if phase == "Error" else ""}]))
    follower.update(_workflow([{**retry, "phase": "Succeeded"}, {**a1, "phase": "Succeeded"}], phase="Succeeded"))
    assert [(t, a) for t, s, a, _ in events if s == "extract" and t != "step_log"] == [
        ("step_started", 1), ("step_retrying", 1), ("step_started", 2), ("step_succeeded", 2)]


def test_parse_log_drops_argo_emissary_lines() -> None:
    raw = ('time=2026-12-04T09:33:13.281Z level=INFO msg="waiting for signals" signalPath=/x argo=true\n'
           "my output\nError: exit status 1\n")
    assert parse_log(raw).text == "my output\n"


def test_parse_log_separates_cells_outcome_and_text() -> None:
    prefix = "\x1escanflow-event "
    raw = ("hello\n" + prefix + '{"t": "cell", "index": 3, "cell": 5, "text": "hi\\n"}\n'
           + prefix + '{"t": "outcome", "status": "failed", "error": {"ename": "ValueError"}}\nbye\n')
    summary = parse_log(raw)
    assert summary.text == "hello\nbye\n"
    assert summary.cells[0]["cell"] == 5
    assert summary.outcome["error"]["ename"] == "ValueError"


def test_export_without_images_or_docker_says_how_to_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")  # a real client, nothing answers
    with pytest.raises(WorkflowCompileError, match=r"no Docker Engine answers.*--image STEP=REF"):
        export_workflow_yaml(ROOT / "notebooks" / "linear_chain.ipynb", images={"extract": "x:1"})


def test_the_compiled_workflow_is_validated_before_anything_is_submitted() -> None:
    app, _ = load_application(ROOT / "notebooks" / "diamond.ipynb")
    with pytest.raises(WorkflowCompileError, match=r"nothing was submitted[\s\S]*metadata\.namespace.*'Team_NS'"):
        _compile(app, namespace="Team_NS")
