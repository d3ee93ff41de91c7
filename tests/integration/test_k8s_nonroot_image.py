"""A step image runs the way a Pod Security `restricted` pod runs it: as a uid with no passwd entry.

The cluster tests (kwok) admit the pods but run no container; this one runs the real image on the
real Docker Engine with what the Workflow's pod gets: its command and arguments, the pod's user
(numeric, non-root, not in the image's /etc/passwd), no capabilities, no privilege escalation,
its environment (HOME, USER, LOGNAME, parameters) and a run-store volume writable by the pod's
group (what `fsGroup` does to the PVC). Images come from `scanflow build` (cached by content hash).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from test_docker_support import *  # noqa: F403 - the Docker fixtures

from scanflow_jupyter.kubernetes.manifests import POD_USER_ENV, RUN_AS_USER
from scanflow_jupyter.kubernetes.workflow import STORE_MOUNT, WorkflowOptions, compile_workflow

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

RUN_ID = "20261204T060000-n0r00t"


def _pod_container(app: Any, images: dict[str, str], step: str) -> dict[str, Any]:
    wf = compile_workflow(app, WorkflowOptions(images=images, run_id=RUN_ID, store_claim="runs"))
    template = next(t for t in wf["spec"]["templates"] if t.get("container") and t["name"] == step)
    return {"container": template["container"], "pod": wf["spec"]["securityContext"]}


def test_step_images_run_as_a_non_root_uid_without_passwd_entry(docker_project: Any, docker_client: Any,
                                                                tmp_path: Path) -> None:
    from scanflow_jupyter.runtime.runner import load_application

    code, doc = docker_project.cli_json("build", "tiny.ipynb", "--json", timeout=1200)
    assert code == 0, doc
    images = {name: step["image"] for name, step in doc["steps"].items()}
    app, _ = load_application(docker_project.root / "tiny.ipynb")
    store = tmp_path / "store"
    store.mkdir()
    gid = RUN_AS_USER
    os.chown(store, 0, gid)  # what fsGroup does to the PVC: group-owned, group-writable, setgid
    store.chmod(0o2770)
    for step in ("first", "second"):
        spec = _pod_container(app, images, step)
        container, pod = spec["container"], spec["pod"]
        assert pod["runAsNonRoot"] and pod["runAsUser"] == RUN_AS_USER
        args = {f"{{{{workflow.parameters.{p}}}}}": repr(v) for p, v in app.parameters.items()}
        env = {e["name"]: args.get(e["value"], e["value"]) for e in container["env"] if "value" in e}
        # a uid the image does not know (pods get whatever the cluster or the manifest says)
        user = f"{RUN_AS_USER + 4242}:{gid}"
        output = docker_client.containers.run(
            container["image"], command=container["command"] + container["args"], user=user,
            working_dir=container["workingDir"], environment=env, cap_drop=["ALL"],
            security_opt=["no-new-privileges"], volumes={str(store): {"bind": STORE_MOUNT, "mode": "rw"}},
            group_add=[str(gid)], remove=True, stdout=True, stderr=True)
        text = output.decode(errors="replace")
        assert '"status": "succeeded"' in text, text[-4000:]
    step_dir = store / RUN_ID / "second"
    assert (step_dir / "output.ipynb").exists()
    assert "second 3" in (step_dir / "log.txt").read_text(encoding="utf-8")


def test_the_image_user_home_and_workdir_are_usable_by_any_uid(docker_project: Any, docker_client: Any) -> None:
    code, doc = docker_project.cli_json("build", "tiny.ipynb", "--json", timeout=1200)
    assert code == 0, doc
    image = doc["steps"]["first"]["image"]
    script = ("import os, pathlib, tempfile; pathlib.Path('written-by-step.txt').write_text('x'); "
              "pathlib.Path(os.path.expanduser('~/.cache/x')).mkdir(parents=True); print(os.getcwd(), os.getuid())")
    out = docker_client.containers.run(image, command=["python", "-c", script], user="54321:54321", cap_drop=["ALL"],
                                       security_opt=["no-new-privileges"], remove=True).decode()
    assert out.split() == ["/opt/scanflow", "54321"]
    # MLflow names the run's user from the pod's USER (getpass.getuser() fails for a uid without passwd entry)
    mlflow_run = ("import mlflow; mlflow.set_tracking_uri('file:///tmp/mlruns'); run = mlflow.start_run(); "
                  "mlflow.log_metric('m', 1); mlflow.end_run(); print(run.data.tags.get('mlflow.user'))")
    out = docker_client.containers.run(image, command=["python", "-c", mlflow_run], user="54321:54321",
                                       cap_drop=["ALL"], security_opt=["no-new-privileges"], remove=True,
                                       environment={**POD_USER_ENV, "MLFLOW_ALLOW_FILE_STORE": "true"}).decode()
    assert out.split()[-1] == POD_USER_ENV["USER"], out
