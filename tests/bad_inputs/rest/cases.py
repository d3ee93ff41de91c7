"""The REST fuzz corpus: bad requests for every route of docs/rest-api.md and the answer each
must get (never a 5xx). `populate(root)` lays out what the cases refer to: a valid and a broken
notebook, symlinks (a loop, one out of the root), runs whose run.json is broken, and a finished run
whose events.jsonl holds corrupt lines."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

from tests.conftest import NOTEBOOKS

GOOD_RUN = "20260101T000009-goodrn"
UNKNOWN_RUN = "20260101T000000-abcdef"
# run id -> content of its run.json (None: run.json is a directory)
BROKEN_RUNS: dict[str, bytes | None] = {
    "20260101T000001-garbag": b"{ not json at all",
    "20260101T000002-emptyy": b"",
    "20260101T000003-status": json.dumps({"run_id": "20260101T000003-status", "app": "a", "notebook": "n",
                                          "created_at": 1.0, "status": "banana"}).encode(),
    "20260101T000004-listjs": b"[1, 2, 3]",
    "20260101T000005-deepjs": b"[" * 100_000 + b"]" * 100_000,
    "20260101T000006-direct": None,
    "20260101T000007-binary": bytes(range(256)),
}
CORRUPT_EVENTS = [b"not json", b"[1]", b"5", b"\xff\xfe\x00", b"[" * 100_000, b'{"type": "step_started", "seq": 999}',
                  b'{"type": "run_finished"}']
DEEP_BODY = b"[" * 100_000 + b"]" * 100_000
HUGE = 2 << 20  # bytes: over the 1 MiB body limit


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    url: str  # after /scanflow/api/, already URL-encoded
    body: bytes | None
    expect: int


def _q(route: str, **query: str) -> str:
    return f"{route}?{urlencode(query, quote_via=quote)}" if query else route


def _j(doc: object) -> bytes:
    return json.dumps(doc).encode()


# (id, notebook path, status when a notebook must exist); GET runs?path= takes missing notebooks (200)
PATHS = [
    ("long_component", "a" * 300 + ".ipynb", 400),
    ("long_path", "d/" * 2100 + "x.ipynb", 400),
    ("dotdot", "../x.ipynb", 403),
    ("dotdot_inner", "sub/../../x.ipynb", 403),
    ("absolute", "/etc/hostname", 403),
    ("nul", "a\0b.ipynb", 403),  # in a query, tornado turns the NUL into a space: 404 there
    ("percent00", "%00.ipynb", 404),
    ("unicode", "ünï\u202ecode.ipynb", 404),
    ("emoji", "😀/x.ipynb", 404),
    ("backslash_unc", "\\\\server\\share.ipynb", 403),
    ("dot", ".", 404),
    ("directory", "sub", 404),
    ("symlink_loop", "loop.ipynb", 400),
    ("symlink_out", "escape.ipynb", 403),
    ("spaces", "   ", 404),
]
MALFORMED = [
    ("not_json", b"{", 400),
    ("truncated", b'{"path": "diamond.ipynb"', 400),
    ("invalid_utf8", b'{"path": "\xff\xfe"}', 400),
    ("list", b"[]", 400),
    ("null", b"null", 400),
    ("string", b'"diamond.ipynb"', 400),
    ("number", b"5", 400),
    ("deep_recursion", DEEP_BODY, 400),
    ("deep_65", b'{"path": "diamond.ipynb", "x": ' + b'{"a": ' * 64 + b"1" + b"}" * 64 + b"}", 400),
    ("huge", b'{"path": "' + b"a" * HUGE + b'"}', 413),
]
PATH_TYPES = [("path_int", 5), ("path_list", ["diamond.ipynb"]), ("path_null", None), ("path_object", {"a": 1})]
BAD_SETTINGS = [("settings_string", "x", 400), ("settings_unknown", {"bogus": "1"}, 400),
                ("settings_int", {"tracking_uri": 5}, 400), ("settings_newline", {"namespace": "a\nb"}, 400),
                ("settings_long", {"registry": "r" * 5000}, 400)]


def _post_bodies(route: str, extra: dict[str, object]) -> list[Case]:
    cases = [Case(f"{route}-{cid}", "POST", route, body, code) for cid, body, code in MALFORMED]
    cases += [Case(f"{route}-{cid}", "POST", route, _j({**extra, "path": value}), 400) for cid, value in PATH_TYPES]
    cases += [Case(f"post-{route}-path-{cid}", "POST", route, _j({**extra, "path": p}), code) for cid, p, code in PATHS]
    return cases


def _query_paths(method: str, route: str, missing_ok: bool = False, blank_ok: bool = False) -> list[Case]:
    """`path` as a query parameter: tornado turns a NUL into a space and strips the value."""
    cases = []
    for cid, p, code in PATHS:
        code = 404 if cid == "nul" else code
        code = 200 if (missing_ok and code == 404) or (blank_ok and not p.strip()) else code
        cases.append(Case(f"{method.lower()}-{route}-path-{cid}", method, _q(route, path=p), None, code))
    return cases


def _run_routes(run_id: str, code: int, label: str) -> list[Case]:
    rid = quote(run_id, safe="")
    return [
        Case(f"run-{label}", "GET", f"runs/{rid}", None, code),
        Case(f"logs-{label}", "GET", f"runs/{rid}/logs?step=a", None, code),
        Case(f"notebook-{label}", "GET", f"runs/{rid}/notebook?step=a", None, code),
        Case(f"events-json-{label}", "GET", f"runs/{rid}/events?format=json", None, code),
        Case(f"events-sse-{label}", "GET", f"runs/{rid}/events", None, code),
        Case(f"cancel-{label}", "POST", f"runs/{rid}/cancel", b"{}", code),
    ]


def build_cases() -> list[Case]:
    cases: list[Case] = []
    # config and mlflow: settings as query parameters
    cases += [Case("config-ok-unknown-query", "GET", _q("config", bogus="1"), None, 200),
              Case("config-newline", "GET", _q("config", tracking_uri="a\nb"), None, 400),
              Case("config-nul", "GET", _q("config", namespace="a\0b"), None, 200),  # tornado: NUL -> space
              Case("config-long", "GET", _q("config", kube_context="k" * 5000), None, 400)]
    cases += [Case("experiments-newline", "GET", _q("mlflow/experiments", tracking_uri="x\ny"), None, 400),
              Case("experiments-long", "GET", _q("mlflow/experiments", tracking_uri="x" * 5000), None, 400)]
    for cid, query, code in [
        ("max_results_text", {"max_results": "abc"}, 400), ("max_results_zero", {"max_results": "0"}, 400),
        ("max_results_huge", {"max_results": "9" * 40}, 400), ("max_results_float", {"max_results": "1.5"}, 400),
        ("experiment_long", {"experiment": "e" * 300}, 404), ("experiment_unicode", {"experiment": "ü\u202e😀"}, 404),
        # no MLflow store in the project yet: nothing to search, whatever the query (200)
        ("filter_garbage", {"filter": "((( and or"}, 200), ("order_by_garbage", {"order_by": "x y z w"}, 200),
        ("page_token_garbage", {"page_token": "%%%not-a-token"}, 200), ("parent_long", {"parent": "p" * 300}, 200),
        ("tracking_uri_nul", {"tracking_uri": "\0"}, 200),
    ]:
        cases.append(Case(f"mlflow-runs-{cid}", "GET", _q("mlflow/runs", **query), None, code))
    # app
    cases += [Case("app-no-path", "GET", "app", None, 400), Case("app-empty-path", "GET", _q("app", path=""), None, 404)]
    cases += _query_paths("GET", "app")
    # runs list
    for cid, value in [("text", "abc"), ("zero", "0"), ("negative", "-5"), ("huge", "9" * 40), ("float", "1.5")]:
        cases.append(Case(f"runs-limit-{cid}", "GET", _q("runs", limit=value), None, 400))
    cases += _query_paths("GET", "runs", missing_ok=True)
    # POST runs
    ok = {"path": "diamond.ipynb"}
    cases += _post_bodies("runs", {})
    for cid, extra in [
        ("params_string", {"parameters": "x"}), ("params_list", {"parameters": [1]}),
        ("params_name", {"parameters": {"a-b": 1}}), ("params_list_value", {"parameters": {"seed": [1, 2]}}),
        ("params_object_value", {"parameters": {"seed": {"a": 1}}}), ("params_unknown", {"parameters": {"nope": 1}}),
        ("only_string", {"only": "load"}), ("only_ints", {"only": [1]}), ("only_unknown", {"only": ["nope"]}),
        ("backend_int", {"backend": 5}), ("backend_unknown", {"backend": "nope"}), ("backend_long", {"backend": "b" * 300}),
        ("resume_int", {"resume": 5}), ("resume_list", {"resume": ["x"]}), ("resume_unknown", {"resume": UNKNOWN_RUN}),
        ("resume_long", {"resume": "r" * 300}), ("resume_dotdot", {"resume": "../x"}),
        *[(cid, {"settings": value}) for cid, value, _code in BAD_SETTINGS],
    ]:
        cases.append(Case(f"runs-{cid}", "POST", "runs", _j({**ok, **extra}), 400))
    cases.append(Case("runs-params_infinite", "POST", "runs",
                      b'{"path": "diamond.ipynb", "parameters": {"seed": 1e999}}', 400))
    for cid, value, code in [("resume_only_unknown", UNKNOWN_RUN, 404), ("resume_only_cache", "cache", 404),
                             ("resume_only_dotdot", "../x", 404), ("resume_only_long", "r" * 300, 404)]:
        cases.append(Case(f"runs-{cid}", "POST", "runs", _j({"resume": value}), code))
    for run_id in BROKEN_RUNS:  # resume of a broken run: 422, with or without the notebook
        cases.append(Case(f"runs-resume-broken-{run_id[-6:]}", "POST", "runs", _j({"resume": run_id}), 422))
        cases.append(Case(f"runs-resume-broken-path-{run_id[-6:]}", "POST", "runs", _j({**ok, "resume": run_id}), 422))
    # one run
    for run_id in BROKEN_RUNS:
        cases += _run_routes(run_id, 409, f"broken-{run_id[-6:]}")
    cases += _run_routes(UNKNOWN_RUN, 404, "unknown")
    cases += _run_routes("cache", 404, "cache")
    cases += _run_routes("a" * 300, 400, "long-id")
    cases += [Case("run-percent00", "GET", "runs/%00", None, 404), Case("run-dotdot", "GET", "runs/%2e%2e", None, 404),
              Case("run-unicode", "GET", "runs/%C3%BC%F0%9F%98%80", None, 404),
              Case("run-invalid-utf8", "GET", "runs/%ff%fe", None, 400),
              Case("run-nested", "GET", f"runs/{GOOD_RUN}/a/b/c", None, 404)]
    cases += [
        Case("good-run", "GET", f"runs/{GOOD_RUN}", None, 200),
        Case("good-events-json", "GET", f"runs/{GOOD_RUN}/events?format=json", None, 200),
        Case("good-events-sse", "GET", f"runs/{GOOD_RUN}/events", None, 200),
        Case("good-events-after-text", "GET", f"runs/{GOOD_RUN}/events?after=abc", None, 400),
        Case("good-events-after-negative", "GET", f"runs/{GOOD_RUN}/events?after=-1", None, 400),
        Case("good-events-after-huge", "GET", f"runs/{GOOD_RUN}/events?after={'9' * 40}", None, 400),
        Case("good-cancel-finished", "POST", f"runs/{GOOD_RUN}/cancel", b"{}", 409),
        Case("good-cancel-huge-body", "POST", f"runs/{GOOD_RUN}/cancel", b"x" * HUGE, 413),
        Case("as-notebook-unknown-run", "POST", f"runs/{UNKNOWN_RUN}/as-notebook", b"{}", 404),
        Case("as-notebook-huge-body", "POST", f"runs/{GOOD_RUN}/as-notebook", b"x" * HUGE, 413),
        Case("good-logs-no-step", "GET", f"runs/{GOOD_RUN}/logs", None, 400),
        Case("good-logs-unknown-step", "GET", _q(f"runs/{GOOD_RUN}/logs", step="nope"), None, 404),
        Case("good-logs-dotdot-step", "GET", _q(f"runs/{GOOD_RUN}/logs", step="../../../etc"), None, 404),
        Case("good-logs-long-step", "GET", _q(f"runs/{GOOD_RUN}/logs", step="s" * 300), None, 404),
        Case("good-logs-nul-step", "GET", _q(f"runs/{GOOD_RUN}/logs", step="a\0"), None, 200),  # tornado: "a "
        Case("good-logs-step", "GET", _q(f"runs/{GOOD_RUN}/logs", step="a"), None, 200),
        Case("good-notebook-no-step", "GET", f"runs/{GOOD_RUN}/notebook", None, 400),
        Case("good-notebook-unknown-step", "GET", _q(f"runs/{GOOD_RUN}/notebook", step="nope"), None, 404),
        Case("good-notebook-dotdot-step", "GET", _q(f"runs/{GOOD_RUN}/notebook", step="../../../etc"), None, 404),
        Case("good-notebook-not-executed", "GET", _q(f"runs/{GOOD_RUN}/notebook", step="a"), None, 404),
        Case("post-app-no-notebook", "POST", "app", _j({"path": "diamond.ipynb"}), 400),
        Case("post-app-cells-not-list", "POST", "app", _j({"path": "diamond.ipynb", "notebook": {"cells": {}}}), 400),
        Case("post-app-huge-body", "POST", "app", b"x" * HUGE, 413),
        Case("post-app-deep-body", "POST", "app", DEEP_BODY, 400),
    ]
    # agents
    cases += _query_paths("GET", "agents", blank_ok=True)  # no path: the agents of every notebook
    cases += _post_bodies("agents", {"action": "stop"})
    for cid, extra in [("action_missing", {}), ("action_int", {"action": 5}), ("action_unknown", {"action": "fly"}),
                       ("names", {"action": "stop", "names": ["a"]})]:
        cases.append(Case(f"agents-{cid}", "POST", "agents", _j({**ok, **extra}), 400))
    # services (diamond.ipynb has no %%service: start is refused before anything runs)
    cases += _query_paths("GET", "services", blank_ok=True)  # no path: the services of every notebook
    cases += _post_bodies("services", {"action": "stop"})
    for cid, extra in [("action_missing", {}), ("action_int", {"action": 5}), ("action_unknown", {"action": "fly"}),
                       ("names_string", {"action": "start", "names": "a"}),
                       ("names_ints", {"action": "start", "names": [1]}), ("no_service", {"action": "start"})]:
        cases.append(Case(f"services-{cid}", "POST", "services", _j({**ok, **extra}), 400))
    # the sidebar's "try it" (no service of diamond.ipynb is registered: 404, nothing is sent)
    cases += _post_bodies("services/predict", {"name": "x", "payload": {"inputs": [1]}})
    for cid, extra, code in [("name_missing", {"payload": {}}, 400), ("name_int", {"name": 5, "payload": {}}, 400),
                             ("payload_missing", {"name": "x"}, 400), ("unregistered", {"name": "x", "payload": []}, 404)]:
        cases.append(Case(f"services-predict-{cid}", "POST", "services/predict", _j({**ok, **extra}), code))
    # the MLflow UI of the links (never a usable local store: that would start a UI)
    cases += [Case(f"mlflow-ui-{cid}", "POST", "mlflow-ui", body, code) for cid, body, code in MALFORMED]
    cases += [Case(f"mlflow-ui-{cid}", "POST", "mlflow-ui", _j({"settings": v}), code) for cid, v, code in BAD_SETTINGS]
    cases.append(Case("mlflow-ui-no-ui-store", "POST", "mlflow-ui",
                      _j({"settings": {"tracking_uri": "postgresql://u:pw@db/mlflow"}}), 400))
    # builds and deployments (never a valid notebook: these would build or deploy for real)
    cases += _post_bodies("builds", {})
    cases.append(Case("builds-broken-notebook", "POST", "builds", _j({"path": "broken.ipynb"}), 400))
    cases += _post_bodies("deployments", {})
    cases += [Case(f"deployments-{cid}", "POST", "deployments", _j({**ok, "settings": v}), code)
              for cid, v, code in BAD_SETTINGS]
    cases += _query_paths("GET", "deployments")
    cases += _query_paths("DELETE", "deployments")
    cases += [Case("deployments-no-path", "GET", "deployments", None, 400),
              Case("deployments-settings-newline", "GET", _q("deployments", path="diamond.ipynb", namespace="a\nb"), None, 400)]
    for route in ("builds", "deployments"):
        cases += [Case(f"{route}-job-unknown", "GET", f"{route}/0123456789ab", None, 404),
                  Case(f"{route}-job-malformed", "GET", f"{route}/zz", None, 404),
                  Case(f"{route}-job-long", "GET", f"{route}/{'0' * 300}", None, 400)]
    # routes and methods that do not exist, over-long URLs
    cases += [Case("unknown-route", "GET", "nope", None, 404), Case("unknown-route-post", "POST", "nope", b"{}", 404),
              Case("api-root", "GET", "", None, 404), Case("put-runs", "PUT", "runs", b"{}", 405),
              Case("delete-run", "DELETE", f"runs/{UNKNOWN_RUN}", None, 405), Case("patch-config", "PATCH", "config", b"{}", 405),
              Case("long-url", "GET", "runs/" + "a/" * 2100, None, 400)]
    return cases


CASES = build_cases()


def populate(root: Path) -> None:
    """The files and runs the cases refer to, under the server root `root`."""
    from scanflow_jupyter.data.store import RunState, RunStore, StepState
    from tests.conftest import notebook_dict

    (root / "diamond.ipynb").write_bytes((NOTEBOOKS / "diamond.ipynb").read_bytes())
    (root / "broken.ipynb").write_text(json.dumps(notebook_dict(["%%executor train --inputs nothing\nx = 1"])))
    (root / "sub").mkdir()
    os.symlink("loop2.ipynb", root / "loop.ipynb")
    os.symlink("loop.ipynb", root / "loop2.ipynb")
    os.symlink("/etc/hostname", root / "escape.ipynb")
    store = RunStore(root / ".scanflow" / "runs")
    for run_id, content in BROKEN_RUNS.items():
        store.run_dir(run_id).mkdir(parents=True)
        if content is None:
            store.state_path(run_id).mkdir()
        else:
            store.state_path(run_id).write_bytes(content)
    store.write_state(RunState(run_id=GOOD_RUN, app="diamond", notebook=str(root / "diamond.ipynb"), status="failed",
                               created_at=1767225609.0, started_at=1767225609.0, finished_at=1767225610.0, pid=None,
                               steps={"a": StepState(name="a", status="failed", attempts=1)}))
    (store.run_dir(GOOD_RUN) / "events.jsonl").write_bytes(b"\n".join(CORRUPT_EVENTS) + b"\n")
