"""Every route of the REST API with malformed JSON, wrong types, huge bodies, deep nesting,
long and odd paths, unknown and broken runs (data: cases.py): never a 5xx, always a JSON error
with a message, the expected status, nothing started, and the server keeps answering."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.server.conftest import raw

from .cases import BROKEN_RUNS, CASES, CORRUPT_EVENTS, GOOD_RUN, Case, populate


def _group(case: Case) -> str:
    return f"{case.method} {case.url.split('?')[0].split('/')[0] or 'root'}"


GROUPS = sorted({_group(c) for c in CASES})


def _problem(case: Case, code: int, body: bytes, content_type: str) -> str | None:
    shown = f"{case.id}: {case.method} {case.url[:120]} → {code} (expected {case.expect}): {body[:300]!r}"
    if code != case.expect or code >= 500:
        return shown
    if code >= 400 or "json" in content_type:
        try:
            doc = json.loads(body)
        except ValueError:
            return f"{shown}\n  the answer is not JSON"
        if code >= 400 and not (isinstance(doc, dict) and isinstance(doc.get("message"), str) and doc["message"]):
            return f"{shown}\n  the error has no message"
    return None


def test_the_corpus_covers_every_route() -> None:
    from scanflow_jupyter.server.handlers import routes

    assert len(CASES) >= 300 and len({c.id for c in CASES}) == len(CASES)
    patterns = [pattern.split("scanflow/api/")[1] for pattern, _ in routes("/")]
    import re

    for pattern in patterns:
        hit = [c for c in CASES if re.fullmatch(pattern, c.url.split("?")[0])]
        assert hit, f"no case for the route {pattern}"


@pytest.mark.parametrize("group", GROUPS)
async def test_bad_requests_get_a_json_4xx(group: str, server_url: str, jp_root_dir: Path,
                                            jp_auth_header: dict[str, str]) -> None:
    populate(jp_root_dir)
    runs_before = sorted(p.name for p in (jp_root_dir / ".scanflow" / "runs").iterdir())
    failures = []
    for case in [c for c in CASES if _group(c) == group]:
        resp = await raw(server_url + "scanflow/api/" + case.url, method=case.method, body=case.body,
                         headers=dict(jp_auth_header))
        problem = _problem(case, resp.code, resp.body or b"", resp.headers.get("Content-Type", ""))
        if problem:
            failures.append(problem)
    alive = await raw(server_url + "scanflow/api/config", headers=dict(jp_auth_header))
    assert alive.code == 200, "the server still answers after the corpus"
    assert not failures, f"{len(failures)} cases failed:\n" + "\n".join(failures)
    assert sorted(p.name for p in (jp_root_dir / ".scanflow" / "runs").iterdir()) == runs_before, \
        "a bad request started a run"


async def _get(server_url: str, headers: dict[str, str], route: str) -> Any:
    resp = await raw(server_url + "scanflow/api/" + route, headers=dict(headers))
    return resp.code, json.loads(resp.body)


async def test_broken_runs_are_listed_as_unreadable_with_the_cli_text(server_url: str, jp_root_dir: Path,
                                                                       jp_auth_header: dict[str, str]) -> None:
    from scanflow_jupyter.data.store import RunStore, RunUnreadableError

    populate(jp_root_dir)
    code, doc = await _get(server_url, jp_auth_header, "runs")
    assert code == 200
    by_id = {r["run_id"]: r for r in doc["runs"]}
    assert set(by_id) == {*BROKEN_RUNS, GOOD_RUN}
    assert by_id[GOOD_RUN]["status"] == "failed"
    store = RunStore(jp_root_dir / ".scanflow" / "runs")
    for run_id in BROKEN_RUNS:
        with pytest.raises(RunUnreadableError) as info:
            store.read_state(run_id)
        entry = by_id[run_id]
        assert entry["status"] == "unreadable" and entry["steps"] == {}
        assert entry["message"] == str(info.value) and entry["fix"] == info.value.fix
        code, one = await _get(server_url, jp_auth_header, f"runs/{run_id}")
        assert code == 409 and one["message"] == str(info.value) and one["fix"] == info.value.fix


async def test_corrupt_event_lines_are_passed_on_as_unreadable(server_url: str, jp_root_dir: Path,
                                                                jp_auth_header: dict[str, str]) -> None:
    populate(jp_root_dir)
    code, doc = await _get(server_url, jp_auth_header, f"runs/{GOOD_RUN}/events?format=json")
    assert code == 200 and doc["finished"] is True and doc["status"] == "failed"
    assert [e["seq"] for e in doc["events"]] == list(range(1, len(CORRUPT_EVENTS) + 1))
    assert [e["type"] for e in doc["events"]] == ["unreadable"] * 5 + ["step_started", "run_finished"]
    resp = await raw(server_url + f"scanflow/api/runs/{GOOD_RUN}/events", headers=dict(jp_auth_header))
    assert resp.code == 200 and resp.body.count(b"\ndata: ") == len(CORRUPT_EVENTS)
