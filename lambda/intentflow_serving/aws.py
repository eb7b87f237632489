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
import http.client
import os
import random
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar
from urllib.parse import parse_qsl, quote, urljoin, urlsplit

T = TypeVar("T")

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
    """An S3 read that failed: the HTTP status and S3's error code, or why no answer came.
    ``transient``: trying again may succeed (no answer, a 5xx, an answer cut short)."""

    def __init__(self, problem: str, *, transient: bool = False) -> None:
        super().__init__(problem)
        self.transient = transient


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


# -- the signed requests: retried, redirected to the bucket's region, checked for length ---------------
#
# What botocore does for these two calls, and what the model needs besides: a GET that ends before
# Content-Length says is not a model file but a failed read (http.client's read(n) just returns b""
# when the connection closes early), retried like a 5xx; a model file cut short would otherwise be
# refused as corrupt, and its version not fetched again.

REDIRECTS = (301, 302, 307, 308)
BACKOFF_CAP_SECONDS = 2.0


@dataclass(frozen=True)
class Target:
    """Where a request goes, and the region it is signed for."""

    url: str
    region: str


def s3_etag(bucket: str, key: str, *, credentials: tuple[str, str, str | None], connect_timeout: float, read_timeout: float,
            attempts: int, backoff_seconds: float = 0.0, environ: Mapping[str, str] | None = None) -> str:
    """The object's ETag: a signed HEAD, retried as botocore's standard mode would; or S3Error."""
    limits = {"connect_timeout": connect_timeout, "read_timeout": read_timeout, "environ": settled(environ)}

    def head() -> str:
        connection, response, _ = s3_response("HEAD", bucket, key, credentials=credentials, **limits)
        connection.close()
        return response.getheader("ETag", "")

    return retrying(head, attempts=attempts, backoff_seconds=backoff_seconds)


def s3_download(bucket: str, key: str, destination: Path, *, credentials: tuple[str, str, str | None], connect_timeout: float,
                read_timeout: float, attempts: int, backoff_seconds: float = 0.0, environ: Mapping[str, str] | None = None) -> None:
    """The object's bytes, all of them, written to ``destination``: a signed GET, retried (from the
    start) after a connection failure, a 5xx, or an answer that ends early; or S3Error."""
    limits = {"connect_timeout": connect_timeout, "read_timeout": read_timeout, "environ": settled(environ)}

    def download() -> None:
        connection, response, target = s3_response("GET", bucket, key, credentials=credentials, **limits)
        try:
            received = write_body(response, destination)
        except (OSError, http.client.HTTPException) as exc:  # a read timeout, a reset, a chunked answer cut off
            raise S3Error(f"GET {target.url} failed while reading: {type(exc).__name__}: {exc}", transient=True) from None
        finally:
            connection.close()
        expected = response.getheader("Content-Length")
        if expected is not None and received != int(expected):
            raise S3Error(f"GET {target.url} was cut short: {received} of {expected} bytes", transient=True)

    retrying(download, attempts=attempts, backoff_seconds=backoff_seconds)


