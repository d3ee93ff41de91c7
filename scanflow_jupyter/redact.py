"""Redaction of credentials before anything is recorded (notebooks, run.json, registries, tags, logs).

Secrets reach kernels, containers and pods only as environment at run time; whatever Scanflow
writes down or answers over HTTP carries the redacted form: ``https://***@host/path``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"

# query parameters that carry credentials in database / object-store URIs
_SECRET_QUERY_KEYS = frozenset({
    "password", "passwd", "pwd", "secret", "token", "access_token", "api_key", "apikey", "key",
    "sig", "signature", "x-amz-signature", "x-amz-credential", "x-amz-security-token", "sslpassword",
})
# environment variables whose value is a secret as a whole
_SECRET_ENV = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|ACCESS_KEY|CREDENTIAL|PRIVATE_KEY)", re.I)
# user:password@ or token@ inside any scheme://... in free text
_URI_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/\s@'\"]+)@")


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
            found.append(userinfo.split(":", 1)[1] if ":" in userinfo else userinfo)
    return [s for s in found if len(s) >= 4]
