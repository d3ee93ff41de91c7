"""`make run`: Scanflow's MNIST story, end to end, narrated.

train (registers mnist, @champion) -> `scanflow services up` (digits serves mnist@champion) ->
`scanflow agents up` (monitor, planner) -> clean test digits -> shifted digits -> the monitor sees
drift in the inference log -> the planner retrains with shifted data -> a new champion -> the service
hot-swaps -> accuracy on shifted digits recovers. Writes story.png (drift and accuracy over time,
also logged to MLflow) and story.json, and stops every service and agent it started, also on
failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "tutorials" / "mnist" / "mnist.ipynb"
SCANFLOW = str(Path(sys.executable).with_name("scanflow"))
IMAGES_PER_REQUEST = 10
DRIFT_SHARE = re.compile(r'"drift_share": ([0-9.eE+-]+)')
MAX_PSI = re.compile(r'"max_psi": ([0-9.eE+-]+)')


class Story:
    """Narration, the timeline for the plot, and the CLI calls of one story."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.notebook = workdir / "mnist.ipynb"
        self.t0 = time.monotonic()
        self.wall0 = time.time()
        self.env = {**os.environ, "SCANFLOW_HOME": str(workdir / ".scanflow")}
        self.env.pop("MLFLOW_TRACKING_URI", None)  # the story's own store: .scanflow/mlflow.db in workdir
        self.events: list[dict[str, Any]] = []
        self.rounds: list[dict[str, Any]] = []
        self.drift: list[dict[str, Any]] = []

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 2)

    def say(self, text: str, *, event: bool = True) -> None:
        t = self.now()
        print(f"[{time.strftime('%H:%M:%S')} +{t:6.1f}s] {text}", flush=True)
        if event:
            self.events.append({"t": t, "text": text})

    def cli(self, *args: str, timeout: float = 300) -> tuple[int, Any]:
        proc = subprocess.run([SCANFLOW, *args], cwd=self.workdir, env=self.env, text=True,
                              capture_output=True, timeout=timeout)
        try:
            return proc.returncode, json.loads(proc.stdout)
        except json.JSONDecodeError:
            return proc.returncode, {"stdout": proc.stdout[-2000:], "stderr": proc.stderr[-2000:]}

    def tracking_uri(self) -> str:
        return f"sqlite:///{self.workdir / '.scanflow' / 'mlflow.db'}"


def notebook_setup(path: Path) -> dict[str, Any]:
    """Execute the notebook's `%%setup` cell: `shift_digits` and `PIXELS` are the notebook's own."""
    cells = json.loads(path.read_text())["cells"]
    source = next("".join(c["source"]) for c in cells if "".join(c["source"]).startswith("%%setup"))
    scope: dict[str, Any] = {}
    exec(compile(source.split("\n", 1)[1], f"{path.name}:%%setup", "exec"), scope)  # noqa: S102 - our notebook
    return scope


def test_digits(setup: dict[str, Any]) -> tuple[Any, Any, Any]:
    """The held-out digits of the notebook's split (test_size 0.25, seed 0) and their shifted copies."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    _, X_test, _, y_test = train_test_split(digits.data / 16.0, digits.target, test_size=0.25,
                                            random_state=0, stratify=digits.target)
    return X_test, setup["shift_digits"](X_test, seed=7), y_test


def send_round(story: Story, http: Any, url: str, columns: list[str], X: Any, y: Any, start: int,
               requests: int, kind: str) -> dict[str, Any]:
    """`requests` POST /predict of IMAGES_PER_REQUEST images each; accuracy and the versions seen."""
    correct = total = 0
    versions: set[str] = set()
    for i in range(requests):
        idx = [(start + i * IMAGES_PER_REQUEST + k) % len(X) for k in range(IMAGES_PER_REQUEST)]
        body = {"dataframe_split": {"columns": columns, "data": X[idx].tolist()}}
        resp = http.post(f"{url}/predict", json=body)
        resp.raise_for_status()
        predictions = [int(p) for p in resp.json()["predictions"]]
        correct += sum(int(p == t) for p, t in zip(predictions, y[idx], strict=True))
        total += len(idx)
        versions.add(resp.headers.get("x-scanflow-model-version", "?"))
    row = {"t": story.now(), "kind": kind, "accuracy": correct / total, "images": total,
           "versions": sorted(versions)}
    story.rounds.append(row)
    return row


def champion(story: Story) -> str | None:
    from mlflow import MlflowClient

    try:
        return str(MlflowClient(story.tracking_uri()).get_model_version_by_alias("mnist", "champion").version)
    except Exception:  # noqa: BLE001 - MlflowException: no champion yet
        return None


def watch_agents(story: Story, seen: dict[str, str]) -> None:
    """Narrate the agents' sensor and actuator calls as they land in experiment mnist-agents; the
    monitor's drift checks (time = when the check started) feed the plot."""
    from mlflow import MlflowClient

    client = MlflowClient(story.tracking_uri())
    pipelines = client.get_experiment_by_name("mnist")
    for run in client.search_runs([pipelines.experiment_id], "attributes.run_name LIKE '20%'") if pipelines else []:
        key = f"pipeline {run.info.run_id} {run.info.status}"
        if key not in seen and "mlflow.parentRunId" not in run.data.tags:
            seen[key] = run.info.status
            story.say(f"training pipeline {run.info.run_name}: {run.info.status.lower()}")
    experiment = client.get_experiment_by_name("mnist-agents")
    if experiment is None:
        return
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"], max_results=5000)
    for run in runs:
        state = run.info.status
        if seen.get(run.info.run_id) == state:
            continue
        seen[run.info.run_id] = state
        tags = run.data.tags
        name = f"{tags.get('scanflow.agent')}.{tags.get('scanflow.call')}"
        started = round(run.info.start_time / 1000 - story.wall0, 1)
        if state == "RUNNING":
            story.say(f"{name} running (since +{started}s)")
            continue
        result = tags.get("scanflow.result", "")
        if tags.get("scanflow.call") == "inference_drift" and (share := DRIFT_SHARE.search(result)):
            psi = MAX_PSI.search(result)
            story.drift.append({"t": started, "drift_share": float(share.group(1)),
                                "max_psi": float(psi.group(1)) if psi else None})
        story.say(f"{name} (started +{started}s, {tags.get('scanflow.status')}): {result[:200]}")


