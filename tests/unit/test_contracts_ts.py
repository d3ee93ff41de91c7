"""labextension/src/contracts.generated.ts must match what the pydantic models generate."""

from __future__ import annotations

from scanflow_jupyter.contracts import ts


def test_generated_typescript_is_current() -> None:
    committed = ts.TS_PATH.read_text(encoding="utf-8")
    assert committed == ts.render(), (
        f"{ts.TS_PATH} is stale: the contracts changed; run `make contracts` and commit the file"
    )


def test_generator_emits_every_run_json_key() -> None:
    text = ts.render()
    assert "export const RUN_SCHEMA_VERSION = 1;" in text
    for key in ("schema_version: number;", "steps: Record<string, StepRecord>;",
                "error: StepErrorRecord | null;", "started_at: number | null;"):
        assert key in text


def test_generator_emits_the_rest_payloads_with_optional_keys_and_literals() -> None:
    text = ts.render()
    for key in ("export interface RunSummary {", "export interface ConfigAnswer {",
                "runs: Array<RunSummary | UnreadableRunSummary>;",
                "fix?: string | null;",  # ErrorAnswer: a key some answers leave out
                'kind: "executor" | "service" | "agent";', 'status: "unreadable";'):
        assert key in text, key
