"""Benchmark 6: container images and the docker backend (needs a Docker Engine: `make docker`).

* the offline base image (mmdebstrap | docker import), built under a throw-away tag so the
  cached one (and every image built on it) stays valid — informative;
* a cold build of a 3-step notebook as on a machine that has only the base image: a certificate
  folder of its own makes every layer above the base new (images still share layers with each
  other, as in any build), import check included;
* the rebuild after editing one step's body: only that step's last layers — goal ≤ 0.05× cold;
* per-step overhead of `scanflow run --backend docker` vs `--backend local`: the median
  duration of trivial steps (images already built) — informative.

    python -m tests.benchmarks.bench_docker [--reps 3] [--skip-base]   (prints, writes nothing)
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.benchmarks.results import Row, table
from tests.benchmarks.util import BenchError, clean_env, median, temp_root

STEPS = 3
BIN = Path(sys.executable).parent


def _notebook(path: Path, app: str, edit: str = "") -> Path:
    from tests.bad_inputs.cases import build_notebook

    cells: list[Any] = [
        f"%load_ext scanflow_jupyter\n%scanflow_app {app}",
        {"source": "n = 3", "tags": ["parameters"]},
        "%%setup\nimport json",
        "%%executor first --outputs numbers\nimport threadpoolctl\nnumbers = list(range(n))",
        f"%%executor second --inputs numbers --outputs total\nimport joblib\ntotal = sum(numbers){edit}",
        "%%executor third --inputs total --outputs report\nreport = json.dumps({'total': total})",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(build_notebook(cells), indent=1) + "\n", encoding="utf-8")
    return path


def _fresh_certs(folder: Path) -> Path | None:
    from scanflow_jupyter.build.builder import DEFAULT_CA_CERTS

    folder.mkdir(parents=True, exist_ok=True)
    host = sorted(Path(os.environ.get("SCANFLOW_CA_CERTS", DEFAULT_CA_CERTS)).glob("*.crt"))
    for cert in host:
        (folder / cert.name).write_bytes(cert.read_bytes())
    if not host:
        return None  # nothing to vary: the cold build then disables the layer cache instead
    (folder / f"bench-{secrets.token_hex(4)}.crt").write_bytes(host[0].read_bytes())
    return folder


def _cli(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 1800) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    proc = subprocess.run([str(BIN / "scanflow"), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    seconds = time.perf_counter() - started
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise BenchError(f"scanflow {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}") from None
    if proc.returncode != 0:
        raise BenchError(f"scanflow {' '.join(args)} exited {proc.returncode}: {json.dumps(doc)[:2000]}")
    return seconds, doc


def docker(root: Path, reps: int, *, base_build: bool = True, progress: Any = print) -> list[Row]:
    from scanflow_jupyter.build.base import ensure_base_image
    from scanflow_jupyter.build.builder import EngineUnavailable, ImageBuilder, docker_client
    from scanflow_jupyter.notebook.parser import parse_notebook

    try:
        client = docker_client()
    except EngineUnavailable as exc:
        raise BenchError(str(exc)) from exc
    rows: list[Row] = []
    base, built_now, base_seconds = ensure_base_image(client)
    if base_build and not built_now:
        scratch = f"scanflow/base-bench:{secrets.token_hex(4)}"
        progress(f"  base image under {scratch}")
        _tag, _built, base_seconds = ensure_base_image(client, tag=scratch)
        client.images.remove(scratch, force=True)
    if base_build or built_now:
        rows.append(Row("docker_base_image", "offline base image (mmdebstrap | docker import)", base_seconds,
                        base_seconds, "-", 1.0, "fraction", None,
                        ["mmdebstrap --variant=minbase + merged-usr hook: python3, venv, pip, ca-certificates"]))
    os.environ.setdefault("SCANFLOW_BASE_IMAGE", base)
    base_ref = os.environ["SCANFLOW_BASE_IMAGE"]

    folder = root / "docker"
    app = f"bench{secrets.token_hex(3)}"
    notebook = _notebook(folder / "three.ipynb", app)
    # A certificate folder of its own (the host's + one under a new name) changes the layer right
    # above the base: every later layer is built fresh, as on a machine that only has the base.
    certs = _fresh_certs(folder / "certs")
    progress(f"  cold build of {notebook.name} (app {app}, nothing cached above the base)")
    started = time.perf_counter()
    report = ImageBuilder(parse_notebook(notebook), base=base_ref, ca_certs=certs).build(rebuild=certs is None)
    cold = time.perf_counter() - started
    if sorted(n for n, r in report.images.items() if r.built) != ["first", "second", "third"]:
        raise BenchError("the cold build reused an image")
    if report.import_problems:
        raise BenchError(f"import check failed: {report.import_problems}")
    images = [r.image for r in report.images.values()]

    rebuilds: list[float] = []
    for rep in range(reps):
        _notebook(notebook, app, edit=f"  # edit {rep}")
        progress(f"  rebuild after editing step 'second' ({rep + 1}/{reps})")
        started = time.perf_counter()
        again = ImageBuilder(parse_notebook(notebook), base=base_ref, ca_certs=certs).build()
        rebuilds.append(time.perf_counter() - started)
        built = sorted(n for n, r in again.images.items() if r.built)
        if built != ["second"]:
            raise BenchError(f"editing step 'second' rebuilt {built}")
        images.append(again.images["second"].image)
    rebuild = median(rebuilds)
    rows.append(Row("docker_cold_build", f"cold build of a {STEPS}-step notebook (3 images, base only cached)", cold,
                    cold, "-", 1.0, "fraction", None,
                    [f"base {base_ref}; runtime layer (ipykernel, nbclient, nbformat, cloudpickle, mlflow-skinny, "
                     "papermill, pinned) + threadpoolctl / joblib; import check included"]))
    rows.append(Row("docker_rebuild_one_step", "rebuild after editing one step vs cold build", rebuild, cold,
                    "cold build", rebuild / cold, "fraction", 0.05,
                    [f"median of {reps}; only the edited step's notebook layer is rebuilt, the others are reused"],
                    {"rebuild_s": rebuilds}))

    env = clean_env(SCANFLOW_HOME=str(folder / ".scanflow"))
    _cli(["run", notebook.name, "--backend", "docker", "--json"], folder, env)  # warm-up: MLflow store, images
    _cli(["run", notebook.name, "--backend", "local", "--json"], folder, env)
    timings: dict[str, list[float]] = {"docker": [], "local": []}
    steps: dict[str, list[float]] = {"docker": [], "local": []}
    for rep in range(reps):
        for backend in ("local", "docker"):
            progress(f"  {backend} run, {STEPS} trivial steps ({rep + 1}/{reps})")
            seconds, doc = _cli(["run", notebook.name, "--backend", backend, "--no-cache", "--json"], folder, env)
            if doc["status"] != "succeeded":
                raise BenchError(f"{backend} run ended {doc['status']}")
            timings[backend].append(seconds)
            steps[backend] += [doc["steps"][name]["duration_s"] for name in ("second", "third")]
    docker_s, local_s = median(timings["docker"]), median(timings["local"])
    docker_step, local_step = median(steps["docker"]), median(steps["local"])
    rows.append(Row("docker_step_overhead", "per-step overhead, docker vs local backend (trivial steps)",
                    docker_step, local_step, "local backend", docker_step - local_step, "overhead", None,
                    [f"median duration of steps 2-3 of a {STEPS}-step chain over {reps} `scanflow run --no-cache` runs "
                     "(step 1 also waits for the image check); docker = a fresh kernel in the step's own container, "
                     "both started while the step before ran (warm containers, SCANFLOW_DOCKER_WARM), "
                     "local = a kernel pre-started by the warm pool",
                     f"whole `scanflow run` wall time, medians: docker {docker_s:.2f} s, local {local_s:.2f} s"],
                    {"docker_run_s": timings["docker"], "local_run_s": timings["local"],
                     "docker_step_s": steps["docker"], "local_step_s": steps["local"]}))
    built = {image.id for image in client.images.list(filters={"label": f"scanflow.io/app={app}"})}
    for image in set(images) | built:
        try:
            client.images.remove(image, force=True)
        except Exception:  # noqa: BLE001 - shared layers stay; this only drops the bench images
            pass
    return rows


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.bench_docker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--skip-base", action="store_true", help="do not time a base image build")
    args = parser.parse_args(argv)
    root = temp_root()
    rows = docker(root, args.reps, base_build=not args.skip_base,
                  progress=lambda text: print(text, file=sys.stderr, flush=True))
    print(table(rows))
    for row in rows:
        for note in row.notes:
            print(f"  {row.key}: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
