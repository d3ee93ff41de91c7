"""Redaction of credentials before anything is recorded (notebooks, run.json, registries, tags, logs).

Secrets reach kernels, containers and pods only as environment at run time; whatever Scanflow
writes down or answers over HTTP carries the redacted form: ``https://***@host/path``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from scanflow_jupyter.runtime.constants import MASK

# query parameters that carry credentials in database / object-store URIs
_SECRET_QUERY_KEYS = frozenset({
    "password", "passwd", "pwd", "secret", "token", "access_token", "api_key", "apikey", "key",
    "sig", "signature", "x-amz-signature", "x-amz-credential", "x-amz-security-token", "sslpassword",
})
# environment variables whose value is a secret as a whole: the keyword ends the name or one of its
# `_` parts (PGPASSWORD, AWS_SECRET_ACCESS_KEY, HF_TOKEN), so TOKENIZERS_PARALLELISM is not one
_SECRET_ENV = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|ACCESS_KEY|CREDENTIALS?|PRIVATE_KEY)(_|$)", re.I)
# values that are never secrets, however their variable is named (flags, placeholders)
_NOT_SECRET = frozenset({"true", "false", "none", "null", "yes", "no", MASK})
# user:password@ or token@ inside any scheme://... in free text; the scheme's length is bounded so
# that a long run of letters (a 300 KiB parameter value) costs linear time, not quadratic
_URI_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]{0,31}://)(?P<userinfo>[^/\s@'\"]+)@")


def redact_uri(uri: str | None) -> str | None:
    """Return ``uri`` with its user-info and secret query values replaced by ``***``.

    ``https://user:pw@host/x`` → ``https://***@host/x``; ``postgresql://u:p@db/mlflow`` →
    ``postgresql://***@db/mlflow``; paths and URIs without credentials come back unchanged.
    """
    if not uri or "://" not in uri:
        return uri
    try:
        parts = urlsplit(uri)
    except ValueError:
        return _URI_USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", uri)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in _SECRET_QUERY_KEYS for k, _ in pairs):
            query = urlencode([(k, MASK if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in pairs],
                              safe="*")
    if netloc == parts.netloc and query == parts.query:
        return uri
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Mask URI user-info anywhere in ``text`` and every literal value in ``secrets``."""
    out = _URI_USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    for value in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        out = out.replace(value, MASK)
    return out


def is_secret_env(name: str) -> bool:
    """True for environment variable names that hold a secret as a whole (``*_PASSWORD``, ``*_TOKEN``…)."""
    return bool(_SECRET_ENV.search(name))


def redact_env(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``env`` fit to record: secret variables masked, URIs without credentials."""
    return {k: (MASK if is_secret_env(k) else (redact_uri(v) or v)) for k, v in env.items()}


def secret_values(env: Mapping[str, str]) -> list[str]:
    """The literal secret values in ``env`` (whole secret variables and URI passwords), for grepping."""
    found: list[str] = []
    for k, v in env.items():
        if not v:
            continue
        if is_secret_env(k):
            found.append(v)
        for m in _URI_USERINFO.finditer(v):
            userinfo = m["userinfo"]
            secret = userinfo.split(":", 1)[1] if ":" in userinfo else userinfo
            found += [secret, unquote(secret)] if "%" in secret else [secret]
    return [s for s in found if len(s) >= 4 and s.lower() not in _NOT_SECRET]


def process_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """:func:`secret_values` of this process's environment (or of ``environ``)."""
    import os

    return secret_values(os.environ if environ is None else environ)


def redact_json(obj: Any, secrets: Iterable[str] = ()) -> Any:
    """A copy of a JSON-like value (dicts, lists, strings) with :func:`redact_text` applied to every string."""
    secrets = list(secrets)
    if isinstance(obj, str):
        return redact_text(obj, secrets)
    if isinstance(obj, dict):
        return {k: redact_json(v, secrets) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [redact_json(v, secrets) for v in obj]
    return obj


def redact_outputs(cell: Any, secrets: Iterable[str] = ()) -> None:
    """Mask credentials in a notebook cell's outputs in place (stream text, errors, text/plain data)."""
    secrets = list(secrets)
    for out in cell.get("outputs") or []:
        kind = out.get("output_type")
        if kind == "stream" and isinstance(out.get("text"), str | list):
            out["text"] = redact_json(out["text"], secrets)
        elif kind == "error":
            out["evalue"] = redact_text(str(out.get("evalue", "")), secrets)
            out["traceback"] = redact_json(list(out.get("traceback") or []), secrets)
        elif kind in ("execute_result", "display_data"):
            data = out.get("data") or {}
            for mime in ("text/plain", "text/html", "text/markdown", "text/latex"):
                if mime in data:
                    data[mime] = redact_json(data[mime], secrets)


def tracking_environment(uri: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables that give ``uri`` to an MLflow client (a kernel, a container) at run time.

    An ``http(s)://user:password@host`` URI is split: ``MLFLOW_TRACKING_URI`` without the
    user-info, plus ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` (unless ``environ``
    sets them already), so MLflow's own messages ("View run at …", request errors) carry no
    password. Any other URI is passed unchanged.
    """
    environ = environ or {}
    try:
        parts = urlsplit(uri)
    except ValueError:
        return {"MLFLOW_TRACKING_URI": uri}
    if parts.scheme.lower() not in ("http", "https") or "@" not in parts.netloc:
        return {"MLFLOW_TRACKING_URI": uri}
    userinfo, host = parts.netloc.rsplit("@", 1)
    user, _, password = userinfo.partition(":")
    out = {"MLFLOW_TRACKING_URI": urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))}
    if user and "MLFLOW_TRACKING_USERNAME" not in environ:
        out["MLFLOW_TRACKING_USERNAME"] = unquote(user)
    if password and "MLFLOW_TRACKING_PASSWORD" not in environ:
        out["MLFLOW_TRACKING_PASSWORD"] = unquote(password)
    return out
