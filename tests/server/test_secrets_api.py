"""Finding 2 through the server: `c.Scanflow.tracking_uri` (and a user's setting) with credentials
reaches the runs it starts, and no API response, event stream or file in the root shows them."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from tests.secrets_support import PASSWORD, files_containing, server  # noqa: F401 - the fixture
from tests.server.conftest import api, drain, write_notebook

pytestmark = pytest.mark.integration

OTHER_PASSWORD = "Another-Secret-5e8b"  # noqa: S105 - sent as a user setting, never answered back
TOKEN = "Server-Token-31c7"  # noqa: S105 - a credential in the server's environment (API_TOKEN)
SECRETS = (PASSWORD, OTHER_PASSWORD, TOKEN)
CELLS: list[Any] = [
    "%load_ext scanflow_jupyter\n%scanflow_app api-secrets",
    "%%executor train --outputs score\nimport mlflow\nscore = 0.5\nmlflow.log_metric('score', score)\nprint('trained')",
    "%%executor leak --requires train\nimport os\nraise ValueError('refused: ' + os.environ['API_TOKEN'])",
]




@pytest.fixture
def jp_server_config(jp_root_dir: Path, server: tuple[str, Path]) -> dict[str, Any]:  # noqa: F811
    return {"ServerApp": {"jpserver_extensions": {"scanflow_jupyter.server": True}},
            "Scanflow": {"tracking_uri": server[0]}}


def _clean(what: str, doc: Any) -> None:
    text = doc if isinstance(doc, str) else json.dumps(doc)
    assert not any(s in text for s in SECRETS), f"{what} answers a credential: {text[:2000]}"


async def test_no_response_carries_the_tracking_credentials(jp_fetch: Any, jp_root_dir: Path, jp_serverapp: Any,
                                                            server: tuple[str, Path], caplog: pytest.LogCaptureFixture,  # noqa: F811
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    _uri, server_folder = server
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # the unreachable store below answers at once
    monkeypatch.setenv("API_TOKEN", TOKEN)  # the runs started by the server inherit it
    caplog.set_level(logging.DEBUG)
    _, config = await api(jp_fetch, "config", expect=200)
    _clean("GET config", config)
    assert config["tracking_uri"].startswith("http://***@127.0.0.1:")
    user_uri = f"http://someone:{OTHER_PASSWORD}@127.0.0.1:9/"
    _, config = await api(jp_fetch, "config", params={"tracking_uri": user_uri}, expect=200)
    _clean("GET config?tracking_uri=", config)
    assert config["tracking_uri"] == "http://***@127.0.0.1:9/"
    code, doc = await api(jp_fetch, "mlflow", "experiments", params={"tracking_uri": user_uri})
    _clean(f"GET mlflow/experiments of an unreachable store ({code})", doc)

    write_notebook(jp_root_dir, "secret.ipynb", CELLS)
    _, started = await api(jp_fetch, "runs", method="POST", expect=202, body={"path": "secret.ipynb"})
    _clean("POST runs", started)
    run_id = started["run_id"]
    resp = await jp_fetch("scanflow", "api", "runs", run_id, "events", request_timeout=600)
    _clean("GET runs/{id}/events (SSE)", resp.body.decode())
    await drain(jp_serverapp)
    _, run = await api(jp_fetch, "runs", run_id, expect=200)
    _clean("GET runs/{id}", run)
    assert run["steps"]["train"]["status"] == "succeeded" and run["steps"]["leak"]["status"] == "failed"
    assert "refused: ***" in run["steps"]["leak"]["error"]["evalue"]
    for step in ("train", "leak"):
        _, logs = await api(jp_fetch, "runs", run_id, "logs", params={"step": step}, expect=200)
        _clean(f"GET runs/{{id}}/logs?step={step}", logs)
    _, listed = await api(jp_fetch, "runs", expect=200)
    _clean("GET runs", listed)
    _, experiments = await api(jp_fetch, "mlflow", "experiments", expect=200)
    _clean("GET mlflow/experiments", experiments)
    assert "api-secrets" in {e["name"] for e in experiments["experiments"]}  # the credentials worked
    _, runs = await api(jp_fetch, "mlflow", "runs", params={"experiment": "api-secrets", "nested": "true"},
                        expect=200)
    _clean("GET mlflow/runs", runs)
    logged = [r.getMessage() for r in caplog.records if any(s in r.getMessage() for s in SECRETS)]
    assert logged == [], "the server log shows a credential"  # e.g. the access log of GET config?tracking_uri=
    assert files_containing(jp_root_dir, SECRETS) == []
    assert files_containing(server_folder, SECRETS) == []
