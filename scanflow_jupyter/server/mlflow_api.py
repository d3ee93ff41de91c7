"""MLflow experiments and paginated runs for the sidebar, off the event loop.

Every MLflow call runs in a thread executor; one MlflowClient is kept per tracking URI.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

PARENT_TAG = "mlflow.parentRunId"
MAX_RESULTS_LIMIT = 1000
_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="scanflow-mlflow")


class MlflowRequestError(Exception):
    """A bad request to MLflow (bad filter, page token, unknown experiment) → 400/404."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class MlflowService:
    """Read-only views of one tracking store."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self._client: Any = None
        self._lock = threading.Lock()

    # -- plumbing
    def _sqlite_missing(self) -> bool:
        """A default sqlite store that was never created: nothing to show (do not create it)."""
        if not self.tracking_uri.startswith("sqlite:///"):
            return False
        return not Path(self.tracking_uri[len("sqlite:///"):]).exists()

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                from mlflow.tracking import MlflowClient

                from scanflow_jupyter.tracking_store import ensure_sqlite_store

                # MLflow migrates a new sqlite store in whichever process opens it first, unlocked: a
                # runner creating the store at the same moment broke it. Take the store lock as runs do.
                ensure_sqlite_store(self.tracking_uri)
                self._client = MlflowClient(tracking_uri=self.tracking_uri)
            return self._client

    async def _call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(_POOL, fn, *args)

    # -- experiments
    async def experiments(self) -> list[dict[str, Any]]:
        return await self._call(self._experiments)

    def _experiments(self) -> list[dict[str, Any]]:
        if self._sqlite_missing():
            return []
        from mlflow.entities import ViewType

        found = self.client().search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=MAX_RESULTS_LIMIT)
        return [{"experiment_id": e.experiment_id, "name": e.name, "lifecycle_stage": e.lifecycle_stage}
                for e in found]

    # -- runs
    async def runs(self, *, experiment: str | None, max_results: int, page_token: str | None,
                   filter_string: str, order_by: list[str], nested: bool, parent: str | None) -> dict[str, Any]:
        return await self._call(self._runs, experiment, max_results, page_token, filter_string, order_by,
                                nested, parent)

    def _runs(self, experiment: str | None, max_results: int, page_token: str | None, filter_string: str,
              order_by: list[str], nested: bool, parent: str | None) -> dict[str, Any]:
        if self._sqlite_missing():
            if experiment:
                raise MlflowRequestError(f"no MLflow experiment named '{experiment}' (the store is empty)", 404)
            return {"runs": [], "next_page_token": None}
        from mlflow.exceptions import MlflowException

        client = self.client()
        clauses: list[str] = []
        try:
            if experiment:
                exp = client.get_experiment_by_name(experiment)
                if exp is None:
                    raise MlflowRequestError(f"no MLflow experiment named '{experiment}'", 404)
                ids = [exp.experiment_id]
            else:
                ids = [e["experiment_id"] for e in self._experiments()]
            if not ids:
                return {"runs": [], "next_page_token": None}
            user = filter_string.strip()
            if user:
                _check_filter(user)
            clauses = [user] if user else []
            if parent:
                clauses.append(f"tags.`{PARENT_TAG}` = '{_quote(parent)}'")
            elif not nested:
                if user:
                    # metrics sit on step runs: a parent matches when it, or one of its steps, does
                    clauses = [_parents_of_matches(client, ids, user)]
                clauses.append(f"tags.`{PARENT_TAG}` IS NULL")
            page = client.search_runs(ids, filter_string=" and ".join(clauses), max_results=max_results,
                                      order_by=order_by or None, page_token=page_token or None)
        except MlflowException as exc:
            message = exc.message if hasattr(exc, "message") else str(exc)
            if clauses:  # the clauses the server added are not the user's to fix
                message = message.replace(" and ".join(clauses), filter_string.strip())
            raise MlflowRequestError(message) from None
        token = page.token.decode() if isinstance(page.token, bytes) else page.token
        return {"runs": [run_dict(r) for r in page], "next_page_token": token or None}


MAX_MATCHED_PARENTS = 1000  # parents a filter can select through their step runs


def _check_filter(user: str) -> None:
    """Parse the user's filter alone, so an error quotes only what the user wrote."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.search_utils import SearchUtils

    try:
        SearchUtils.parse_search_filter(user)
    except MlflowException as exc:
        raise MlflowRequestError(exc.message if hasattr(exc, "message") else str(exc)) from None


def _parents_of_matches(client: Any, ids: list[str], user: str) -> str:
    """`attributes.run_id IN (...)`: the top-level runs that match `user`, or whose step runs do."""
    wanted: list[str] = []
    token = None
    while len(wanted) < MAX_MATCHED_PARENTS:
        page = client.search_runs(ids, filter_string=user, max_results=MAX_RESULTS_LIMIT, page_token=token)
        for run in page:
            found = run.data.tags.get(PARENT_TAG) or run.info.run_id
            if found not in wanted:
                wanted.append(found)
        token = page.token
        if not token:
            break
    quoted = ", ".join(f"'{_quote(r)}'" for r in wanted[:MAX_MATCHED_PARENTS]) or "''"
    return f"attributes.run_id IN ({quoted})"


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def run_dict(run: Any) -> dict[str, Any]:
    """One run as the REST API shows it (tags: scanflow.* only)."""
    info = run.info
    start, end = info.start_time, info.end_time
    return {
        "run_id": info.run_id, "run_name": info.run_name, "status": info.status,
        "experiment_id": info.experiment_id, "start_time": start, "end_time": end,
        "duration_s": (end - start) / 1000 if (start and end) else None,
        "metrics": dict(run.data.metrics), "params": dict(run.data.params),
        "tags": {k: v for k, v in run.data.tags.items() if k.startswith("scanflow.")},
    }
