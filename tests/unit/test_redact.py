"""scanflow_jupyter.redact: what may be recorded never carries a credential."""

from __future__ import annotations

import copy

import pytest

from scanflow_jupyter.redact import (
    MASK,
    is_secret_env,
    redact_env,
    redact_json,
    redact_outputs,
    redact_text,
    redact_uri,
    secret_values,
    tracking_environment,
)


def test_uri_userinfo_and_secret_query_values_are_masked() -> None:
    assert redact_uri("https://user:S3cr3t@host:5000/x?y=1") == "https://***@host:5000/x?y=1"
    assert redact_uri("postgresql://u:p%40ss@db/mlflow") == "postgresql://***@db/mlflow"
    assert redact_uri("https://tok3n@host/") == "https://***@host/"
    masked = redact_uri("s3://bucket/k?X-Amz-Signature=abcd1234&region=eu")
    assert "abcd1234" not in masked and "region=eu" in masked and MASK in masked


def test_uris_without_credentials_and_plain_paths_are_unchanged() -> None:
    for value in ("sqlite:////p/.scanflow/mlflow.db", "http://127.0.0.1:5050", "/tmp/x", "", None, "databricks"):
        assert redact_uri(value) == value
    assert redact_uri(redact_uri("https://a:b@h/")) == "https://***@h/"  # idempotent


def test_text_loses_uri_userinfo_and_known_literal_values() -> None:
    text = "connect to http://alice:pw-1234@10.0.0.1:80/api failed; token abcd-efgh-ijkl was refused"
    out = redact_text(text, ["abcd-efgh-ijkl", "xy"])  # too-short values are never replaced
    assert "pw-1234" not in out and "alice" not in out and "abcd-efgh-ijkl" not in out
    assert out.count(MASK) == 2 and "10.0.0.1:80/api" in out


def test_secret_variable_names() -> None:
    for name in ("MLFLOW_TRACKING_PASSWORD", "PGPASSWORD", "AWS_SECRET_ACCESS_KEY", "HF_TOKEN", "MY_API_KEY",
                 "GOOGLE_APPLICATION_CREDENTIALS", "github_token"):
        assert is_secret_env(name), name
    for name in ("TOKENIZERS_PARALLELISM", "MLFLOW_TRACKING_URI", "PATH", "MLFLOW_TRACKING_USERNAME", "HOME"):
        assert not is_secret_env(name), name


def test_env_redaction_and_secret_values() -> None:
    env = {"MLFLOW_TRACKING_URI": "http://bob:S3cr3tValue@h:1/", "AWS_SECRET_ACCESS_KEY": "aws-secret-xyz",
           "TOKENIZERS_PARALLELISM": "true", "JUPYTER_TOKEN": "true", "PATH": "/usr/bin",
           "DB": "postgresql://u:p%40ssword@db/x"}
    shown = redact_env(env)
    assert shown["MLFLOW_TRACKING_URI"] == "http://***@h:1/" and shown["AWS_SECRET_ACCESS_KEY"] == MASK
    assert shown["PATH"] == "/usr/bin"
    values = secret_values(env)
    assert {"S3cr3tValue", "aws-secret-xyz", "p%40ssword", "p@ssword"} <= set(values)
    assert "true" not in values and "/usr/bin" not in values  # flags are no secrets, whatever their name


def test_json_and_notebook_outputs_are_redacted_in_depth() -> None:
    doc = {"a": ["x http://u:pw99@h/ y", {"b": "the pw99 literal"}], "n": 3, "none": None}
    out = redact_json(doc, ["pw99"])
    assert "pw99" not in repr(out) and out["n"] == 3 and out["none"] is None
    cell = {"outputs": [
        {"output_type": "stream", "name": "stdout", "text": "View run at http://u:pw99@h/#/x\n"},
        {"output_type": "stream", "name": "stderr", "text": ["line pw99\n", "ok\n"]},
        {"output_type": "error", "ename": "E", "evalue": "pw99", "traceback": ["at http://u:pw99@h/"]},
        {"output_type": "execute_result", "data": {"text/plain": "'pw99'", "image/png": "cHc5OQ=="}},
    ]}
    original = copy.deepcopy(cell)
    redact_outputs(cell, ["pw99"])
    assert "pw99" not in repr(cell)
    assert cell["outputs"][3]["data"]["image/png"] == original["outputs"][3]["data"]["image/png"]
    assert cell["outputs"][1]["text"] == ["line ***\n", "ok\n"]


def test_tracking_environment_splits_http_credentials_out_of_the_uri() -> None:
    env = tracking_environment("https://al%40ice:p%3Ass@mlflow.example:8443/base")
    assert env == {"MLFLOW_TRACKING_URI": "https://mlflow.example:8443/base",
                   "MLFLOW_TRACKING_USERNAME": "al@ice", "MLFLOW_TRACKING_PASSWORD": "p:ss"}
    kept = tracking_environment("http://u:p@h/", {"MLFLOW_TRACKING_PASSWORD": "explicit"})
    assert kept == {"MLFLOW_TRACKING_URI": "http://h/", "MLFLOW_TRACKING_USERNAME": "u"}
    for uri in ("sqlite:////p/mlflow.db", "http://127.0.0.1:5050", "postgresql://u:p@db/x"):
        assert tracking_environment(uri) == {"MLFLOW_TRACKING_URI": uri}


@pytest.mark.timeout(60)  # the unbounded scheme pattern took hours (quadratic) on this input
def test_redacting_a_long_run_of_letters_is_linear() -> None:
    text = "x" * 1_000_000 + " git+ssh://u:pw99@h/ " + "y" * 1_000_000
    assert redact_text(text) == "x" * 1_000_000 + " git+ssh://***@h/ " + "y" * 1_000_000
