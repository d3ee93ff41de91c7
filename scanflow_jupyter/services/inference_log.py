"""The inference log: sampled requests and predictions as parquet under `.scanflow/services/NAME/inference/`.

Each row: `ts` (UTC timestamp), `service`, `model_version`, `latency_ms`, `status` (HTTP),
`inputs` (JSON of the parsed inputs: a DataFrame as records), `predictions` (JSON), `truncated`
(a field longer than `max_field_chars` was cut). Rows are buffered and written by a background
thread as `part-<ns>.parquet` files (written to a hidden temporary name, then renamed, so a
reader never sees half a file; `pandas.read_parquet(folder)` reads them all). Sampling keeps a
fraction `sample` of the requests; rotation deletes the oldest parts once the folder exceeds
`max_bytes`.

On Kubernetes (the environment's ConfigMap sets `SCANFLOW_RUN_STORE=s3://BUCKET/...` and the S3
endpoint, its Secret the keys) the parts go to the object store instead:
`s3://BUCKET/services/NAME/part-<ns>.parquet` (one PUT per part: a reader never sees half an
object; no rotation there). `object_store_target(name)` says where, or None (local folder).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import random
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["InferenceLog", "PredictionBatch", "count_rows", "inference_folder", "mirror_parts", "new_parts",
           "object_store_target", "read_batch"]

_log = logging.getLogger("scanflow.services")
_STOP = object()


def _schema() -> Any:
    import pyarrow as pa

    return pa.schema([("ts", pa.timestamp("us", tz="UTC")), ("service", pa.string()),
                      ("model_version", pa.string()), ("latency_ms", pa.float64()), ("status", pa.int32()),
                      ("inputs", pa.string()), ("predictions", pa.string()), ("truncated", pa.bool_())])


def _json(value: Any, limit: int) -> tuple[str, bool]:
    """`value` as JSON text (a DataFrame as records), cut to `limit` characters; (text, cut)."""
    from scanflow_jupyter.services.schema import jsonable

    try:
        if hasattr(value, "to_json") and hasattr(value, "columns"):  # a DataFrame: records, in one step
            text = value.to_json(orient="records")
        elif _plain_array(value):
            text = json.dumps(value.tolist())
        else:
            text = json.dumps(jsonable(value))
    except (TypeError, ValueError):
        text = json.dumps(repr(value))
    return _cut(text, limit)


def _cut(text: str, limit: int) -> tuple[str, bool]:
    return (text, False) if len(text) <= limit else (text[:limit], True)


def _plain_array(value: Any) -> bool:
    """A numpy array of booleans, integers or finite floats (its `tolist()` is already JSON)."""
    kind = getattr(getattr(value, "dtype", None), "kind", None)
    if kind not in ("b", "i", "u", "f") or not hasattr(value, "tolist"):
        return False
    if kind == "f":
        import numpy as np

        return bool(np.isfinite(value).all())
    return True


def _frame_key(frame: Any) -> tuple[Any, ...]:
    """Columns and dtypes of a DataFrame (cheaply: `frame.dtypes` builds a Series each time)."""
    manager = getattr(frame, "_mgr", None)
    dtypes = manager.get_dtypes() if hasattr(manager, "get_dtypes") and getattr(manager, "ndim", 2) == 2 else frame.dtypes
    return tuple(frame.columns), tuple(dtypes)


def _frames_json(values: list[Any], limit: int) -> list[tuple[str, bool]]:
    """`_json` of many values at once: runs of DataFrames with the same columns and dtypes are
    written by one `to_json` (a per-row call costs ~0.1 ms of GIL each, which the request threads
    would wait for); anything else one by one. Same text as `_json` value by value."""
    import pandas as pd

    out: list[tuple[str, bool]] = []
    i = 0
    while i < len(values):
        first = values[i]
        if not isinstance(first, pd.DataFrame) or first.columns.has_duplicates or len(first) == 0:
            out.append(_json(first, limit))
            i += 1
            continue
        key = _frame_key(first)
        j = i + 1
        while (j < len(values) and isinstance(values[j], pd.DataFrame) and len(values[j]) > 0
               and _frame_key(values[j]) == key):
            j += 1
        run = values[i:j]
        try:
            lines = pd.concat(run, ignore_index=True).to_json(orient="records", lines=True).rstrip("\n").split("\n")
        except (TypeError, ValueError):
            out.extend(_json(v, limit) for v in run)
        else:
            at = 0
            for frame in run:
                out.append(_cut("[" + ",".join(lines[at:at + len(frame)]) + "]", limit))
                at += len(frame)
        i = j
    return out


class InferenceLog:
    """Append-only, sampled, size-bounded parquet log of one service."""

    def __init__(self, folder: Path, service: str, *, sample: float = 1.0, max_bytes: int = 64 * 2**20,
                 flush_rows: int = 500, flush_s: float = 2.0, max_field_chars: int = 16384,
                 store: tuple[Any, Any] | None = None) -> None:
        self.folder, self.service = Path(folder), service
        self.store = store  # (S3Client, StoreURI of the service's prefix): parts go there, not to `folder`
        self.sample, self.max_bytes = sample, max_bytes
        self.flush_rows, self.flush_s, self.max_field_chars = flush_rows, flush_s, max_field_chars
        self.rows_written = 0
        self.error: str | None = None
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=100_000)
        self._thread = threading.Thread(target=self._run, name=f"inference-log-{service}", daemon=True)
        self._thread.start()

    def record(self, inputs: Any, predictions: Any, *, version: str | None, latency_ms: float, status: int) -> None:
        """Queue one request (kept with probability `sample`; dropped if the writer is far behind)."""
        if self.sample < 1.0 and random.random() >= self.sample:  # noqa: S311 - sampling, not security
            return
        try:
            self._queue.put_nowait((time.time(), inputs, predictions, version, latency_ms, status))
        except queue.Full:
            pass

    def close(self, timeout: float = 10.0) -> None:
        """Write what is buffered and stop the writer."""
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _run(self) -> None:
        batch: list[Any] = []
        deadline = time.monotonic() + self.flush_s
        while True:
            try:
                item = self._queue.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                item = None
            if item is not None and item is not _STOP:
                batch.append(item)
            if batch and (item is _STOP or len(batch) >= self.flush_rows or time.monotonic() >= deadline):
                self._write(batch)
                batch = []
            if item is None or not batch:
                deadline = time.monotonic() + self.flush_s
            if item is _STOP:
                return

    def _write(self, batch: list[Any]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns: dict[str, list[Any]] = {k: [] for k in ("ts", "service", "model_version", "latency_ms", "status",
                                                          "inputs", "predictions", "truncated")}
        inputs_all = _frames_json([item[1] for item in batch], self.max_field_chars)
        preds_all = _frames_json([item[2] for item in batch], self.max_field_chars)
        for (ts, _inputs, _preds, version, latency_ms, status), (inputs_json, cut_in), (preds_json, cut_out) in zip(
                batch, inputs_all, preds_all, strict=True):
            for key, value in (("ts", int(ts * 1_000_000)), ("service", self.service), ("model_version", version),
                               ("latency_ms", float(latency_ms)), ("status", int(status)), ("inputs", inputs_json),
                               ("predictions", preds_json), ("truncated", cut_in or cut_out)):
                columns[key].append(value)
        try:
            name = f"part-{time.time_ns()}.parquet"
            table = pa.table(columns, schema=_schema())
            if self.store is not None:
                client, uri = self.store
                sink = pa.BufferOutputStream()
                pq.write_table(table, sink)
                client.put(uri.bucket, uri.key(name), sink.getvalue().to_pybytes())
            else:
                self.folder.mkdir(parents=True, exist_ok=True)
                tmp = self.folder / f".{name}.tmp"
                pq.write_table(table, tmp)
                os.replace(tmp, self.folder / name)
                self._rotate()
            self.rows_written += len(batch)
            self.error = None
        except Exception as exc:  # a full disk must not stop the service
            self.error = f"{type(exc).__name__}: {exc}"
            _log.warning("inference log of %s: %s", self.service, self.error)

    def _rotate(self) -> None:
        parts = sorted(self.folder.glob("part-*.parquet"))
        sizes = [p.stat().st_size for p in parts]
        total = sum(sizes)
        for part, size in zip(parts[:-1], sizes[:-1], strict=True):  # never the newest
            if total <= self.max_bytes:
                break
            part.unlink(missing_ok=True)
            total -= size


def object_store_target(service: str, environ: Any = None) -> tuple[Any, Any] | None:
    """(S3Client, `s3://BUCKET/services/SERVICE`) when the environment's run store is an object store
    (`SCANFLOW_RUN_STORE=s3://...` and an S3 endpoint), else None: the log stays in a local folder."""
    from scanflow_jupyter.data.object_store import ENDPOINT_VARS, S3Client, StoreURI

    env = os.environ if environ is None else environ
    store = (env.get("SCANFLOW_RUN_STORE") or "").strip()
    if not store.startswith("s3://") or not any(env.get(v) for v in ENDPOINT_VARS):
        return None
    bucket = StoreURI.parse(store).bucket
    return S3Client.from_env(env), StoreURI(bucket, f"services/{service}")


# -- reading (agents' `new_predictions` trigger) ----------------------------------------------


def inference_folder(home: Path, service: str) -> Path:
    """`<home>/services/SERVICE/inference`: where the service writes its log."""
    return Path(home) / "services" / service / "inference"


def mirror_parts(target: tuple[Any, Any], folder: Path, after: str = "") -> int:
    """Copy the object store's parts named after `after` that `folder` lacks into `folder` (so the
    agents' `new_predictions` trigger reads a service's log on Kubernetes as it does locally), and
    drop the mirrored parts up to `after` (already handled); the number of parts copied."""
    client, uri = target
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("part-*.parquet"):
        if after and old.name <= after:
            old.unlink(missing_ok=True)
    copied = 0
    prefix = uri.key() + "/"
    for key, _size in client.list(uri.bucket, prefix):
        name = key[len(prefix):]
        if "/" in name or not (name.startswith("part-") and name.endswith(".parquet")) or name <= after:
            continue
        if (folder / name).exists():
            continue
        tmp = folder / f".{name}.tmp"
        tmp.write_bytes(client.get(uri.bucket, key))
        os.replace(tmp, folder / name)
        copied += 1
    return copied


def new_parts(folder: Path, after: str = "") -> list[Path]:
    """The complete parts of `folder` written after part name `after` (oldest first)."""
    if not Path(folder).is_dir():
        return []
    return sorted(p for p in Path(folder).glob("part-*.parquet") if p.name > after)


def count_rows(parts: list[Path]) -> int:
    """Rows in `parts` (parquet metadata only); a part deleted by rotation meanwhile counts 0."""
    import pyarrow.parquet as pq

    total = 0
    for part in parts:
        try:
            total += pq.ParquetFile(part).metadata.num_rows
        except (OSError, ValueError):
            continue
    return total


class PredictionBatch(list):  # type: ignore[type-arg]
    """Rows of the inference log (dicts: ts, service, model_version, latency_ms, status, inputs,
    predictions — the JSON fields parsed), oldest first, with helpers for drift checks."""

    def inputs_frame(self) -> Any:
        """Every logged input as one DataFrame row (records, column dicts and single records are
        all flattened); use it as `current` in `ctx.drift_test(reference, current)`."""
        import pandas as pd

        frames = []
        for row in self:
            value = row.get("inputs")
            if isinstance(value, list) and value and isinstance(value[0], dict):
                frames.append(pd.DataFrame.from_records(value))
            elif isinstance(value, dict) and value and all(isinstance(v, list) for v in value.values()):
                frames.append(pd.DataFrame(value))
            elif isinstance(value, dict):
                frames.append(pd.DataFrame([value]))
            elif isinstance(value, list) and value:
                frames.append(pd.DataFrame(value if isinstance(value[0], list) else [value]))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def predictions(self) -> list[Any]:
        """Every prediction, flattened over the requests."""
        out: list[Any] = []
        for row in self:
            value = row.get("predictions")
            out.extend(value if isinstance(value, list) else [value])
        return out


def read_batch(parts: list[Path]) -> PredictionBatch:
    """The rows of `parts` as a PredictionBatch (parts deleted by rotation meanwhile are skipped)."""
    import pandas as pd

    batch = PredictionBatch()
    for part in parts:
        try:
            df = pd.read_parquet(part)
        except (OSError, ValueError):
            continue
        for rec in df.to_dict(orient="records"):
            for key in ("inputs", "predictions"):
                try:
                    rec[key] = json.loads(rec[key]) if not rec.get("truncated") else rec[key]
                except (TypeError, ValueError):
                    pass
            ts = rec.get("ts")
            rec["ts"] = ts.timestamp() if hasattr(ts, "timestamp") else ts
            batch.append(rec)
    return batch
