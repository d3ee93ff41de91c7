"""Benchmark: deploy a team environment with 5 agents vs `kubectl apply --server-side` of the same YAML.

Against the local control plane of tests/k8s (started with `cluster.sh up`, or reused). Each
measurement deploys into a fresh namespace (its own team name), interleaving Scanflow and kubectl:

* Scanflow: `environment.deploy()` in this process (imports done, as in a long-lived server or
  notebook) — kubeconfig load, manifests, validation of every object, reads of the previous
  state (for created/configured/unchanged) and server-side apply, namespace first.
* baseline: `kubectl apply --server-side -f env.yaml` of the same manifests (`scanflow export`),
  a fresh kubectl process as a user would run it (its discovery cache is warm after the first run).

Informative rows: a no-op re-deploy vs a kubectl re-apply, and the `scanflow deploy` CLI in a
fresh Python process. Every namespace is deleted at the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.benchmarks import notebooks as nbs
from tests.benchmarks.results import Row
from tests.benchmarks.util import BenchError, clean_env, median, timed

AGENTS = 5
GOAL = 1.5
TRACKER_IMAGE = "ghcr.io/mlflow/mlflow:v3.1.0"
CLI = ("from scanflow_jupyter.cli import main; main()")


def agent_cell(i: int) -> str:
    return (f"%%agent agent{i} --template monitor\nfrom scanflow_jupyter.agents import sensor\n\n"
            f"@sensor(every='60s')\ndef tick(ctx):\n    return {i}")


def start_cluster() -> tuple[Path, Path, bool]:
    """(kubeconfig, bin dir, started here) of the tests/k8s control plane (started or reused)."""
    from tests.k8s.fixture import cluster_sh

    was_running = cluster_sh("status").returncode == 0
    up = cluster_sh("up", timeout=3600)
    if up.returncode != 0:
        raise BenchError(f"tests/k8s/cluster.sh up exited {up.returncode}:\n{up.stderr[-2000:]}")
    exports = dict(line[len("export "):].split("=", 1) for line in up.stdout.splitlines()
                   if line.startswith("export ") and "=" in line)
    kubeconfig = Path(exports.get("KUBECONFIG", ""))
    bin_dir = Path(exports.get("PATH", "").split(":", 1)[0])
    if not kubeconfig.is_file() or not (bin_dir / "kubectl").exists():
        raise BenchError(f"cluster.sh up printed no usable KUBECONFIG / kubectl: {up.stdout}")
    return kubeconfig, bin_dir, not was_running


def stop_cluster(started_here: bool, say: Callable[[str], None]) -> None:
    """Stop the cluster if this benchmark started it (as the tests' fixture does; SCANFLOW_K8S_KEEP=1 keeps it)."""
    from tests.k8s.fixture import cluster_sh

    if started_here and os.environ.get("SCANFLOW_K8S_KEEP") != "1":
        say("k8s deploy: stopping the cluster this benchmark started")
        down = cluster_sh("down", timeout=300)
        if down.returncode != 0:
            say(f"`cluster.sh down` exited {down.returncode}: {down.stderr[-500:]}")


def k8s_deploy(root: Path, reps: int, progress: Callable[[str], None] | None = None) -> list[Row]:
    from scanflow_jupyter.kubernetes import environment as env
    from scanflow_jupyter.kubernetes.client import Cluster
    from scanflow_jupyter.kubernetes.config import DeployConfig
    from scanflow_jupyter.kubernetes.manifests import namespace_name, to_yaml
    from scanflow_jupyter.notebook.parser import parse_notebook

    say = progress or (lambda _text: None)
    kubeconfig, bin_dir, started_here = start_cluster()
    kubectl = [str(bin_dir / "kubectl"), "--kubeconfig", str(kubeconfig)]
    folder = root / "k8s"
    nb = nbs.write(nbs.notebook(["%scanflow_app bench-k8s"] + [agent_cell(i) for i in range(AGENTS)]),
                   folder / "bench_k8s.ipynb")
    app = parse_notebook(nb)
    stamp = time.strftime("%H%M%S")

    def config(team: str) -> Any:
        return DeployConfig(kubeconfig=str(kubeconfig), team=team, tracker_image=TRACKER_IMAGE)

    def kubectl_apply(path: Path) -> None:
        proc = subprocess.run([*kubectl, "apply", "--server-side", "--field-manager", "kubectl-bench", "-f",
                               str(path)], capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise BenchError(f"kubectl apply failed: {proc.stderr[-2000:]}")

    def scanflow_deploy(team: str) -> Any:
        cluster = Cluster(kubeconfig=str(kubeconfig))
        try:
            return env.deploy(app, config(team), cluster=cluster)
        finally:
            cluster.close()

    def exported(team: str) -> Path:
        path = folder / f"{team}.yaml"
        path.write_text(to_yaml(env.plan(app, config(team))), encoding="utf-8")
        return path

    teams: list[str] = []
    objects = 0
    fresh_s, fresh_k, noop_s, noop_k, cli_s = [], [], [], [], []
    try:
        # warm-up (untimed): first imports, schema cache, kubectl's discovery cache
        for team in (f"bw{stamp}s", f"bw{stamp}k"):
            teams.append(team)
        scanflow_deploy(teams[0])
        kubectl_apply(exported(teams[1]))
        for i in range(reps):
            say(f"k8s deploy rep {i + 1}/{reps}")
            ts, tk = f"bs{stamp}{i}", f"bk{stamp}{i}"
            teams += [ts, tk]
            path = exported(tk)
            seconds, outcome = timed(lambda ts=ts: scanflow_deploy(ts))
            if set(outcome.counts()) != {"created"}:
                raise BenchError(f"fresh deploy did not create everything: {outcome.counts()}")
            objects = len(outcome.objects)
            fresh_s.append(seconds)
            fresh_k.append(timed(lambda path=path: kubectl_apply(path))[0])
            seconds, outcome = timed(lambda ts=ts: scanflow_deploy(ts))
            if set(outcome.counts()) != {"unchanged"}:
                raise BenchError(f"re-deploy was not a no-op: {outcome.counts()}")
            noop_s.append(seconds)
            noop_k.append(timed(lambda path=path: kubectl_apply(path))[0])
            tc = f"bc{stamp}{i}"
            teams.append(tc)
            environ = clean_env(KUBECONFIG=str(kubeconfig), SCANFLOW_K8S_TRACKER_IMAGE=TRACKER_IMAGE)
            cli_s.append(timed(lambda tc=tc, environ=environ: subprocess.run(
                [sys.executable, "-c", CLI, "deploy", str(nb), "--team", tc, "--json"], env=environ,
                capture_output=True, timeout=300, check=True))[0])
    finally:
        say(f"k8s deploy: deleting {len(teams)} namespaces")
        cluster = Cluster(kubeconfig=str(kubeconfig))
        for team in teams:
            cluster.delete("Namespace", "v1", namespace_name(app, config(team)))
        cluster.close()
        stop_cluster(started_here, say)
    s, k = median(fresh_s), median(fresh_k)
    ns_, nk = median(noop_s), median(noop_k)
    cs = median(cli_s)
    notes = [f"{AGENTS} agents = {objects} objects; {reps} reps, interleaved, each into a fresh namespace",
             f"no-op re-deploy: scanflow {ns_:.3f} s vs kubectl re-apply {nk:.3f} s ({ns_ / nk:.2f}×)",
             f"`scanflow deploy` CLI in a fresh process (imports included): {cs:.3f} s ({cs / k:.2f}× kubectl)"]
    extra = {"objects": objects, "noop_s": ns_, "noop_kubectl_s": nk, "cli_s": cs}
    return [
        Row("k8s_deploy", f"deploy of an environment with {AGENTS} agents (fresh namespace)", s, k,
            "kubectl apply --server-side", s / k, "fraction", GOAL, notes,
            {"scanflow_s": fresh_s, "kubectl_s": fresh_k}, extra),
        Row("k8s_redeploy", "no-op re-deploy of the same environment", ns_, nk, "kubectl re-apply", ns_ / nk,
            "fraction", None, [], {"scanflow_s": noop_s, "kubectl_s": noop_k}, {}),
        Row("k8s_deploy_cli", "`scanflow deploy` CLI, fresh process", cs, k, "kubectl apply --server-side",
            cs / k, "fraction", None, [], {"cli_s": cli_s}, {}),
    ]


if __name__ == "__main__":
    import tempfile

    from tests.benchmarks.results import table

    with tempfile.TemporaryDirectory() as tmp:
        rows = k8s_deploy(Path(tmp), int(sys.argv[1]) if len(sys.argv) > 1 else 3,
                          progress=lambda t: print(t, file=sys.stderr))
    print(table(rows))
    for row in rows:
        for note in row.notes:
            print(f"  {row.key}: {note}")
