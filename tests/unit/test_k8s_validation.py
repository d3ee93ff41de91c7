"""Validation of manifests before anything is applied: every problem names object, field and fix."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from scanflow_jupyter.kubernetes import validation as v
from scanflow_jupyter.kubernetes.config import DeployConfig
from scanflow_jupyter.kubernetes.manifests import build_manifests
from scanflow_jupyter.model import Agent, Application
from tests.conftest import load_script

ROOT = Path(__file__).resolve().parents[2]


REGEN = load_script("regen_k8s_golden")


def _find(manifests, kind, name):
    return next(m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name)


def test_schema_version_is_1_36_or_newest_up_to_1_37():
    version = v.schema_version()
    assert version.startswith(("1.36.", "1.37.")), version


@pytest.mark.parametrize("case", sorted(REGEN.CASES))
def test_generated_manifests_are_valid(case):
    assert v.validate_all(REGEN.case_manifests(case)) == []


def test_unknown_field_names_object_and_path():
    manifests = REGEN.case_manifests("agents_loop")
    dep = _find(manifests, "Deployment", "monitor")
    dep["spec"]["template"]["spec"]["containers"][0]["imagePullPolicie"] = "Always"
    problems = v.validate_all(manifests)
    assert len(problems) == 1
    p = problems[0]
    assert p.object == "Deployment/monitor (namespace scanflow-agents-loop-default)"
    assert p.field == "spec.template.spec.containers[0]"
    assert "imagePullPolicie" in p.text and "remove the field" in p.fix


def test_wrong_type_and_missing_required_field():
    manifests = REGEN.case_manifests("services")
    svc = _find(manifests, "Service", "scorer")
    svc["spec"]["ports"][0]["port"] = "eighty"
    hpa = _find(manifests, "HorizontalPodAutoscaler", "scorer")
    del hpa["spec"]["maxReplicas"]
    problems = {(p.object.split(" ")[0], p.field) for p in v.validate_all(manifests)}
    assert ("Service/scorer", "spec.ports[0].port") in problems
    assert ("HorizontalPodAutoscaler/scorer", "spec") in problems


def test_bad_quantities_are_refused_with_their_field():
    manifests = REGEN.case_manifests("agents_loop")
    dep = _find(manifests, "Deployment", "planner")
    dep["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] = "2GB"
    pvc = _find(manifests, "PersistentVolumeClaim", "mlflow-data")
    pvc["spec"]["resources"]["requests"]["storage"] = "five gigs"
    problems = v.validate_all(manifests)
    fields = {p.field: p for p in problems}
    assert "spec.template.spec.containers[0].resources.limits.memory" in fields
    assert "2GB" in fields["spec.template.spec.containers[0].resources.limits.memory"].text
    assert "spec.resources.requests.storage" in fields
    with pytest.raises(v.ManifestInvalid) as info:
        v.check_all(manifests)
    text = str(info.value)
    assert "Deployment/planner" in text and "PersistentVolumeClaim/mlflow-data" in text and "nothing was applied" in text


def test_config_resources_are_checked():
    config = DeployConfig(tracker_image="x:1")
    config.agent_resources.memory_limit = "1 GiB"
    app = Application(name="demo", notebook="demo.ipynb", agents=[Agent("watch", 1, "")])
    problems = v.validate_all(build_manifests(app, config))
    assert [p.field for p in problems] == ["spec.template.spec.containers[0].resources.limits.memory"]


def test_too_long_namespace_is_refused_with_the_fix():
    app = Application(name="a" * 50, notebook="x.ipynb", team="team-with-a-long-name")
    problems = v.validate_all(build_manifests(app, DeployConfig(tracker_image="x:1")))
    ns = [p for p in problems if p.object.startswith("Namespace/") and p.field == "metadata.name"]
    assert ns and "at most 63" in ns[0].text and "--namespace" in ns[0].fix
    assert any(p.field == "metadata.namespace" for p in problems)


def test_label_value_too_long():
    manifests = REGEN.case_manifests("agents_loop")
    manifests[1]["metadata"]["labels"]["scanflow.io/team"] = "t" * 64
    problems = v.validate_all(manifests)
    assert [(p.object.split(" ")[0], p.field) for p in problems] == [
        ("ServiceAccount/scanflow", "metadata.labels.scanflow.io/team")]


def test_service_name_must_start_with_a_letter():
    manifests = REGEN.case_manifests("agents_loop")
    svc = _find(manifests, "Service", "monitor")
    svc["metadata"]["name"] = "9monitor"
    problems = v.validate_all(manifests)
    assert any(p.object.startswith("Service/9monitor") and p.field == "metadata.name" and "letter" in p.text
               for p in problems)


def test_duplicate_objects_are_refused():
    manifests = REGEN.case_manifests("agents_loop")
    problems = v.validate_all([*manifests, copy.deepcopy(manifests[1])])
    assert [p.text for p in problems] == ["the same object appears twice."]


WORKFLOW = {
    "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
    "metadata": {"name": "demo-run", "namespace": "scanflow-demo-default"},
    "spec": {"entrypoint": "main", "templates": [
        {"name": "main", "dag": {"tasks": [{"name": "train", "template": "train"}]}},
        {"name": "train", "container": {"image": "scanflow/demo-train:abc",
                                        "resources": {"limits": {"memory": "1Gi"}}}}]},
}


def test_workflow_gets_the_structural_check():
    assert v.validate_manifest(copy.deepcopy(WORKFLOW)) == []
    bad = copy.deepcopy(WORKFLOW)
    bad["spec"]["entrypoint"] = "nope"
    bad["spec"]["templates"][1]["container"]["resources"]["limits"]["memory"] = "1 gig"
    bad["status"] = {}
    fields = sorted(p.field for p in v.validate_manifest(bad))
    assert fields == ["spec.entrypoint", "spec.templates[1].container.resources.limits.memory", "status"]
    empty = copy.deepcopy(WORKFLOW)
    empty["spec"]["templates"] = []
    assert [p.field for p in v.validate_manifest(empty)] == ["spec.templates"]


def test_unknown_kind_is_refused():
    problems = v.validate_manifest({"apiVersion": "example.com/v1", "kind": "Gizmo", "metadata": {"name": "g"}})
    assert [p.field for p in problems] == ["kind"] and "Gizmo" in problems[0].text


# --- the CLI refuses before it connects ---------------------------------------------------------


def _scanflow(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    code = ("import sys; from scanflow_jupyter.cli import main; main()")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(cwd), "KUBECONFIG": str(cwd / "no-such-config")})


def _write_notebook(path: Path, app_line: str) -> Path:
    from tests.conftest import notebook_dict

    nb = notebook_dict([app_line, "%%agent watcher\nfrom scanflow_jupyter.agents import sensor\n"])
    path.write_text(json.dumps(nb), encoding="utf-8")
    return path


def test_cli_deploy_refuses_invalid_manifests_before_connecting(tmp_path):
    nb = _write_notebook(tmp_path / "long.ipynb", "%scanflow_app " + "a" * 50 + " --team some-long-team")
    proc = _scanflow("deploy", str(nb), "--json", cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert any(p["object"].startswith("Namespace/") and p["field"] == "metadata.name" for p in doc["problems"])
    # with a valid notebook the same kubeconfig fails at the cluster: exit 1, not 2
    ok = _write_notebook(tmp_path / "ok.ipynb", "%scanflow_app short")
    proc = _scanflow("deploy", str(ok), cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "kubeconfig" in proc.stderr and "Fix:" in proc.stderr


def test_cli_export_writes_multi_document_yaml(tmp_path):
    import yaml

    nb = _write_notebook(tmp_path / "ok.ipynb", "%scanflow_app short --team blue")
    proc = _scanflow("export", str(nb), "--to", "k8s", "-o", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    path = tmp_path / "out" / "scanflow-short-blue.yaml"
    assert proc.stdout.strip() == str(path)
    docs = list(yaml.safe_load_all(path.read_text()))
    assert docs[0]["kind"] == "Namespace" and {"Deployment", "Service", "Role"} <= {d["kind"] for d in docs}
    assert v.validate_all(docs) == []