def plot(story: Story, path: Path, threshold: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    if story.drift:
        top.plot([d["t"] for d in story.drift], [d["drift_share"] for d in story.drift], "o-", label="drifted pixels")
    top.axhline(threshold, color="grey", linestyle="--", label="planner threshold")
    top.set_ylabel("share of drifted pixels")
    top.set_ylim(-0.05, 1.05)
    top.legend(loc="upper left")
    for kind, colour in (("clean", "tab:green"), ("shifted", "tab:red")):
        rows = [r for r in story.rounds if r["kind"] == kind]
        bottom.plot([r["t"] for r in rows], [r["accuracy"] for r in rows], "o", color=colour, label=f"{kind} digits")
    for r in story.rounds:
        bottom.annotate("v" + ",".join(r["versions"]), (r["t"], r["accuracy"]), fontsize=7,
                        textcoords="offset points", xytext=(0, 5), ha="center")
    for e in story.events:
        if e["text"].startswith(("hot swap", "sending shifted")):
            for ax in (top, bottom):
                ax.axvline(e["t"], color="tab:blue", alpha=0.4)
    bottom.set_ylabel("accuracy per round")
    bottom.set_xlabel("seconds since the story started")
    bottom.set_ylim(0, 1.05)
    bottom.legend(loc="lower left")
    fig.suptitle("Scanflow MNIST story: drift seen by the monitor, accuracy of the served champion")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def log_to_mlflow(story: Story, png: Path, summary: dict[str, Any]) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(story.tracking_uri())
    experiment = client.get_experiment_by_name("mnist")
    exp_id = experiment.experiment_id if experiment else client.create_experiment("mnist")
    run = client.create_run(exp_id, run_name="tutorial-story", tags={"scanflow.story": "mnist"})
    for r in story.rounds:
        client.log_metric(run.info.run_id, f"accuracy_{r['kind']}", r["accuracy"], timestamp=int(time.time() * 1000),
                          step=int(r["t"]))
    for d in story.drift:
        client.log_metric(run.info.run_id, "drift_share", d["drift_share"], step=int(d["t"]))
    client.log_dict(run.info.run_id, summary, "story.json")
    client.log_artifact(run.info.run_id, str(png))
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def play(story: Story, args: argparse.Namespace) -> dict[str, Any]:
    import httpx

    setup = notebook_setup(story.notebook)
    X_test, X_shifted, y_test = test_digits(setup)
    columns = setup["PIXELS"]

    story.say("training: scanflow run mnist.ipynb (load -> split -> train/baseline -> evaluate)")
    code, out = story.cli("run", str(story.notebook), "--json", timeout=300)
    if code != 0:
        raise RuntimeError(f"the training pipeline failed (exit {code}): {out}")
    first = champion(story)
    story.say(f"trained: mnist version {first} registered with its signature, alias @champion -> v{first}")

    code, out = story.cli("services", "up", str(story.notebook), "digits", "--json", "--poll", "1", timeout=180)
    if code != 0:
        raise RuntimeError(f"scanflow services up failed (exit {code}): {out}")
    url = out["services"][0]["url"]
    story.say(f"serving: digits at {url} (models:/mnist@champion = v{out['services'][0].get('version')})")
    code, out = story.cli("agents", "up", str(story.notebook), "--json", timeout=180)
    if code != 0:
        raise RuntimeError(f"scanflow agents up failed (exit {code}): {out}")
    story.say("agents: monitor (new_predictions('digits')) and planner are up")

    seen: dict[str, str] = {}
    per_check = args.requests
    deadline = time.monotonic() + args.timeout
    with httpx.Client(timeout=60) as http:
        cursor = 0
        for _ in range(2):
            row = send_round(story, http, url, columns, X_test, y_test, cursor, per_check, "clean")
            cursor += per_check * IMAGES_PER_REQUEST
            story.say(f"sent {row['images']} test digits: accuracy {row['accuracy']:.2f} (v{','.join(row['versions'])})")
            time.sleep(1.5)
            watch_agents(story, seen)
        story.say("sending shifted digits (rotated, noisy) from now on")
        swapped_at: float | None = None
        served = {first}
        while time.monotonic() < deadline:
            row = send_round(story, http, url, columns, X_shifted, y_test, cursor, per_check, "shifted")
            cursor += per_check * IMAGES_PER_REQUEST
            story.say(f"sent {row['images']} shifted digits: accuracy {row['accuracy']:.2f} "
                      f"(v{','.join(row['versions'])})", event=False)
            new = set(row["versions"]) - served
            if new:
                served |= new
                swapped_at = story.now()
                story.say(f"hot swap: digits now answers with v{','.join(sorted(new))}, no request failed")
            watch_agents(story, seen)
            after = [r for r in story.rounds if r["kind"] == "shifted" and r["versions"] == [champion(story)]
                     and r["t"] >= (swapped_at or 1e12)]
            if swapped_at is not None and len(after) >= 2:
                break
            time.sleep(1.0)
        else:
            raise RuntimeError(f"no retrained champion served within {args.timeout:.0f}s; see "
                               f"{story.workdir}/.scanflow/agents/ and scanflow agents ls")
    time.sleep(1.0)
    watch_agents(story, seen)
    story.drift.sort(key=lambda d: d["t"])
    final = champion(story)
    before = [r["accuracy"] for r in story.rounds if r["kind"] == "shifted" and r["versions"] == [first]]
    after_acc = [r["accuracy"] for r in story.rounds if r["kind"] == "shifted" and r["versions"] == [final]]
    summary = {"first_champion": first, "final_champion": final,
               "shifted_accuracy_before": sum(before) / len(before) if before else None,
               "shifted_accuracy_after": sum(after_acc) / len(after_acc) if after_acc else None,
               "clean_accuracy": [r["accuracy"] for r in story.rounds if r["kind"] == "clean"],
               "rounds": story.rounds, "drift": story.drift, "events": story.events, "url": url}
    story.say(f"recovered: accuracy on shifted digits {summary['shifted_accuracy_before']:.2f} (v{first}) -> "
              f"{summary['shifted_accuracy_after']:.2f} (v{final})")
    return summary


def stop(story: Story) -> None:
    """Stop the services and agents of the story's notebook (whatever was started)."""
    for kind in ("agents", "services"):
        code, out = story.cli(kind, "down", str(story.notebook), "--json", timeout=120)
        print(f"[{time.strftime('%H:%M:%S')} +{story.now():6.1f}s] stopped {kind} (exit {code})", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=ROOT / ".scanflow" / "tutorial",
                        help="the story's project folder, emptied first (default: .scanflow/tutorial)")
    parser.add_argument("--timeout", type=float, default=180.0,
                        help="seconds of shifted traffic to wait for a retrained champion (default 180)")
    parser.add_argument("--requests", type=int, default=12,
                        help="requests per round = the monitor's min_requests (default 12)")
    args = parser.parse_args(argv)

    workdir = args.workdir.resolve()
    if workdir.exists():
        subprocess.run([SCANFLOW, "agents", "down", "--all"], cwd=workdir, capture_output=True, timeout=120,
                       env={**os.environ, "SCANFLOW_HOME": str(workdir / ".scanflow")})
        subprocess.run([SCANFLOW, "services", "down", "--all"], cwd=workdir, capture_output=True, timeout=120,
                       env={**os.environ, "SCANFLOW_HOME": str(workdir / ".scanflow")})
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    shutil.copy(NOTEBOOK, workdir / "mnist.ipynb")
    story = Story(workdir)

    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored (`cmd &`)
    summary: dict[str, Any] | None = None
    interrupted = False
    try:
        summary = play(story, args)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        interrupted = True
        story.say("interrupted: stopping everything the story started")
    except Exception as exc:  # noqa: BLE001 - narrated, then everything is stopped
        story.say(f"FAILED: {exc}")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited by the `down` subprocesses too
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop(story)
    if summary is None:
        return 130 if interrupted else 1
    png = workdir / "story.png"
    plot(story, png, threshold=0.25)
    summary["png"] = str(png)
    summary["mlflow_run_id"] = log_to_mlflow(story, png, summary)
    (workdir / "story.json").write_text(json.dumps(summary, indent=2))
    story.say(f"plot: {png} (also in MLflow, experiment mnist, run tutorial-story {summary['mlflow_run_id']})")
    print(f"MLflow store: {story.tracking_uri()}  (browse: .venv/bin/mlflow ui --backend-store-uri "
          f"{story.tracking_uri()}); agent calls are in experiment mnist-agents", flush=True)
    ok = summary["final_champion"] != summary["first_champion"] and (
        summary["shifted_accuracy_after"] or 0) > (summary["shifted_accuracy_before"] or 0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
