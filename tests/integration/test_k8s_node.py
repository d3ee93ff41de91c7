"""The test cluster's REAL node (tests/k8s/cluster.sh): kubelet + containerd + CNI + kube-proxy + CoreDNS.

Everything here runs for real on `scanflow-node-0`: containers start from images in the local
registry, logs come from the container runtime, Service names resolve through CoreDNS, memory
limits are enforced by the kernel, Argo's executor (locally built argoexec) passes a value between
two steps. Nothing is faked by kwok; the one kwok test checks that the fake pool is only used when
selected explicitly.
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import require
from tests.integration.test_docker_support import docker_client, offline_base  # noqa: F401
from tests.k8s.fixture import K8sCluster, k8s_cluster, wait_until  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ARGO = {"group": "argoproj.io", "version": "v1alpha1", "plural": "workflows"}
# Pod Security `restricted` for every container here (the images run as 65534 / 8737)
SECURE = {"runAsNonRoot": True, "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
          "seccompProfile": {"type": "RuntimeDefault"}}




@pytest.fixture(scope="module")
def cluster(k8s_cluster: K8sCluster) -> K8sCluster:  # noqa: F811
    if not (k8s_cluster.node and k8s_cluster.registry and k8s_cluster.busybox):
        pytest.fail(f"cluster.sh up printed no real node / registry / busybox image: {k8s_cluster}")
    return k8s_cluster


@pytest.fixture(scope="module")
def api(cluster: K8sCluster) -> Any:
    require("kubernetes")
    return cluster.api_client()


@pytest.fixture(scope="module")
def namespace(api: Any) -> Iterator[str]:
    """A fresh namespace whose default ServiceAccount may write Argo's task results."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    name = f"sf-node-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    wait_until(lambda: [sa.metadata.name for sa in core.list_namespaced_service_account(name).items],
               lambda names: "default" in names, f"ServiceAccount default in {name}")
    rbac = client.RbacAuthorizationV1Api(api)
    rbac.create_namespaced_role(name, {
        "metadata": {"name": "argo-executor"},
        "rules": [{"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"],
                   "verbs": ["create", "patch"]}]})
    rbac.create_namespaced_role_binding(name, {
        "metadata": {"name": "argo-executor"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "argo-executor"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": name}]})
    yield name
    core.delete_namespace(name)


def pod(name: str, image: str, script: str, **spec: Any) -> dict[str, Any]:
    container = {"name": "main", "image": image, "command": ["sh", "-c", script], "securityContext": SECURE,
                 **spec.pop("container", {})}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": spec.pop("labels", {"app": name})},
            "spec": {"restartPolicy": "Never", "containers": [container], **spec}}


def run_pod(api: Any, ns: str, body: dict[str, Any], timeout: float = 120) -> Any:
    """Create the pod and wait until it Succeeded or Failed; return its status."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    core.create_namespaced_pod(ns, body)
    name = body["metadata"]["name"]
    return wait_until(lambda: core.read_namespaced_pod(name, ns),
                      lambda p: p.status.phase in ("Succeeded", "Failed"), f"pod {name} finished", timeout)


def logs(api: Any, ns: str, name: str, container: str = "main") -> str:
    from kubernetes import client

    # raw bytes: this client version returns str(bytes) ("b'...'") for a preloaded log
    resp = client.CoreV1Api(api).read_namespaced_pod_log(name, ns, container=container, _preload_content=False)
    return resp.data.decode()


def test_real_node_is_ready_and_kwok_is_tainted(api: Any, cluster: K8sCluster) -> None:
    from kubernetes import client

    nodes = {n.metadata.name: n for n in client.CoreV1Api(api).list_node().items}
    real = nodes[cluster.node]
    assert {c.type: c.status for c in real.status.conditions}["Ready"] == "True"
    assert real.status.node_info.kubelet_version.startswith("v1.36.")
    assert real.status.node_info.container_runtime_version.startswith("containerd://")
    assert not real.spec.taints, real.spec.taints
    kwok = nodes["kwok-node-0"]
    assert [(t.key, t.value, t.effect) for t in kwok.spec.taints] == [("kwok.x-k8s.io/node", "fake", "NoSchedule")]


def test_pod_runs_and_its_logs_are_read(api: Any, namespace: str, cluster: K8sCluster) -> None:
    token = uuid.uuid4().hex
    status = run_pod(api, namespace, pod("hello", cluster.busybox, f"echo hello-{token}; id -u; hostname"))
    assert status.status.phase == "Succeeded", status.status
    assert status.spec.node_name == cluster.node
    out = logs(api, namespace, "hello").split()
    assert out == [f"hello-{token}", "65534", "hello"], out
    assert status.status.pod_ip.startswith("10.244.0."), status.status.pod_ip


def test_failing_container_fails_the_pod(api: Any, namespace: str, cluster: K8sCluster) -> None:
    status = run_pod(api, namespace, pod("fails", cluster.busybox, "echo about to fail; exit 3"))
    assert status.status.phase == "Failed"
    (state,) = status.status.container_statuses
    assert state.state.terminated.exit_code == 3 and state.state.terminated.reason == "Error"
    assert logs(api, namespace, "fails").strip() == "about to fail"


def test_service_name_resolves_through_coredns_and_answers(api: Any, namespace: str, cluster: K8sCluster) -> None:
    from kubernetes import client

    core = client.CoreV1Api(api)
    token = uuid.uuid4().hex
    server = pod("web", cluster.busybox,
                 f"mkdir -p /tmp/www && echo web-{token} > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www",
                 container={"ports": [{"containerPort": 8080}],
                            "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}})
    server["spec"]["restartPolicy"] = "Always"
    core.create_namespaced_pod(namespace, server)
    core.create_namespaced_service(namespace, {"metadata": {"name": "web"}, "spec": {
        "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}})
    # kube-proxy programs the Service after the EndpointSlice shows a ready endpoint
    discovery = client.DiscoveryV1Api(api)
    wait_until(lambda: [e.conditions.ready for s in discovery.list_namespaced_endpoint_slice(
                   namespace, label_selector="kubernetes.io/service-name=web").items for e in (s.endpoints or [])],
               lambda ready: ready == [True], "EndpointSlice of web with a ready endpoint")
    # Debian's static busybox wget segfaults here (static glibc): the name is resolved by nslookup
    # (through CoreDNS), the HTTP request is sent with nc to the address it returned.
    client_script = (f"nslookup web.{namespace}.svc.cluster.local > /tmp/ns; cat /tmp/ns; "
                     "ip=$(awk '/^Address: /{print $2}' /tmp/ns | tail -n1); "
                     # kube-proxy may program the Service a moment after the EndpointSlice is ready
                     "for i in 1 2 3 4 5 6 7 8 9 10; do "
                     "out=$(printf 'GET / HTTP/1.0\\r\\nHost: web\\r\\n\\r\\n' | nc -w 2 $ip 80) "
                     "&& [ -n \"$out\" ] && break; sleep 1; done; echo \"$out\"; "
                     "if nslookup example.com >/dev/null 2>&1; then echo EXTERNAL-RESOLVED; "
                     "else echo EXTERNAL-NOT-RESOLVED; fi")
    status = run_pod(api, namespace, pod("client", cluster.busybox, client_script))
    out = logs(api, namespace, "client")
    assert status.status.phase == "Succeeded", out
    service_ip = core.read_namespaced_service("web", namespace).spec.cluster_ip
    assert service_ip in out, out  # the name resolved to the Service's cluster IP
    assert f"web-{token}" in out, out  # and the Service answered (kube-proxy -> the pod)
    assert "EXTERNAL-NOT-RESOLVED" in out, out  # CoreDNS has no upstream: DNS stays inside


def _registry(registry: str, method: str, path: str, body: bytes | None = None,
              headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(f"http://{registry}{path}", data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - 127.0.0.1 only
        return resp.status, dict(resp.headers), resp.read()


def test_image_pushed_to_the_local_registry_is_pulled_by_the_node(api: Any, namespace: str,
                                                                   cluster: K8sCluster) -> None:
    """A brand-new image (busybox's layer + a config with a unique env var) is pushed, then pulled."""
    reg = cluster.registry
    repo, tag = cluster.busybox.split("/", 1)[1].split(":")
    oci = "application/vnd.oci.image.manifest.v1+json"
    _, _, raw = _registry(reg, "GET", f"/v2/{repo}/manifests/{tag}", headers={"Accept": oci})
    manifest = json.loads(raw)
    _, _, config_raw = _registry(reg, "GET", f"/v2/{repo}/blobs/{manifest['config']['digest']}")
    token = uuid.uuid4().hex
    config = json.loads(config_raw)
    config["config"]["Env"] = [*config["config"]["Env"], f"SCANFLOW_PROBE={token}"]
    new_config = json.dumps(config).encode()
    digest = "sha256:" + hashlib.sha256(new_config).hexdigest()
    probe = f"probe-{token[:12]}"
    for layer in manifest["layers"]:  # cross-repository mount: the registry links the blob
        status, _, _ = _registry(reg, "POST", f"/v2/{probe}/blobs/uploads/?mount={layer['digest']}&from={repo}")
        assert status == 201
    _, head, _ = _registry(reg, "POST", f"/v2/{probe}/blobs/uploads/")
    location = head["Location"]
    sep = "&" if "?" in location else "?"
    location = location.replace(f"http://{reg}", "")
    status, _, _ = _registry(reg, "PUT", f"{location}{sep}digest={digest}", new_config,
                             {"Content-Type": "application/octet-stream"})
    assert status == 201
    manifest["config"] = {**manifest["config"], "digest": digest, "size": len(new_config)}
    body = json.dumps(manifest).encode()
    status, _, _ = _registry(reg, "PUT", f"/v2/{probe}/manifests/v1", body, {"Content-Type": oci})
    assert status == 201
    image = f"{reg}/{probe}:v1"
    result = run_pod(api, namespace, pod("pulled", image, "echo $SCANFLOW_PROBE",
                                         container={"imagePullPolicy": "Always"}))
    assert result.status.phase == "Succeeded", result.status
    assert logs(api, namespace, "pulled").strip() == token
    (state,) = result.status.container_statuses
    assert state.image_id.endswith(hashlib.sha256(body).hexdigest()), state.image_id
    from kubernetes import client

    events = client.CoreV1Api(api).list_namespaced_event(namespace, field_selector="involvedObject.name=pulled")
    assert any(e.reason == "Pulled" and image in e.message for e in events.items), [e.message for e in events.items]


def test_memory_limit_is_enforced(api: Any, namespace: str, cluster: K8sCluster) -> None:
    # `tail /dev/zero` keeps one endless line in memory
    status = run_pod(api, namespace, pod("hog", cluster.busybox, "tail /dev/zero",
                                         container={"resources": {"limits": {"memory": "32Mi"}}}))
    assert status.status.phase == "Failed", status.status
    (state,) = status.status.container_statuses
    assert state.state.terminated.reason == "OOMKilled", state.state
    assert state.state.terminated.exit_code == 137


def test_argo_dag_runs_on_the_node_and_passes_a_value(api: Any, namespace: str, cluster: K8sCluster) -> None:
    from kubernetes import client

    token = uuid.uuid4().hex
    secure = {"securityContext": SECURE}
    wf = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "pass-value"},
          "spec": {"entrypoint": "main",
                   "securityContext": {"runAsNonRoot": True, "runAsUser": 65534,
                                       "seccompProfile": {"type": "RuntimeDefault"}},
                   "templates": [
                       {"name": "main", "dag": {"tasks": [
                           {"name": "produce", "template": "produce"},
                           {"name": "consume", "template": "consume", "dependencies": ["produce"],
                            "arguments": {"parameters": [
                                {"name": "value", "value": "{{tasks.produce.outputs.parameters.value}}"}]}}]}},
                       {"name": "produce",
                        "container": {"image": cluster.busybox, "command": ["sh", "-c"],
                                      "args": [f"echo -n v-{token} > /tmp/value"], **secure},
                        "outputs": {"parameters": [{"name": "value", "valueFrom": {"path": "/tmp/value"}}]}},
                       {"name": "consume", "inputs": {"parameters": [{"name": "value"}]},
                        "container": {"image": cluster.busybox, "command": ["sh", "-c"],
                                      "args": ["echo got {{inputs.parameters.value}}"], **secure}}]}}
    custom = client.CustomObjectsApi(api)
    started = time.monotonic()
    custom.create_namespaced_custom_object(namespace=namespace, body=wf, **ARGO)
    done = wait_until(lambda: custom.get_namespaced_custom_object(namespace=namespace, name="pass-value", **ARGO),
                      lambda w: w.get("status", {}).get("phase") in ("Succeeded", "Failed", "Error"),
                      "Workflow pass-value finished", timeout=180)
    elapsed = time.monotonic() - started
    assert done["status"]["phase"] == "Succeeded", done["status"]
    nodes = {n["displayName"]: n for n in done["status"]["nodes"].values() if n["type"] == "Pod"}
    assert nodes["produce"]["outputs"]["parameters"][0]["value"] == f"v-{token}"
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector="workflows.argoproj.io/workflow=pass-value")
    assert {p.spec.node_name for p in pods.items} == {cluster.node}
    executor = {c.image for p in pods.items for c in [*(p.spec.init_containers or []), *p.spec.containers]
                if c.name in ("init", "wait")}
    assert len(executor) == 1 and executor.pop().startswith(f"{cluster.registry}/argoexec:"), executor
    consume = next(p for p in pods.items if "consume" in p.metadata.name)
    assert f"got v-{token}" in logs(api, namespace, consume.metadata.name).splitlines()  # + emissary's lines
    print(f"2-step Argo DAG on the real node: {elapsed:.1f}s")


