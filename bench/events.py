"""What Lambda hands the serving handler: an API Gateway HTTP API event and a context object, for
bench/serving.py's warm and cold calls of the handler.

A module of its own, not bench/common.py: the cold-start processes of bench/serving.py import it
inside the timed start, so it imports next to nothing (as tests/serving/events.py, where this
came from).
"""

from __future__ import annotations

import base64
import json
from typing import Any


def _body(body: Any | None) -> tuple[str | None, bool]:
    if body is None:
        return None, False
    return (body if isinstance(body, str) else json.dumps(body)), False


def http_api_v2(method: str, path: str, body: Any | None = None, headers: dict[str, str] | None = None, *, base64_body: bool = False) -> dict:
    """API Gateway HTTP API, payload format version 2.0."""
    text, _ = _body(body)
    if base64_body and text is not None:
        text = base64.b64encode(text.encode()).decode()
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "cookies": [],
        "headers": {"content-type": "application/json", "host": "abc123.execute-api.us-east-1.amazonaws.com",
                    "user-agent": "curl/8.4.0", "x-forwarded-for": "203.0.113.7", "x-forwarded-port": "443",
                    "x-forwarded-proto": "https", **(headers or {})},
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123", "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7", "userAgent": "curl/8.4.0"},
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef", "routeKey": "$default", "stage": "$default",
            "time": "12/Mar/2026:19:03:58 +0000", "timeEpoch": 1773342238000,
        },
        "body": text,
        "isBase64Encoded": base64_body,
    }


class FakeContext:
    """What the Lambda runtime passes as ``context`` (Mangum reads none of it, but handlers get one)."""

    function_name = "intentflow-classify"
    memory_limit_in_mb = 2048
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:intentflow-classify"
    aws_request_id = "52fdfc07-2182-154f-163f-5f0f9a621d72"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000
