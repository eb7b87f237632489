"""AWS for serving: the model's S3 reads (signed here on Lambda, see below) and botocore clients
(S3 otherwise, SQS for review events), made with botocore alone.

Not boto3: nothing of it is used here, and importing it (with s3transfer) cost 60 to 90 ms of every
cold start (BENCHMARKS.md, section 4). One botocore session per process, as boto3's default session
would be: it parses the service descriptions once, so a client made later (a new endpoint, a new
queue) costs little, and never holds the interpreter long while requests are being answered.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Mapping
from urllib.parse import parse_qsl, quote, urlsplit

_session = None
_lock = threading.Lock()


def aws_client(service: str, **config: Any):
    """A botocore client for ``service`` (AWS_ENDPOINT_URL_<SERVICE> points it elsewhere), with
    these botocore ``Config`` options."""
    global _session
    import botocore.session
    from botocore.config import Config

    with _lock:  # botocore sessions are not safe to share while being made
        if _session is None:
            _session = botocore.session.get_session()
        return _session.create_client(service, config=Config(**config))


# -- S3 reads signed here, for the cold start ------------------------------------------------------
#
# Making a botocore S3 client costs 0.2 to 0.3 s of a cold start (importing botocore alone: 0.12 to
# 0.15 s, and any module of it imports that much; then the service model and endpoint rules), more
# than the model's own load. A Lambda function has its credentials in the environment, so its two
# S3 calls (GET for the model, HEAD for a newer one) are signed here with Signature Version 4, over
# http.client, exactly as botocore's S3 signer signs them (tests/serving/test_s3_model.py compares
# the two). Any other setting (a profile, SSO, instance metadata) goes through botocore.


class S3Error(Exception):
    """An S3 read that failed: the HTTP status and S3's error code, or why no answer came."""


def environment_credentials(environ: Mapping[str, str] | None = None) -> tuple[str, str, str | None] | None:
    """(access key, secret key, session token) when the environment holds them, as on Lambda."""
    environ = os.environ if environ is None else environ
    access, secret = environ.get("AWS_ACCESS_KEY_ID"), environ.get("AWS_SECRET_ACCESS_KEY")
    return (access, secret, environ.get("AWS_SESSION_TOKEN") or None) if access and secret else None


def s3_url(bucket: str, key: str, environ: Mapping[str, str] | None = None) -> str:
    """Where botocore sends a request for this object: path style on an endpoint set by
    AWS_ENDPOINT_URL_S3 (or AWS_ENDPOINT_URL), virtual-hosted style on AWS unless the bucket's name
    holds a dot (TLS would not match it)."""
    environ = os.environ if environ is None else environ
    path = quote(key, safe="/~")
    endpoint = environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        return f"{endpoint.rstrip('/')}/{bucket}/{path}"
    region = s3_region(environ)
    if "." in bucket:
        return f"https://s3.{region}.amazonaws.com/{bucket}/{path}"
    return f"https://{bucket}.s3.{region}.amazonaws.com/{path}"


def s3_region(environ: Mapping[str, str]) -> str:
    return environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def sigv4_headers(method: str, url: str, credentials: tuple[str, str, str | None], region: str, now: datetime) -> dict[str, str]:
    """The headers of a signed S3 request without a body (AWS Signature Version 4, service s3)."""
    access, secret, token = credentials
    parts = urlsplit(url)
    timestamp = now.strftime("%Y%m%dT%H%M%SZ")
    headers = {"host": parts.netloc, "x-amz-content-sha256": EMPTY_SHA256, "x-amz-date": timestamp}
    if token:
        headers["x-amz-security-token"] = token
    names = sorted(headers)
    canonical = "\n".join([method, parts.path or "/", canonical_query(parts.query), *(f"{name}:{headers[name].strip()}" for name in names), "",
                           ";".join(names), EMPTY_SHA256])
    scope = f"{timestamp[:8]}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", timestamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = f"AWS4{secret}".encode()
    for part in (timestamp[:8], region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = f"AWS4-HMAC-SHA256 Credential={access}/{scope}, SignedHeaders={';'.join(names)}, Signature={signature}"
    return headers


def canonical_query(query: str) -> str:
    pairs = sorted(parse_qsl(query, keep_blank_values=True))
    return "&".join(f"{quote(name, safe='-_.~')}={quote(value, safe='-_.~')}" for name, value in pairs)


EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@contextmanager
def s3_request(method: str, bucket: str, key: str, *, credentials: tuple[str, str, str | None], connect_timeout: float,
               read_timeout: float, attempts: int, environ: Mapping[str, str] | None = None):
    """One signed GET or HEAD, retried on a connection failure or a 5xx as botocore's standard mode
    would: the response (status 200) to read within the block, or S3Error."""
    import http.client

    environ = os.environ if environ is None else environ
    url = s3_url(bucket, key, environ)
    parts = urlsplit(url)
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    problem = "no attempt was made"
    for _ in range(attempts):
        connection = connection_class(parts.netloc, timeout=connect_timeout)
        try:
            connection.connect()
            connection.sock.settimeout(read_timeout)
            connection.request(method, parts.path, headers=sigv4_headers(method, url, credentials, s3_region(environ), datetime.now(timezone.utc)))
            response = connection.getresponse()
        except TimeoutError:
            problem = f"Read timeout on endpoint URL: {url!r}" if connection.sock else f"Connect timeout on endpoint URL: {url!r}"
            connection.close()
            continue
        except OSError as exc:
            problem = f"Could not connect to the endpoint URL: {url!r} ({type(exc).__name__}: {exc})"
            connection.close()
            continue
        if response.status == 200:
            try:
                yield response
            finally:
                connection.close()
            return
        code = re.search(rb"<Code>([^<]+)</Code>", response.read(2000)) if method != "HEAD" else None
        connection.close()
        problem = f"{method} {url} answered {response.status} {response.reason}" + (f" ({code.group(1).decode()})" if code else "")
        if response.status < 500:
            break
    raise S3Error(problem)
