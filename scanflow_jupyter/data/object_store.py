"""A small S3 client (path-style, Signature V4) for the run store in an object store.

The kubernetes backend keeps each run's folders (`<prefix>/<run_id>/<step>/...`, the same layout
as `.scanflow/runs/`) in the team environment's S3-compatible server: step pods download their
inputs and upload their folder; the runner uploads reused outputs and fetches every finished
step's folder back to the local run store. Only what that needs is here (put, get, list, create
bucket), on the standard library, so step images need nothing more.

Configuration (environment, as AWS tools read it): `SCANFLOW_S3_ENDPOINT_URL` (else
`MLFLOW_S3_ENDPOINT_URL`, else `AWS_ENDPOINT_URL`), `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
`AWS_DEFAULT_REGION` (default us-east-1).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlencode, urlsplit
from urllib.request import Request, build_opener

ENDPOINT_VARS = ("SCANFLOW_S3_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL")
TIMEOUT = 60.0


class ObjectStoreError(RuntimeError):
    """The object store refused or failed a request; the message names the request and the fix."""


@dataclass(frozen=True)
class StoreURI:
    """`s3://bucket/prefix` split into its parts (prefix without slashes at either end)."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, uri: str) -> StoreURI:
        parts = urlsplit(uri)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"'{uri}' is not an object-store URI. Fix: use s3://BUCKET/PREFIX.")
        return cls(parts.netloc, parts.path.strip("/"))

    def key(self, *parts: str) -> str:
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p.strip("/"))

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


@dataclass
class _Response:
    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class S3Client:
    """Signed path-style requests to one S3-compatible endpoint."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str, region: str = "us-east-1",
                 timeout: float = TIMEOUT) -> None:
        if not endpoint.startswith(("http://", "https://")):
            raise ValueError(f"S3 endpoint '{endpoint}' must be an http(s) URL.")
        self.endpoint = endpoint.rstrip("/")
        self.host = urlsplit(self.endpoint).netloc
        self.access_key, self.secret_key, self.region = access_key, secret_key, region
        self.timeout = timeout
        self._opener = build_opener()  # no proxy handler surprises: the endpoint is used as given

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, endpoint: str | None = None) -> S3Client:
        env = os.environ if environ is None else environ
        endpoint = endpoint or next((env[v] for v in ENDPOINT_VARS if env.get(v)), "")
        missing = [v for v, ok in (("SCANFLOW_S3_ENDPOINT_URL", endpoint), ("AWS_ACCESS_KEY_ID", env.get("AWS_ACCESS_KEY_ID")),
                                   ("AWS_SECRET_ACCESS_KEY", env.get("AWS_SECRET_ACCESS_KEY"))) if not ok]
        if missing:
            raise ObjectStoreError(f"the object store is not configured: {', '.join(missing)} not set. Fix: deploy the "
                                   "team environment (`scanflow deploy`), whose ConfigMap and Secret set them.")
        return cls(endpoint, env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"],
                   env.get("AWS_DEFAULT_REGION") or "us-east-1")

    def close(self) -> None:
        """Nothing to release (one connection per request); kept for `with`."""

    def __enter__(self) -> S3Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ signing
    def _headers(self, method: str, path: str, query: Mapping[str, str], body: bytes) -> dict[str, str]:
        now = _dt.datetime.now(_dt.timezone.utc)
        amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        payload = _sha256(body)
        headers = {"host": self.host, "x-amz-content-sha256": payload, "x-amz-date": amz_date}
        signed = ";".join(sorted(headers))
        canonical_query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query.items()))
        canonical = "\n".join([method, quote(path, safe="/-_.~"), canonical_query,
                               "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)), signed, payload])
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, _sha256(canonical.encode())])
        key = _hmac(_hmac(_hmac(_hmac(("AWS4" + self.secret_key).encode(), day), self.region), "s3"), "aws4_request")
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
                                    f"SignedHeaders={signed}, Signature={signature}")
        del headers["host"]  # urllib sends it
        return headers

    def _request(self, method: str, bucket: str, key: str = "", query: Mapping[str, str] | None = None,
                 body: bytes = b"") -> Any:
        path = f"/{bucket}" + (f"/{key}" if key else "")
        query = dict(query or {})
        url = self.endpoint + quote(path, safe="/-_.~")
        if query:
            url += "?" + urlencode(sorted(query.items()), quote_via=quote, safe="-_.~")
        request = Request(url, data=body if method in ("PUT", "POST") else None, method=method,
                          headers=self._headers(method, path, query, body))
        try:
            with self._opener.open(request, timeout=self.timeout) as resp:
                return _Response(resp.status, resp.read())
        except HTTPError as exc:
            return _Response(exc.code, exc.read() or b"")
        except (URLError, OSError) as exc:
            raise ObjectStoreError(f"{method} {self.endpoint}{path}: {getattr(exc, 'reason', exc)}. Fix: check that "
                                   "the object store answers (the team environment's scanflow-s3 Service).") from exc

    @staticmethod
    def _check(resp: Any, what: str, ok: tuple[int, ...] = (200,)) -> Any:
        if resp.status_code not in ok:
            code = _xml_text(resp.content, "Code") or str(resp.status_code)
            message = _xml_text(resp.content, "Message") or resp.text[:200]
            raise ObjectStoreError(f"{what}: {resp.status_code} {code} {message}".rstrip())
        return resp

    # ------------------------------------------------------------------ operations
    def ensure_bucket(self, bucket: str) -> None:
        resp = self._request("HEAD", bucket)
        if resp.status_code == 200:
            return
        self._check(self._request("PUT", bucket), f"create bucket {bucket}", (200, 409))

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self._check(self._request("PUT", bucket, key, body=data), f"put s3://{bucket}/{key}")

    def get(self, bucket: str, key: str) -> bytes:
        return self._check(self._request("GET", bucket, key), f"get s3://{bucket}/{key}").content

    def list(self, bucket: str, prefix: str) -> Iterator[tuple[str, int]]:
        """(key, size) of every object under `prefix`."""
        token = None
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            root = ET.fromstring(self._check(self._request("GET", bucket, query=query),
                                             f"list s3://{bucket}/{prefix}").content)
            for item in _children(root, "Contents"):
                yield _child_text(item, "Key"), int(_child_text(item, "Size") or 0)
            if _child_text(root, "IsTruncated") != "true":
                return
            token = _child_text(root, "NextContinuationToken")

    # ------------------------------------------------------------------ folders
    def upload_dir(self, folder: Path, uri: StoreURI, *parts: str) -> int:
        """Upload every file under `folder` to `uri/parts/...`; the number of files."""
        count = 0
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            self.put(uri.bucket, uri.key(*parts, path.relative_to(folder).as_posix()), path.read_bytes())
            count += 1
        return count

    def download_dir(self, uri: StoreURI, folder: Path, *parts: str) -> int:
        """Download every object under `uri/parts/` into `folder`; the number of files."""
        prefix = uri.key(*parts) + "/"
        count = 0
        for key, _size in self.list(uri.bucket, prefix):
            rel = key[len(prefix):]
            if not rel or rel.endswith("/") or ".." in rel.split("/"):
                continue
            target = folder / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.get(uri.bucket, key))
            count += 1
        return count


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(node: Any, name: str) -> list[Any]:
    return [c for c in node if _local(c.tag) == name]


def _child_text(node: Any, name: str) -> str:
    found = _children(node, name)
    return (found[0].text or "") if found else ""


def _xml_text(content: bytes, name: str) -> str:
    try:
        root = ET.fromstring(content)
    except ET.ParseError:
        return ""
    return _child_text(root, name)
