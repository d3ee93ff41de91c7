"""One service process: `python -m scanflow_jupyter.services.server`.

`scanflow serve` runs it in the foreground (`--notebook NB --name NAME --port P`); the services
supervisor runs it with a spec file and a listening socket it keeps across restarts (`--fd`),
so the port never changes. The HTTP server starts at once (`/health` answers 503) and the model
loads in a background thread; the boot file says `ready` once it is loaded, or `failed` (exit
code 3: the cell or model cannot be served; the reason is in the boot file and the log).
On Kubernetes the service pods run it with `--spec` from the ConfigMap `scanflow-services` and the
environment's tracker; the inference log then goes to its object store (`object_store_target`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from scanflow_jupyter.supervision import listen, watch_parent

__all__ = ["EXIT_FAILED", "ServeOptions", "listen", "main", "serve"]

EXIT_FAILED = 3
_log = logging.getLogger("scanflow.services")


def services_folder(home: Path, name: str) -> Path:
    """`<home>/services/NAME`: the service's inference log (`inference/`), boot file and log."""
    return Path(home) / "services" / name


def _write_boot(path: Path | None, **fields: Any) -> None:
    if path is None:
        return
    from scanflow_jupyter.agents.state import atomic_write_json

    atomic_write_json(path, {"pid": os.getpid(), "at": time.time(), **fields})


class ServeOptions:
    """Knobs of one service process (CLI flags / supervisor spec)."""

    def __init__(self, *, poll_s: float = 5.0, log_sample: float = 1.0, log_max_bytes: int = 64 * 2**20,
                 log_enabled: bool = True) -> None:
        self.poll_s, self.log_sample, self.log_max_bytes, self.log_enabled = poll_s, log_sample, log_max_bytes, log_enabled


def _log_store(name: str) -> Any:
    """Where the inference log goes: the object store of the environment, else None (the local folder)."""
    from scanflow_jupyter.data.object_store import ObjectStoreError
    from scanflow_jupyter.services.inference_log import object_store_target

    try:
        return object_store_target(name)
    except (ObjectStoreError, ValueError) as exc:
        _log.warning("service %s: inference log kept in the local folder: %s", name, exc)
        return None


def serve(spec: Any, sock: socket.socket, *, options: ServeOptions | None = None, boot: Path | None = None,
          parent: int | None = None, announce: bool = False) -> int:
    """Serve `spec` on `sock` until SIGTERM/SIGINT (or the model fails to load: EXIT_FAILED)."""
    import uvicorn

    from scanflow_jupyter.agents import auth
    from scanflow_jupyter.services.app import create_app
    from scanflow_jupyter.services.inference_log import InferenceLog, inference_folder
    from scanflow_jupyter.services.loading import ModelHolder
    from scanflow_jupyter.tracking import resolve_tracking_uri, scanflow_home

    opts = options or ServeOptions()
    home = scanflow_home()
    tracking_uri = resolve_tracking_uri(home)
    if tracking_uri.startswith("sqlite:"):
        os.environ.setdefault("MLFLOW_SQLALCHEMYSTORE_POOLCLASS", "NullPool")
    holder_box: dict[str, Any] = {}
    host, port = sock.getsockname()[:2]
    url = f"http://{host}:{port}"

    def on_loaded(served: Any) -> None:
        _write_boot(boot, state="ready", port=port, version=served.version)
        if announce:
            what = f"{spec.model} version {served.version}" if spec.model else "predict()"
            print(f"service {spec.name} ready on {url} ({what}): POST {url}/predict", flush=True)

    def on_failed(error: str) -> None:
        _write_boot(boot, state="failed", message=error)
        print(f"scanflow serve: service '{spec.name}' cannot be served: {error}", file=sys.stderr, flush=True)
        holder_box["failed"] = True
        server.should_exit = True

    holder = ModelHolder(spec, tracking_uri, poll_s=opts.poll_s, on_loaded=on_loaded, on_failed=on_failed)
    log = InferenceLog(inference_folder(home, spec.name), spec.name, sample=opts.log_sample,
                       max_bytes=opts.log_max_bytes, store=_log_store(spec.name)) if opts.log_enabled else None
    token = auth.agent_token(home)
    app = create_app(holder, log=log, token=token)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)

    async def run() -> None:
        holder.start()
        watcher = asyncio.create_task(watch_parent(parent, server, _log)) if parent else None
        await server.serve(sockets=[sock])
        if watcher:
            watcher.cancel()

    _log.info("service %s (app %s) listening on %s", spec.name, spec.app, url)
    try:
        asyncio.run(run())
    finally:
        holder.stop()
        if log is not None:
            log.close()
    return EXIT_FAILED if holder_box.get("failed") else 0


def main(argv: list[str] | None = None) -> int:
    from scanflow_jupyter.services.spec import ServiceSpec

    parser = argparse.ArgumentParser(prog="python -m scanflow_jupyter.services.server", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", required=True, help="service spec JSON (written by `scanflow services up`)")
    parser.add_argument("--fd", type=int, default=None, help="an inherited listening socket")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--boot", default=None)
    parser.add_argument("--parent", type=int, default=None, help="stop when this process is gone")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data = json.loads(Path(args.spec).read_text(encoding="utf-8"))
    spec = ServiceSpec.from_dict(data)
    opts = ServeOptions(**data.get("options", {}))
    sock = socket.socket(fileno=args.fd) if args.fd is not None else listen(args.host, args.port)
    return serve(spec, sock, options=opts, boot=Path(args.boot) if args.boot else None, parent=args.parent)


if __name__ == "__main__":
    sys.exit(main())