def settled(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    """The settings one call's tries all use: the endpoint and region as they were when it began."""
    return dict(os.environ) if environ is None else environ


def write_body(response: http.client.HTTPResponse, destination: Path, chunk_bytes: int = 1 << 20) -> int:
    """Stream the answer's body to ``destination`` (emptied first); the number of bytes written."""
    received = 0
    with destination.open("wb") as handle:
        while chunk := response.read(chunk_bytes):
            handle.write(chunk)
            received += len(chunk)
    return received


def retrying(call: Callable[[], T], *, attempts: int, backoff_seconds: float) -> T:
    """``call()``, tried again after a transient S3Error, at most ``attempts`` times in all, with
    exponential backoff and jitter between tries (capped): S3 asks for it (503 SlowDown)."""
    for retry in range(1, max(1, attempts)):
        try:
            return call()
        except S3Error as exc:
            if not exc.transient:
                raise
        time.sleep(min(BACKOFF_CAP_SECONDS, backoff_seconds * 2 ** (retry - 1)) * random.uniform(0.5, 1.0))
    return call()  # the last try: its error is the answer


def s3_response(method: str, bucket: str, key: str, *, credentials: tuple[str, str, str | None], connect_timeout: float,
                read_timeout: float, environ: Mapping[str, str] | None = None):
    """One signed request's answer with status 200, its connection open (to read, then close), and
    where it came from. A redirect to the bucket's region is followed once, as botocore does; any
    other answer is an S3Error, transient for a 5xx or no answer at all."""
    environ = os.environ if environ is None else environ
    target = Target(s3_url(bucket, key, environ), s3_region(environ))
    for may_redirect in (True, False):
        connection, response = send_signed(method, target, credentials, connect_timeout, read_timeout)
        if response.status == 200:
            return connection, response, target
        try:
            body = response.read(2000) if method != "HEAD" else b""  # S3's error document (none to a HEAD)
        except (OSError, http.client.HTTPException):
            body = b""
        connection.close()
        redirect = redirected(response, body, target, bucket, key, environ) if may_redirect else None
        if redirect is None:
            raise S3Error(refusal(method, target, response, body), transient=response.status >= 500)
        target = redirect


def refusal(method: str, target: Target, response: http.client.HTTPResponse, body: bytes) -> str:
    code = re.search(rb"<Code>([^<]+)</Code>", body)
    problem = f"{method} {target.url} answered {response.status} {response.reason}" + (f" ({code.group(1).decode()})" if code else "")
    if response.status in REDIRECTS:
        problem += f", to {response.getheader('Location') or response.getheader('x-amz-bucket-region') or 'nowhere said'}: not followed"
    return problem


def send_signed(method: str, target: Target, credentials: tuple[str, str, str | None], connect_timeout: float, read_timeout: float):
    """(connection, response) for one signed request without a body; S3Error (transient) if no answer came."""
    parts = urlsplit(target.url)
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(parts.netloc, timeout=connect_timeout)
    try:
        connection.connect()
        connection.sock.settimeout(read_timeout)
        connection.request(method, parts.path, headers=sigv4_headers(method, target.url, credentials, target.region, datetime.now(timezone.utc)))
        return connection, connection.getresponse()
    except TimeoutError:
        problem = f"Read timeout on endpoint URL: {target.url!r}" if connection.sock else f"Connect timeout on endpoint URL: {target.url!r}"
    except (OSError, http.client.HTTPException) as exc:  # refused, reset, or an answer that is not HTTP
        problem = f"Could not connect to the endpoint URL: {target.url!r} ({type(exc).__name__}: {exc})"
    connection.close()
    raise S3Error(problem, transient=True)


def redirected(response: http.client.HTTPResponse, body: bytes, target: Target, bucket: str, key: str,
               environ: Mapping[str, str]) -> Target | None:
    """Where S3 says the object is, when it does: the bucket's region (x-amz-bucket-region, or the
    <Region> of a GET's AuthorizationHeaderMalformed), signed for anew; or, for a redirect without
    one, its Location. A signed request is replayable for minutes: it follows a Location only on
    the same endpoint or to an S3 host of AWS, never to whatever host an answer names."""
    found = re.search(rb"<Region>([^<]+)</Region>", body)
    region = response.getheader("x-amz-bucket-region") or (found.group(1).decode() if found else None)
    if region and region != target.region and (response.status in REDIRECTS or response.status == 400):
        return Target(s3_url(bucket, key, {**environ, "AWS_REGION": region}), region)
    location = response.getheader("Location")
    if response.status in REDIRECTS and location:
        url = urljoin(target.url, location)
        if may_follow(target.url, url):
            return Target(url, region or target.region)
    return None


def may_follow(origin: str, url: str) -> bool:
    """On the same endpoint (scheme, host and port), or to an HTTPS host of AWS."""
    old, new = urlsplit(origin), urlsplit(url)
    same_endpoint = (old.scheme, old.netloc) == (new.scheme, new.netloc)
    return same_endpoint or (new.scheme == "https" and (new.hostname or "").endswith(".amazonaws.com"))