def test_kwok_pool_is_used_only_when_selected(api: Any, namespace: str, cluster: K8sCluster) -> None:
    from kubernetes import client

    core = client.CoreV1Api(api)
    core.create_namespaced_pod(namespace, pod("fake", cluster.busybox, "true",
                                              labels={"scanflow.io/node-pool": "kwok"}))
    core.create_namespaced_pod(namespace, pod("real", cluster.busybox, "true"))
    placed = wait_until(lambda: {n: core.read_namespaced_pod(n, namespace).spec.node_name for n in ("fake", "real")},
                        lambda d: all(d.values()), "both pods scheduled")
    assert placed == {"fake": "kwok-node-0", "real": cluster.node}


def test_scanflow_pipeline_steps_execute_in_their_images_on_the_node(
        api: Any, cluster: K8sCluster, project: Any, offline_base: str, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        tmp_path: Any) -> None:  # noqa: F811
    """`--backend kubernetes` for real: step images built here, pushed to the local registry, pulled
    by the node; each step notebook runs in its pod and writes its outputs to the run store."""
    from kubernetes import client

    from scanflow_jupyter.data.serializers import load_value, read_record
    from scanflow_jupyter.runtime.runner import run_notebook

    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    ns, pv = f"sf-real-{uuid.uuid4().hex[:6]}", f"sf-real-store-{uuid.uuid4().hex[:6]}"
    store = tmp_path / "pv"
    store.mkdir()
    store.chmod(0o777)  # the step images run as a non-root user
    core.create_namespace({"metadata": {"name": ns}})
    rbac.create_namespaced_role(ns, {"metadata": {"name": "argo-executor"}, "rules": [
        {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]}]})
    rbac.create_namespaced_role_binding(ns, {
        "metadata": {"name": "argo-executor"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "argo-executor"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": ns}]})
    core.create_persistent_volume({"metadata": {"name": pv}, "spec": {
        "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "",
        "hostPath": {"path": str(store)}, "persistentVolumeReclaimPolicy": "Retain"}})
    core.create_namespaced_persistent_volume_claim(ns, {"metadata": {"name": "runs"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "storageClassName": "", "volumeName": pv,
        "resources": {"requests": {"storage": "1Gi"}}}})
    for name, value in {"KUBECONFIG": str(cluster.kubeconfig), "SCANFLOW_K8S_NAMESPACE": ns,
                        "SCANFLOW_K8S_STORE_CLAIM": "runs", "SCANFLOW_REGISTRY": cluster.registry,
                        "SCANFLOW_BASE_IMAGE": offline_base}.items():
        monkeypatch.setenv(name, value)
    for name in ("SCANFLOW_K8S_IMAGES", "SCANFLOW_K8S_POD_METADATA", "SCANFLOW_K8S_CONTEXT"):
        monkeypatch.delenv(name, raising=False)
    try:
        result = run_notebook(project.nb("parameterised"), backend="kubernetes", params={"label": "real-node"},
                              handle_signals=False)
        assert result.status == "succeeded", {n: (s.status, s.error) for n, s in result.steps.items()}
        pods = core.list_namespaced_pod(ns).items
        assert {p.metadata.labels.get("scanflow.io/step") for p in pods} == {"make_data", "report"}
        assert {p.spec.node_name for p in pods} == {cluster.node}
        assert all(c.image.startswith(f"{cluster.registry}/") for p in pods for c in p.spec.containers), \
            [c.image for p in pods for c in p.spec.containers]
        outputs = store / result.run_id / "report" / "outputs"
        value = load_value(outputs, read_record(outputs, "result"))
        assert value["label"] == "real-node" and value["n_rows"] == 50, value
        assert "label = real-node" in (store / result.run_id / "report" / "log.txt").read_text(encoding="utf-8")
    finally:
        core.delete_namespace(ns)
        core.delete_persistent_volume(pv)

