"""Helpers for the services tests: register real sklearn models in a real MLflow sqlite registry,
start `scanflow serve` as a real process, call it over HTTP."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.conftest import scanflow_command

CUSTOM_SERVICE = '''%%service scorer
from pydantic import BaseModel

class Row(BaseModel):
    age: int
    income: float

LOADS = []

def load():
    LOADS.append(1)
    return {"weight": WEIGHT, "loads": len(LOADS)}

def predict(inputs: list[Row], state):
    if any(r.age < 0 for r in inputs):
        raise ValueError("age must not be negative")
    return [{"score": r.income * state["weight"] + r.age, "loads": state["loads"]} for r in inputs]
'''


MLFLOW_URI_VARS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@contextlib.contextmanager
def mlflow_globals_restored(extra_vars: tuple[str, ...] = ()) -> Iterator[None]:
    """Put MLflow's process-global tracking/registry URIs back to unset, and the variables they export
    (plus `extra_vars`) back to their values, when the block ends: `mlflow.set_tracking_uri` in the
    test process otherwise leaks into every later test and every child it starts."""
    saved = {k: os.environ.get(k) for k in (*MLFLOW_URI_VARS, *extra_vars)}
    try:
        yield
    finally:
        import sys

        if "mlflow" in sys.modules:
            from mlflow.tracking._model_registry import utils as registry_utils
            from mlflow.tracking._tracking_service import utils as tracking_utils

            if tracking_utils._tracking_uri is not None:
                tracking_utils.set_tracking_uri(None)
            registry_utils._registry_uri = None
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

def register_models(tracking_uri: str, name: str = "clf", versions: int = 2) -> list[str]:
    """Register `versions` LogisticRegression models on features f1, f2 (with signatures):
    version 1 predicts f1 > 0, version 2 the opposite (so a swap is visible in every answer)."""
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"f1": rng.normal(size=200), "f2": rng.normal(size=200)})
    done = []
    for i in range(versions):
        y = (x["f1"] > 0).astype(int) if i % 2 == 0 else (x["f1"] <= 0).astype(int)
        model = LogisticRegression().fit(x, y)
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(model, name="model", signature=infer_signature(x, model.predict(x)),
                                            registered_model_name=name)
        done.append(str(info.registered_model_version))
    return done


def set_alias(tracking_uri: str, name: str, alias: str, version: str) -> None:
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri).set_registered_model_alias(name, alias, version)


class Http:
    """JSON over HTTP with urllib (status, parsed body, headers); never raises on 4xx/5xx."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def call(self, method: str, path: str, body: Any = None, raw: bytes | None = None,
             headers: dict[str, str] | None = None, timeout: float = 30) -> tuple[int, Any, dict[str, str]]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - test server
                status, text, hdrs = resp.status, resp.read().decode(), {k.lower(): v for k, v in resp.headers.items()}
        except urllib.error.HTTPError as exc:
            status, text, hdrs = exc.code, exc.read().decode(), {k.lower(): v for k, v in exc.headers.items()}
        try:
            doc = json.loads(text)
        except ValueError:
            doc = text
        return status, doc, hdrs

    def get(self, path: str) -> tuple[int, Any]:
        status, doc, _ = self.call("GET", path)
        return status, doc

    def post(self, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        status, doc, _ = self.call("POST", path, body, **kw)
        return status, doc


class Served:
    """A `scanflow serve NB NAME --port 0` process (stopped with SIGINT, like Ctrl-C)."""

    def __init__(self, root: Path, env: dict[str, str], notebook: Path, name: str, *extra: str,
                 timeout: float = 120) -> None:
        self.proc = subprocess.Popen([*scanflow_command(), "serve", str(notebook), name, "--port", "0", *extra],
                                     cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stderr: list[str] = []
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()
        self.url = ""
        for line in self.proc.stdout:  # the ready line names the URL
            m = re.search(r"ready on (http://\S+)", line)
            if m:
                self.url = m.group(1)
                break
        if not self.url:
            self.proc.wait(timeout)
            raise AssertionError(f"scanflow serve did not become ready (exit {self.proc.returncode}):\n"
                                 + "".join(self.stderr))
        self.http = Http(self.url)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def wait_for(predicate: Any, timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
